"""Single-file checkpoints (engine.single_file, `export model.safetensors OUT`): the tiny fixtures made by
diffusers' own converter (tests/fixtures/single_file/make_fixtures.py) load offline with exactly the
weights they were made from, export with the parity gate, and everything else gets one sentence."""
from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from safetensors.torch import load_file, save_file  # noqa: E402

from desktop.cli import main as cli  # noqa: E402
from engine.loaded import ModelLoadError  # noqa: E402
from engine.single_file import CONFIGS, checkpoint_shapes, detect_family, load_single_file  # noqa: E402

pytestmark = pytest.mark.slow  # PyTorch: diffusers' converter and configs

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "single_file"


def fixtures_module():
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKE = fixtures_module()


def reference(variant: str, name: str, vocab_size: int):
    """The module the fixture was made from, rebuilt from its config and seeded weights."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    module = {"unet": lambda: UNet2DConditionModel(**MAKE.unet_config(variant)),
              "vae": lambda: AutoencoderKL(**MAKE.vae_config()),
              "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**MAKE.text_config(variant, vocab_size)))}[name]()
    MAKE.fill_weights(module, f"single-file/{variant}/{name}")
    return module


@pytest.mark.parametrize("variant,family", [("sd1", "sd1"), ("sd2", "sd2")])
def test_the_family_is_read_from_the_keys(variant, family):
    shapes = checkpoint_shapes(MAKE.checkpoint_path(variant))
    assert any(k.startswith("model.diffusion_model.") for k in shapes)  # the original layout, not diffusers'
    assert detect_family(shapes, Path("x"), None) == family
    if family == "sd2":
        assert detect_family(shapes, Path("x"), "epsilon") == "sd2-base"


@pytest.mark.parametrize("variant,prediction", [("sd1", "epsilon"), ("sd2", "v_prediction")])
def test_tiny_checkpoints_load_offline_with_the_weights_they_were_made_from(tmp_path, variant, prediction):
    model = load_single_file(MAKE.checkpoint_path(variant), work_dir=tmp_path, config=MAKE.config_dir(variant))
    assert model.kind == "latent" and model.prediction_type == prediction
    assert model.image_size == 64 and model.scale_factor == pytest.approx(0.18215)
    assert model.provenance["source"] == f"single-file checkpoint tiny-{variant}.safetensors"
    vocab = model.text_encoder.model.config.vocab_size
    for name, loaded in (("unet", model.unet), ("vae", model.vae), ("text_encoder", model.text_encoder.model)):
        ref = reference(variant, name, vocab).state_dict()
        got = loaded.state_dict()
        assert set(ref) <= set(got), name
        for key, value in ref.items():
            assert torch.equal(got[key].float(), value), f"{name}.{key}"
    # the tokenizer is CLIP's: <|startoftext|> "a" "photo" <|endoftext|>, padded to 77
    ids = np.asarray(model.text_encoder.tokenize(["a photo"])["input_ids"])[0]
    assert len(ids) == 77 and ids[0] == vocab - 2 and ids[3] == vocab - 1


def test_prediction_type_flag_overrides_the_rule(tmp_path):
    model = load_single_file(MAKE.checkpoint_path("sd2"), work_dir=tmp_path, config=MAKE.config_dir("sd2"),
                             prediction_type="epsilon")
    assert model.prediction_type == "epsilon"


def test_export_command_converts_a_single_file_with_the_parity_gate(tmp_path, capsys):
    out = tmp_path / "bundle"
    rc = cli(["export", str(MAKE.checkpoint_path("sd1")), str(out), "--config", str(MAKE.config_dir("sd1")),
              "--preview-samples", "4"])
    assert rc == 0, capsys.readouterr().err
    manifest = json.loads((out / "studio.json").read_text())
    assert manifest["name"] == "tiny-sd1" and manifest["prediction_type"] == "epsilon"
    assert manifest["conditioning"]["text"]["max_length"] == 77
    assert all(c["max_rel"] < 1e-4 for checks in manifest["provenance"]["export"]["parity"].values() for c in checks)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the conversion folder is gone


# ------------------------------------------------------------------------------------ refusals


class Boom:
    """Unpickling this writes a file: proof that a refused pickle was never unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


