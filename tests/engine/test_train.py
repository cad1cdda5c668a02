"""The DDPM / LDM trainer: the loss falls, resume is exact, a killed run resumes, conditions match diffusion/."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.checkpoint import CheckpointError, load_checkpoint
from engine.config import load_config
from engine.loop import batch_indices
from tests.helpers.datasets import ColourSet
from engine.train import (CHECKPOINT, cached_latents, mask_to_size, masked_latents, one_hot_labels,
                          random_inpaint_masks, train)

pytestmark = pytest.mark.slow  # PyTorch: trains

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[2]


def losses(run: Path) -> list[float]:
    return [json.loads(l)["loss"] for l in (run / "metrics.jsonl").read_text().splitlines()]


def falls(values, k=5):
    return np.mean(values[-k:]) < 0.85 * np.mean(values[:k])


@pytest.fixture(scope="module")
def random_vae(tmp_path_factory):
    """An untrained tiny VAE saved like a VAE run's model/ (scale factor computed on the data)."""
    from engine.models import build_vae
    from engine.vae import compute_scale_factor, save_vae_model

    cfg = load_config("tiny-vae")
    torch.manual_seed(0)
    vae = build_vae(cfg, 3, 16)
    run = tmp_path_factory.mktemp("vae_run")
    sf = compute_scale_factor(vae, ColourSet(), "cpu")
    save_vae_model(vae, run / "model", {"kind": "vae", "scale_factor": sf})
    return run


def test_pixel_class_model_loss_falls_and_writes_run(tmp_path):
    cfg = load_config("tiny-pixel", {"training": {"steps": 24, "sample_every": 24, "sample_steps": 4}})
    run = train(cfg, tmp_path / "run", dataset=ColourSet(), progress=False)
    assert falls(losses(run))
    assert (run / "config.toml").is_file() and (run / CHECKPOINT).is_file()
    grid = Image.open(run / "samples" / "step_000024.png")
    assert grid.size == (4 * 16, 2 * 16)  # 8 samples as 4 x 2
    from engine.loaded import load_model

    loaded = load_model(run)
    assert loaded.kind == "pixel" and loaded.class_names == ["dark", "bright"]
    assert loaded.unet.config.num_class_embeds == 3  # two classes + the null class


@pytest.mark.parametrize("cond", [
    {"text": "scratch", "class": True, "mask": ""},
    {"text": "", "class": False, "mask": "inpaint"},
    {"text": "", "class": True, "mask": "semantic"},
])
def test_latent_model_loss_falls(tmp_path, random_vae, cond):
    cfg = load_config("tiny-latent", {"vae": str(random_vae), "conditioning": cond,
                                      "training": {"steps": 24, "sample_every": 0}})
    text = None
    if cond["text"]:
        from engine.text import ScratchTextEncoder

        text = ScratchTextEncoder(max_length=8, dim=32, layers=1, heads=2)  # the real class, made small
    run = train(cfg, tmp_path / "run", dataset=ColourSet(), text_encoder=text, progress=False)
    assert falls(losses(run))
    unet = load_checkpoint(run / CHECKPOINT)["model"]
    conv_in = [v for k, v in unet.items() if k.endswith("conv_in.weight")][0]
    extra = {"inpaint": 1 + 4, "semantic": 2, "": 0}[cond["mask"]]
    assert conv_in.shape[1] == 4 + extra  # latent channels + condition channels (Conventions)


def test_resume_is_exact(tmp_path):
    over = {"conditioning": {"mask": "inpaint"}, "dataset": {"flip": True},
            "training": {"checkpoint_every": 0, "sample_every": 0}}
    straight = train(load_config("tiny-pixel", {**over, "training": {**over["training"], "steps": 7}}),
                     tmp_path / "a", dataset=ColourSet(n=12), progress=False)
    part = train(load_config("tiny-pixel", {**over, "training": {**over["training"], "steps": 4}}),
                 tmp_path / "b", dataset=ColourSet(n=12), progress=False)
    first_seconds = load_checkpoint(part / CHECKPOINT)["train_seconds"]
    assert first_seconds > 0
    train(load_config("tiny-pixel", {**over, "training": {**over["training"], "steps": 7}}),
          part, dataset=ColourSet(n=12), resume=True, progress=False)
    a, b = load_checkpoint(straight / CHECKPOINT), load_checkpoint(part / CHECKPOINT)
    assert a["step"] == b["step"] == 7
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}/{name} differs after resume"
    assert losses(straight) == losses(part)
    assert b["train_seconds"] > first_seconds  # training time adds up over the sessions of a run
    assert json.loads((part / "model" / "studio_model.json").read_text())["provenance"]["train_seconds"] >= round(first_seconds, 1)


