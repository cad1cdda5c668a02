"""What we write is readable by the tools people have: optimum loads and samples a latent
text-to-image bundle as our runtime does; diffusers loads a training run's model/ folder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from desktop.cli import main as cli  # noqa: E402
from desktop.runtime.bundle import open_bundle  # noqa: E402
from desktop.runtime.pipeline import GenerationRequest, generate  # noqa: E402
from diffusion.noise import BatchRNG  # noqa: E402
from diffusion.samplers import sampler_spec  # noqa: E402
from engine.loaded import save_model  # noqa: E402
from tests.helpers.peers import run_in_peers  # noqa: E402

pytestmark = pytest.mark.slow  # PyTorch: exports and reads bundles with diffusers

HERE = Path(__file__).resolve().parent
SINGLE = HERE.parent / "fixtures" / "single_file"


@pytest.fixture(scope="module")
def sd_bundle(tmp_path_factory):
    """Our bundle of a tiny SD 1.x model (imported from its single-file checkpoint)."""
    out = tmp_path_factory.mktemp("eco") / "tiny-sd1"
    assert cli(["export", str(SINGLE / "tiny-sd1.safetensors"), str(out), "--config", str(SINGLE / "sd1-config"),
                "--preview-samples", "4"]) == 0
    return out


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler"])
def test_optimum_samples_our_bundle_like_our_runtime(sd_bundle, tmp_path, sampler):
    index = json.loads((sd_bundle / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline" and "_diffusion_studio_unsupported" not in index
    if sampler != "dpmpp_2m":  # the bundle's default; another one is named in a copy's scheduler config
        copy = tmp_path / "copy"
        shutil.copytree(sd_bundle, copy)
        path = copy / "scheduler" / "scheduler_config.json"
        cls, extra = sampler_spec(sampler).diffusers
        path.write_text(json.dumps({**json.loads(path.read_text()), "_class_name": cls, **extra}))
        (copy / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", cls]}))
        bundle_dir = copy
    else:
        bundle_dir = sd_bundle
    b = open_bundle(sd_bundle, provider="cpu")
    request = GenerationRequest(prompt="a red house", sampler=sampler, steps=6, guidance=5.0, seed=4)
    ours = generate(b, request).images[0].astype(np.float64) / 255
    # the same unit noise: the SD pipeline scales it by init_noise_sigma as Grid.start does
    latents = BatchRNG([4], stream=0).randn((4, b.manifest.latent.height, b.manifest.latent.width))
    np.savez(tmp_path / "in.npz", latents=latents, prompt="a red house", steps=6, guidance=5.0)
    run_in_peers(HERE / "peers_ort_pipeline.py", bundle_dir, tmp_path / "in.npz", tmp_path / "out.npz")
    ref = np.load(tmp_path / "out.npz")
    assert str(ref["pipeline"]) == "ORTStableDiffusionPipeline"
    diff = np.abs(ref["images"][0] - ours).max()
    print(f"{sampler}: optimum vs ours max difference {diff * 255:.2f}/255")
    assert diff <= 2 / 255


def test_a_run_model_folder_loads_in_diffusers(tmp_path, latent_text_model):
    from diffusers import DiffusionPipeline

    latent_text_model.class_names = None  # a text-only latent model: StableDiffusionPipeline can run it
    latent_text_model.unet.register_to_config(num_class_embeds=None)
    folder = save_model(latent_text_model, tmp_path / "model")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert "text_encoder=None" in index["_diffusion_studio_text_encoder"]  # a from-scratch encoder
    pipe = DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, text_encoder=None)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.vae.config.scaling_factor == pytest.approx(latent_text_model.scale_factor) != 0.18215
    assert type(pipe.scheduler).__name__ == "DDPMScheduler" and pipe.unet is not None


def test_models_diffusers_cannot_run_say_why(tmp_path, pixel_class_model, semantic_model):
    from diffusers import DiffusionPipeline

    folder = save_model(pixel_class_model, tmp_path / "pixel")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "DDPMPipeline"
    assert type(DiffusionPipeline.from_pretrained(str(folder), local_files_only=True)).__name__ == "DDPMPipeline"
    folder = save_model(semantic_model, tmp_path / "semantic")
    index = json.loads((folder / "model_index.json").read_text())
    assert "label map" in index["_diffusion_studio_unsupported"]