@pytest.mark.parametrize("suffix", [".ckpt", ".pt", ".pth", ".bin", ".pkl"])
def test_pickles_are_refused_unread(tmp_path, capsys, suffix):
    marker = tmp_path / "marker"
    bad = tmp_path / f"model{suffix}"
    bad.write_bytes(pickle.dumps({"state_dict": Boom(str(marker))}))
    rc = cli(["export", str(bad), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "pickle" in err and "does not open it" in err and ".safetensors" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def write_checkpoint(path, keys):
    save_file({k: torch.zeros(shape) for k, shape in keys.items()}, str(path))
    return path


SD_MINIMAL = {"model.diffusion_model.input_blocks.0.0.weight": (8, 4, 3, 3),
              "first_stage_model.encoder.conv_in.weight": (4, 3, 3, 3),
              "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 16)}


@pytest.mark.parametrize("keys,message", [
    ({"conditioner.embedders.0.transformer.x": (1,), **SD_MINIMAL}, "an SDXL checkpoint"),
    ({"lora_unet_down.weight": (4, 4)}, "no Stable Diffusion U-Net"),
    ({**SD_MINIMAL, "model.diffusion_model.input_blocks.0.0.weight": (8, 9, 3, 3)}, "takes 9 input channels"),
    ({k: v for k, v in SD_MINIMAL.items() if not k.startswith("first")}, "no VAE"),
    ({k: v for k, v in SD_MINIMAL.items() if not k.startswith("cond")}, "no text encoder"),
])
def test_other_checkpoints_get_one_sentence(tmp_path, capsys, keys, message):
    path = write_checkpoint(tmp_path / "model.safetensors", keys)
    rc = cli(["export", str(path), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err


def test_a_damaged_file_is_named(tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert cli(["export", str(path), str(tmp_path / "out")]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_single_file_options_need_a_single_file(tmp_path, capsys):
    assert cli(["export", str(tmp_path), str(tmp_path / "out"), "--prediction-type", "epsilon"]) == 2
    assert "single-file checkpoints only" in capsys.readouterr().err


def test_without_a_vocabulary_the_tokenizer_is_asked_for(tmp_path, monkeypatch):
    import engine.single_file as sf

    monkeypatch.setattr(sf, "installed_bpe_file", lambda: None)
    with pytest.raises(ModelLoadError, match="pass --tokenizer FOLDER"):
        sf.prepare_configs(CONFIGS / "sd1", tmp_path, tokenizer=None, prediction_type=None)
    configs = sf.prepare_configs(CONFIGS / "sd2", tmp_path / "b", tokenizer=MAKE.config_dir("sd1") / "tokenizer",
                                 prediction_type="epsilon")
    assert (configs / "tokenizer" / "vocab.json").is_file() and (configs / "tokenizer" / "merges.txt").is_file()
    assert json.loads((configs / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"


# ------------------------------------------------------------- the shipped SD 1.x / 2.x configs


EXPECTED_UNET = {  # Stable Diffusion's own U-Net configs (diffusers' SD 1.5 / 2.1 / 2 base folders)
    "sd1": {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8,
            "use_linear_projection": False, "sample_size": 64},
    "sd2": {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024,
            "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True, "sample_size": 96},
    "sd2-base": {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024,
                 "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True, "sample_size": 64},
}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sd2-base"])
def test_shipped_original_configs_describe_stable_diffusion(family):
    """diffusers' own mapping turns our original.yaml into SD's U-Net and VAE configs. (The full-size
    key mapping is not run here: an SD U-Net is 3.4 GB in fp32.)"""
    import yaml
    from diffusers.loaders.single_file_utils import (
        create_unet_diffusers_config_from_ldm,
        create_vae_diffusers_config_from_ldm,
    )

    original = yaml.safe_load((CONFIGS / family / "original.yaml").read_text())
    size = 768 if family == "sd2" else 512
    unet = create_unet_diffusers_config_from_ldm(original, {}, image_size=size)
    for key, value in EXPECTED_UNET[family].items():
        got = unet[key]
        assert (list(got) if isinstance(got, (list, tuple)) else got) == (
            list(value) if isinstance(value, (list, tuple)) else value), key
    vae = create_vae_diffusers_config_from_ldm(original, {}, image_size=size)
    assert tuple(vae["block_out_channels"]) == (128, 256, 512, 512) and vae["scaling_factor"] == 0.18215
    te = json.loads((CONFIGS / family / "text_encoder" / "config.json").read_text())
    assert (te["hidden_size"], te["num_hidden_layers"]) == ((768, 12) if family == "sd1" else (1024, 23))
    sched = json.loads((CONFIGS / family / "scheduler" / "scheduler_config.json").read_text())
    assert sched["prediction_type"] == ("v_prediction" if family == "sd2" else "epsilon")
    assert sched["steps_offset"] == 1 and sched["beta_schedule"] == "scaled_linear"


def test_every_tensor_of_the_tiny_checkpoint_is_used(tmp_path):
    """No key of the original layout is silently dropped: each tensor of the file lands in the model."""
    model = load_single_file(MAKE.checkpoint_path("sd1"), work_dir=tmp_path, config=MAKE.config_dir("sd1"))
    params = [p.detach().flatten() for m in (model.unet, model.vae, model.text_encoder.model) for p in m.parameters()]
    pool = np.sort(torch.cat(params).numpy())
    for key, value in load_file(str(MAKE.checkpoint_path("sd1"))).items():
        flat = value.flatten().numpy()
        hits = np.searchsorted(pool, flat)
        assert (pool[np.minimum(hits, len(pool) - 1)] == flat).all(), key