def test_existing_run_needs_resume_and_bad_checkpoint_is_named(tmp_path):
    cfg = load_config("tiny-pixel", {"training": {"steps": 2, "sample_every": 0}})
    run = train(cfg, tmp_path / "run", dataset=ColourSet(), progress=False)
    with pytest.raises(Exception, match="--resume"):
        train(cfg, run, dataset=ColourSet(), progress=False)
    ckpt = run / CHECKPOINT
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="last.safetensors"):
        train(cfg, run, dataset=ColourSet(), resume=True, progress=False)


KILL_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from tests.helpers.datasets import ColourSet
from engine.config import load_config
from engine.train import train
cfg = load_config("tiny-pixel", {"training": {"steps": 100000, "checkpoint_every": 2, "sample_every": 0}})
train(cfg, sys.argv[1], dataset=ColourSet(), progress=False, resume="--resume" in sys.argv)
"""


def test_sigkill_leaves_a_checkpoint_that_resumes(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(run)], cwd=ROOT)  # -c: ROOT on sys.path
    try:
        deadline = time.time() + 900  # bounds a hang only: a busy machine needs minutes to import torch and train 6 steps
        while time.time() < deadline:
            meta = run / "checkpoints" / "last.json"
            if meta.is_file() and json.loads(meta.read_text())["step"] >= 6:
                break
            assert proc.poll() is None, "training process died"
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    state = load_checkpoint(run / CHECKPOINT)
    step = state["step"]
    assert step >= 6 and step % 2 == 0
    cfg = load_config("tiny-pixel", {"training": {"steps": step + 2, "checkpoint_every": 2, "sample_every": 0}})
    train(cfg, run, dataset=ColourSet(), resume=True, progress=False)
    assert load_checkpoint(run / CHECKPOINT)["step"] == step + 2
    assert (run / "model").is_dir()
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == step + 2  # metrics of the lost steps were redone once


def test_data_order_shards_ranks_and_covers_each_epoch():
    n, batch, world = 12, 3, 2  # a global batch of 6: two steps per epoch
    stream = [i for step in range(4) for rank in range(world) for i in batch_indices(n, batch, step, 5, rank=rank, world=world)]
    assert sorted(stream[:12]) == list(range(12)) and sorted(stream[12:]) == list(range(12))
    assert stream[:12] != stream[12:]  # a new permutation each epoch
    for step in range(4):
        r0, r1 = (set(batch_indices(n, batch, step, 5, rank=r, world=world)) for r in range(world))
        assert not r0 & r1
    assert batch_indices(n, batch, 3, 5) == batch_indices(n, batch, 3, 5)
    assert batch_indices(n, batch, 0, 5) != batch_indices(n, batch, 0, 6)


@pytest.mark.parametrize("h", [8, 6])
def test_torch_conditions_match_diffusion_condition(h):
    from diffusion import condition as cond

    rng = np.random.default_rng(0)
    mask = (rng.random((2, 1, 16, 16)) > 0.5).astype(np.float32)
    labels = rng.integers(0, 5, (2, 16, 16))
    np.testing.assert_allclose(mask_to_size(torch.from_numpy(mask), h, h).numpy(), cond.mask_to_size(mask, h, h), atol=1e-6)
    np.testing.assert_allclose(one_hot_labels(torch.from_numpy(labels), 5, h, h).numpy(),
                               cond.one_hot_labels(labels, 5, h, h), atol=1e-5)


@pytest.mark.parametrize("full_prob", [0.0, 0.1, 0.5, 1.0])
def test_inpaint_masks_cover_the_whole_image_at_the_configured_rate(full_prob):
    m = random_inpaint_masks(4000, 16, 16, torch.Generator().manual_seed(1), "cpu", full_prob)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    full = (m.flatten(1).amin(1) > 0.5).float().mean().item()
    assert abs(full - full_prob) < 0.03  # a box may cover everything by chance, rarely
    if full_prob < 1:
        assert (m.flatten(1).amax(1) > 0.5).all()  # every mask asks for something


def _conv_encoder():
    conv = torch.nn.Conv2d(3, 4, 4, stride=4)
    calls = []

    def encode(x):
        calls.append(x.shape[0])
        with torch.no_grad():
            return conv(x)
    return conv, encode, calls


def test_cached_latents_encode_each_key_once_and_match_the_encoder():
    conv, encode, calls = _conv_encoder()
    x = torch.randn(6, 3, 8, 8)
    cache = {}
    z = cached_latents(cache, encode, x[:4], [(0, False), (1, False), (2, False), (0, True)])
    torch.testing.assert_close(z, conv(x[:4]).detach())
    z2 = cached_latents(cache, encode, x[[1, 4, 0]], [(1, False), (4, False), (0, False)])
    torch.testing.assert_close(z2, conv(x[[1, 4, 0]]).detach())
    assert calls == [4, 1]  # only index 4 was new


def test_masked_latents_encode_a_fully_masked_image_once():
    conv, encode, calls = _conv_encoder()
    x = torch.randn(5, 3, 8, 8)
    m = torch.zeros(5, 1, 8, 8)
    m[[0, 2, 3]] = 1.0
    m[1, :, :4] = 1.0
    masked = x * (1 - m)
    torch.testing.assert_close(masked_latents(encode, masked, m), conv(masked).detach(), atol=1e-6, rtol=1e-6)
    assert calls == [1, 2]  # the zero image once, then the two partly masked rows


def test_cli_trains_a_preset_on_generated_data(tmp_path, capsys):
    from engine.train_cli import main

    out = tmp_path / "run"
    assert main(["tiny-pixel", "--out", str(out), "--steps", "2", "--no-progress", "--device", "cpu"]) == 0
    assert (out / "model").is_dir() and (out / CHECKPOINT).is_file()
    assert main(["tiny-pixel", "--out", str(out), "--steps", "2", "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["no-such-preset"]) == 2
    assert "tiny-pixel" in capsys.readouterr().err


def test_init_starts_the_unet_from_a_trained_run(tmp_path):
    from safetensors.torch import load_file

    from engine.train import TrainError

    over = {"training": {"steps": 3, "sample_every": 0, "checkpoint_every": 0}}
    base = train(load_config("tiny-pixel", over), tmp_path / "base", dataset=ColourSet(), progress=False)
    # lr 0: the weights cannot move, so the fine-tuned model is exactly the one it started from
    tuned = train(load_config("tiny-pixel", {"training": {**over["training"], "lr": 0.0, "init": str(base)}}),
                  tmp_path / "tuned", dataset=ColourSet(), progress=False)
    fresh = train(load_config("tiny-pixel", {"training": {**over["training"], "lr": 0.0, "seed": 1}}),
                  tmp_path / "fresh", dataset=ColourSet(), progress=False)
    weights = lambda run: load_file(str(run / "model" / "unet" / "diffusion_pytorch_model.safetensors"))  # noqa: E731
    a, b, c = weights(base), weights(tuned), weights(fresh)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)  # without init: other weights
    wider = load_config("tiny-pixel", {"model": {"block_out_channels": [48, 64]},
                                       "training": {**over["training"], "init": str(base)}})
    with pytest.raises(TrainError, match="diffusion_pytorch_model.safetensors.*same \\[model\\]"):
        train(wider, tmp_path / "wider", dataset=ColourSet(), progress=False)
    with pytest.raises(TrainError, match="no U-Net weights"):
        train(load_config("tiny-pixel", {"training": {**over["training"], "init": str(tmp_path / "nothing")}}),
              tmp_path / "none", dataset=ColourSet(), progress=False)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_loss_is_zero_for_the_true_target_and_one_for_a_zero_model(prediction_type):
    """diffusion_loss alone (lucidrains' p_losses): a model that knows x_0 recovers eps (or v)
    exactly from x_t, so its loss is ~0; a model that predicts 0 scores E[target^2] = 1."""
    from diffusion.schedule import make_schedule
    from engine.train import diffusion_loss

    abar = torch.tensor(make_schedule("linear", 1000).alphas_cumprod, dtype=torch.float32)
    x0 = torch.rand(256, 2, 4, 4) * 2 - 1
    x0 = x0 / x0.pow(2).mean().sqrt()  # unit variance, so the v target has unit variance too
    cond_seen = {}

    def oracle(x, t, class_labels=None):
        cond_seen["class_labels"] = class_labels
        x_t, a = x[:, :2], abar[t].view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        return eps if prediction_type == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * x0

    labels = torch.zeros(256, dtype=torch.int64)
    extra = torch.zeros(256, 3, 4, 4)  # condition channels appended after x_t
    loss = diffusion_loss(oracle, x0, abar, torch.Generator().manual_seed(0), prediction_type=prediction_type,
                          channels=[extra], class_labels=labels)
    assert loss.item() < 1e-6
    assert cond_seen["class_labels"] is labels
    zero = diffusion_loss(lambda x, t: torch.zeros_like(x[:, :2]), x0, abar, torch.Generator().manual_seed(0),
                          prediction_type=prediction_type, channels=[extra])
    assert abs(zero.item() - 1.0) < 0.1
    again = diffusion_loss(lambda x, t: torch.zeros_like(x[:, :2]), x0, abar, torch.Generator().manual_seed(0),
                           prediction_type=prediction_type, channels=[extra])
    assert again.item() == zero.item()  # t and eps come from the generator only


def test_the_train_command_picks_the_trainer_by_kind(tmp_path):
    from engine.train import TrainError
    from engine.train_cli import trainer
    from engine.vae import train_vae

    assert trainer("vae") is train_vae
    assert trainer("pixel") is train and trainer("latent") is train
    with pytest.raises(TrainError, match="train_vae"):
        train(load_config("tiny-vae"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
