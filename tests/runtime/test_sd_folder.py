"""Stable-Diffusion-family ONNX folders made by the real exporters (tests/fixtures/sd/README.md) open
with what their configs say, and folders we cannot use are refused at open with one sentence."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from desktop.runtime.bundle import open_bundle
from desktop.runtime.image_size import size_options
from desktop.runtime.manifest import BundleError
from desktop.runtime.sd_folder import guidance_embedding

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sd"


def fixture(name: str) -> Path:
    return FIXTURES / name


def copy_fixture(name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixture(name), tmp_path / name))


def edit_json(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.slow
@pytest.mark.parametrize("name, size, scale, prediction, step", [
    ("optimum-sd1", 32, 0.18215, "epsilon", 4),
    ("optimum-inpaint", 32, 0.18215, "epsilon", 4),
    ("optimum-sd2", 48, 0.13025, "v_prediction", 8),
    ("optimum-turbo", 32, 0.18215, "epsilon", 4),
])
def test_optimum_folders_open_with_their_configs(name, size, scale, prediction, step):
    b = open_bundle(fixture(name), provider="cpu")
    m = b.manifest
    assert (m.image.height, m.image.width) == (size, size)  # unet sample_size x 2^(VAE levels - 1)
    assert m.latent.scale_factor == pytest.approx(scale)  # vae_decoder/config.json scaling_factor
    assert m.prediction_type == prediction
    assert m.steps_offset == 1  # the SD scheduler configs' setting, carried in the manifest
    assert m.set_alpha_to_one == (name == "optimum-turbo")  # DDIM/PNDM configs say false; Euler's has no such key
    assert size_options(b).step == step  # VAE factor x 2^(down blocks - 1)
    assert m.unet.size_divisor == step // m.vae_factor
    assert b.encoder_output == "latent_parameters"
    assert b.unet.inputs["timestep"][1] == []  # optimum 2.x declares a 0-d timestep
    assert (m.conditioning.mask is not None) == (name == "optimum-inpaint")


@pytest.mark.slow
def test_sd2_pads_with_its_tokenizers_pad_token():
    sd1 = open_bundle(fixture("optimum-sd1"), provider="cpu")
    sd2 = open_bundle(fixture("optimum-sd2"), provider="cpu")
    assert sd1.manifest.conditioning.text.pad_id == sd1.text.tokenizer.token_to_id("<|endoftext|>")
    assert sd2.manifest.conditioning.text.pad_id == sd2.text.tokenizer.token_to_id("!") == 0


@pytest.mark.slow
def test_few_step_defaults():
    turbo = open_bundle(fixture("optimum-turbo"), provider="cpu").manifest.defaults
    assert (turbo.sampler, turbo.steps, turbo.guidance, turbo.spacing) == ("euler", 4, 1.0, "trailing")
    sd1 = open_bundle(fixture("optimum-sd1"), provider="cpu").manifest.defaults
    assert (sd1.sampler, sd1.steps, sd1.guidance, sd1.spacing) == ("dpmpp_2m", 25, 7.5, "leading")


@pytest.mark.slow
def test_lcm_needs_its_sampler_or_says_so():
    from diffusion.samplers import SAMPLERS
    if "lcm" in SAMPLERS:
        b = open_bundle(fixture("optimum-lcm"), provider="cpu")
        assert b.sd.timestep_cond_dim == 16 and b.manifest.defaults.sampler == "lcm"
    else:
        with pytest.raises(BundleError, match="LCM sampler"):
            open_bundle(fixture("optimum-lcm"), provider="cpu")


@pytest.mark.slow
def test_latent_parameters_are_split_into_the_mean():
    b = open_bundle(fixture("optimum-sd1"), provider="cpu")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32)
    params = b.vae_encoder.run({"sample": x}, output="latent_parameters")
    z = b.encode_latent(x)
    assert params.shape == (1, 8, 16, 16) and z.shape == (1, 4, 16, 16)
    np.testing.assert_array_equal(z, params[:, :4])


@pytest.mark.slow
def test_scalar_timestep_gets_a_scalar_and_refuses_mixed_batches():
    b = open_bundle(fixture("optimum-sd1"), provider="cpu")
    assert b.unet.feed("timestep", np.array([7, 7], np.int64)).shape == ()
    assert b.unet.feed("timestep", np.array([7, 7], np.int64)).dtype == np.float32
    with pytest.raises(ValueError, match="scalar"):
        b.unet.feed("timestep", np.array([7, 8], np.int64))


@pytest.mark.slow  # PyTorch: diffusers' LCM pipeline is the oracle
def test_guidance_embedding_matches_diffusers():
    torch = pytest.importorskip("torch")
    from diffusers import LatentConsistencyModelPipeline
    w = torch.tensor([7.5, 0.0])
    want = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, w, embedding_dim=16).numpy()
    # sin(7500 x) in float32: one ulp of the frequency moves it by ~5e-4 (torch and numpy round exp differently)
    np.testing.assert_allclose(guidance_embedding(7.5, 16, 1)[0], want[0], atol=1e-3)
    np.testing.assert_allclose(guidance_embedding(0.0, 16, 1)[0], want[1], atol=1e-6)


# ------------------------------------------------------------------------------- refused at open


@pytest.mark.slow
@pytest.mark.parametrize("changes, words", [
    ({"thresholding": True}, "'thresholding'"),
    ({"trained_betas": [0.1, 0.2]}, "'trained_betas'"),
    ({"rescale_betas_zero_snr": True}, "'rescale_betas_zero_snr'"),
    ({"beta_schedule": "exp"}, "'beta_schedule' 'exp'"),
    ({"prediction_type": "flow"}, "'prediction_type' 'flow'"),
    ({"timestep_spacing": "karras"}, "'timestep_spacing' 'karras'"),
    ({"steps_offset": "1"}, "'steps_offset' must be an integer"),
    ({"num_train_timesteps": 10**9}, "'num_train_timesteps'"),
])
def test_scheduler_config_we_cannot_honour_is_refused(tmp_path, changes, words):
    folder = copy_fixture("optimum-sd1", tmp_path)
    edit_json(folder / "scheduler" / "scheduler_config.json", **changes)
    with pytest.raises(BundleError) as err:
        open_bundle(folder, provider="cpu")
    assert "scheduler/scheduler_config.json" in str(err.value) and words in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("role, changes, words", [
    ("vae_decoder", {"block_out_channels": "big"}, "'block_out_channels' must be a non-empty list"),
    ("vae_decoder", {"scaling_factor": -1}, "'scaling_factor' must be a positive number"),
    ("unet", {"sample_size": 10**6}, "'sample_size' must be an integer from 1 to 4096"),
])
def test_bad_component_config_is_refused(tmp_path, role, changes, words):
    folder = copy_fixture("optimum-sd1", tmp_path)
    edit_json(folder / role / "config.json", **changes)
    with pytest.raises(BundleError) as err:
        open_bundle(folder, provider="cpu")
    assert f"{role}/config.json" in str(err.value) and words in str(err.value)


@pytest.mark.slow
def test_missing_parts_are_named(tmp_path):
    folder = copy_fixture("optimum-sd1", tmp_path)
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(BundleError, match="text_encoder/ without tokenizer/"):
        open_bundle(folder, provider="cpu")
    shutil.rmtree(folder / "vae_decoder")
    with pytest.raises(BundleError, match="without vae_decoder/model.onnx"):
        open_bundle(folder, provider="cpu")


@pytest.mark.slow
def test_without_configs_the_vae_factor_is_measured(tmp_path):
    folder = copy_fixture("optimum-sd2", tmp_path)
    for role in ("vae_decoder", "vae_encoder", "unet"):
        (folder / role / "config.json").unlink()
    b = open_bundle(folder, provider="cpu")
    assert b.manifest.vae_factor == 4  # measured by decoding a 2x2 latent
    assert b.manifest.image.height == 64 * 4  # no sample_size anywhere: SD 1.x's 64 latent pixels


@pytest.mark.slow
def test_missing_scheduler_config_means_stable_diffusion_1(tmp_path):
    folder = copy_fixture("optimum-sd1", tmp_path)
    shutil.rmtree(folder / "scheduler")
    b = open_bundle(folder, provider="cpu")
    assert b.manifest.steps_offset == 1 and b.manifest.schedule["name"] == "scaled_linear"
    assert any("scheduler_config.json" in note for note in b.notes)


@pytest.mark.slow
def test_legacy_export_inputs_and_random_encoder():
    b = open_bundle(fixture("legacy-sd1"), provider="cpu")
    assert b.unet.inputs["timestep"] == ("tensor(float)", ["batch"])
    assert b.text.model.inputs["input_ids"][0] == "tensor(int32)"
    assert b.encoder_output == "latent_sample"
    assert any("random latent" in note for note in b.notes)
    assert b.manifest.vae_factor == 2  # no VAE config: measured
    ids = b.text.encode(["a red circle"])
    assert ids.shape == (1, 77, 16)


@pytest.mark.slow
def test_model_hash_covers_external_weights(tmp_path):
    folder = copy_fixture("legacy-sd1", tmp_path)
    before = open_bundle(folder, provider="cpu").model_hash
    weights = folder / "unet" / "weights.pb"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert open_bundle(folder, provider="cpu").model_hash != before


@pytest.mark.slow
@pytest.mark.parametrize("name", ["optimum-sd1", "optimum-inpaint", "legacy-sd1", "optimum-turbo", "optimum-lcm"])
def test_generate_cli_at_another_size(name, tmp_path):
    from PIL import Image

    from desktop.runtime.generate_cli import main
    rc = main(["--model", str(fixture(name)), "--prompt", "a red circle", "--steps", "2", "--width", "48",
               "--height", "32", "--out", str(tmp_path), "--quiet", "--provider", "cpu"])
    assert rc == 0
    with Image.open(next(tmp_path.glob("*.png"))) as im:
        assert im.size == (48, 32)


@pytest.mark.slow
def test_lcm_unet_gets_the_guidance_embedding():
    """The denoiser feeds timestep_cond = embedding(guidance - 1) and makes one
    conditional call: the same output as diffusers' torch U-Net given that embedding."""
    torch = pytest.importorskip("torch")
    import sys

    from desktop.runtime import pipeline as P
    b = open_bundle(fixture("optimum-lcm"), provider="cpu")
    r = P.GenerationRequest(prompt="a red circle", guidance=8.5, sampler="lcm", steps=4)
    r, _ = P.resolve_request(b, r)
    inputs = P.encode_inputs(b, r)
    conditioning = P.encode_conditioning(b, r, inputs)
    assert not conditioning.droppable and conditioning.cond["timestep_cond"].shape == (1, 16)
    denoiser = P.guided_denoiser(b, conditioning, guidance=r.guidance, batch=1)
    x = np.random.default_rng(0).standard_normal((1, 4, 16, 16)).astype(np.float32)
    calls = b.unet.calls
    out = denoiser(x, np.array([759]))
    assert b.unet.calls == calls + 1
    sys.path.insert(0, str(FIXTURES))
    from diffusers import UNet2DConditionModel

    import tiny_sd
    unet = UNet2DConditionModel(**tiny_sd.unet_config("lcm"))
    tiny_sd.fill_weights(unet, "lcm/unet")
    with torch.no_grad():
        want = unet(torch.from_numpy(x), 759, torch.from_numpy(conditioning.cond["encoder_hidden_states"]),
                    timestep_cond=torch.from_numpy(conditioning.cond["timestep_cond"])).sample.numpy()
    np.testing.assert_allclose(out, want, atol=1e-4)


def test_info_shows_the_scheduler_settings_the_runtime_uses(capsys):
    from desktop.runtime import info_cli
    assert info_cli.main([str(fixture("optimum-sd2"))]) == 0
    text = capsys.readouterr().out
    assert "scheduler:   DDIMScheduler config: spacing leading, steps_offset 1, DDIM's last step ends at alpha_bar_0" \
        in text
