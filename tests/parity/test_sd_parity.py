"""Pixel parity with the reference pipelines on the SD fixtures (tests/fixtures/sd), same initial latents:
our runtime vs diffusers' torch pipeline (this venv) and optimum's / diffusers' ONNX pipelines (the
peers venv). Max difference <= 2/255 per channel.

Our side runs generate()'s own stages with x_T (and img2img's noise) given instead of drawn; the
references get the same arrays (`latents=`, and img2img's noise is torch's first draw from the seed,
which we draw too). What is compared is the decoded image before our inpainting composite: the
references return the whole decoded image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.runtime import pipeline as P
from diffusion.condition import masked_image
from desktop.runtime.bundle import open_bundle
from tests.helpers.peers import run_in_peers
from tests.parity import reference

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sd"
TOLERANCE = 2 / 255
PROMPT = "a red circle on a blue square"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def torch_folders(tmp_path_factory):
    """The torch pipelines the fixtures were exported from, rebuilt (tiny_sd.build_pipeline)."""
    import sys
    sys.path.insert(0, str(FIXTURES))
    import tiny_sd
    root = tmp_path_factory.mktemp("torch-pipelines")
    return {v: tiny_sd.build_pipeline(v, root / v) for v in ("sd1", "sd2", "inpaint")}


def latents(bundle, seed: int = 3) -> np.ndarray:
    m = bundle.manifest
    return np.random.default_rng(seed).standard_normal((1, 4, m.latent.height, m.latent.width)).astype(np.float32)


def ours(bundle, request: P.GenerationRequest, x_T: np.ndarray | None = None, noise=None) -> np.ndarray:
    """Our decoded image in [0, 1] ([1, H, W, 3]) with x_T (txt2img/inpainting) or img2img's noise given."""
    r, _ = P.resolve_request(bundle, request)
    inputs = P.encode_inputs(bundle, r)
    conditioning = P.encode_conditioning(bundle, r, inputs)
    denoiser = P.guided_denoiser(bundle, conditioning, guidance=r.guidance, batch=1)
    start = P.prepare_start(bundle, r, inputs, [r.seed], x_T=x_T, noise=noise)
    x = P.denoise(bundle, r, denoiser, start, [r.seed])
    decoded = bundle.vae_decoder.run({"latent_sample": x / bundle.manifest.latent.scale_factor}, output="sample")
    return np.clip(np.transpose(decoded, (0, 2, 3, 1)) / 2 + 0.5, 0, 1)


def reference_images(kind: str, inputs: dict, tmp_path: Path) -> np.ndarray:
    if kind == "torch":
        return reference.run("torch", inputs)
    src, dst = tmp_path / f"{kind}-in.npz", tmp_path / f"{kind}-out.npz"
    np.savez(src, **{k: np.asarray(v) for k, v in inputs.items()})
    run_in_peers(Path(reference.__file__), kind, src, dst)
    return np.load(dst)["images"]


def assert_close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    diff = float(np.abs(a - b).max())
    assert diff <= TOLERANCE, f"{what}: max difference {diff * 255:.2f}/255"


CASES = [  # (fixture, variant, reference kinds)
    ("optimum-sd1", "sd1", ("torch", "optimum")),
    ("optimum-sd2", "sd2", ("torch", "optimum")),
    ("legacy-sd1", "sd1", ("legacy",)),
]


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
@pytest.mark.parametrize("fixture, variant, kinds", CASES)
def test_txt2img(fixture, variant, kinds, sampler, torch_folders, tmp_path, request):
    if sampler == "ddim" and variant == "sd2":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "SD 2.1's config says set_alpha_to_one=false: diffusers' DDIM ends at ᾱ_0, ours at ᾱ = 1 (x̂_0); "
            "4.4/255 here. SD 1.x's config says the same, within 2/255 on this fixture.")))
    bundle = open_bundle(FIXTURES / fixture, provider="cpu")
    size = bundle.manifest.image.height
    x_T = latents(bundle)
    got = ours(bundle, P.GenerationRequest(prompt=PROMPT, sampler=sampler, steps=6, guidance=7.5, seed=0,
                                           height=size, width=size), x_T=x_T)
    for kind in kinds:
        folder = torch_folders[variant] if kind == "torch" else FIXTURES / fixture
        inputs = dict(mode="txt2img", folder=str(folder), variant=variant, scheduler=sampler, prompt=PROMPT,
                      scheduler_config=str(FIXTURES / fixture / "scheduler" / "scheduler_config.json"),
                      guidance=7.5, steps=6, seed=0, latents=x_T)
        assert_close(got, reference_images(kind, inputs, tmp_path), f"{fixture} {sampler} vs {kind}")


def to_pixels(rgb: np.ndarray) -> np.ndarray:
    return (np.transpose(rgb, (2, 0, 1))[None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)


def picture(size: int) -> np.ndarray:
    """A smooth test picture (uint8 HxWx3)."""
    y, x = np.mgrid[0:size, 0:size] / size
    return (np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x * y)], axis=2) * 255).round().astype(np.uint8)


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
@pytest.mark.parametrize("fixture, variant, kinds", CASES[:2])
def test_img2img(fixture, variant, kinds, sampler, torch_folders, tmp_path, request):
    """The init image's mean latent goes to the references as `image` (4 channels: taken as latents),
    so both sides start from the same latent; the noise is torch's first draw from the seed."""
    if sampler == "ddim":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
            "img2img with DDIM is beyond 2/255 on both fixtures (DPM++ 2M is within); not yet diagnosed: the "
            "known difference is DDIM's last step (the SD configs' set_alpha_to_one=false)")))
    bundle = open_bundle(FIXTURES / fixture, provider="cpu")
    size = bundle.manifest.image.height
    init = picture(size)
    init_latents = bundle.encode_latent(to_pixels(init)) * bundle.manifest.latent.scale_factor
    noise = reference.torch_noise(5, init_latents.shape)
    request = P.GenerationRequest(prompt=PROMPT, sampler=sampler, steps=10, guidance=7.5, seed=5, init_image=init,
                                  strength=0.6, height=size, width=size)
    got = ours(bundle, request, noise=noise)
    for kind in kinds:
        folder = torch_folders[variant] if kind == "torch" else FIXTURES / fixture
        inputs = dict(mode="img2img", folder=str(folder), variant=variant, scheduler=sampler, prompt=PROMPT,
                      scheduler_config=str(FIXTURES / fixture / "scheduler" / "scheduler_config.json"),
                      guidance=7.5, steps=10, seed=5, init_latents=init_latents, strength=0.6)
        assert_close(got, reference_images(kind, inputs, tmp_path), f"{fixture} img2img {sampler} vs {kind}")


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "ddim"])
def test_inpainting(sampler, torch_folders, tmp_path):
    """A 9-channel U-Net: the mask (aligned to the latent grid, so nearest and mean pooling agree) and the
    masked image's mean latent go to the references; we compare the decoded image before our composite."""
    bundle = open_bundle(FIXTURES / "optimum-inpaint", provider="cpu")
    size = bundle.manifest.image.height
    init = picture(size)
    mask = np.zeros((size, size), np.float64)
    mask[8:24, 4:20] = 1.0
    kept = masked_image(to_pixels(init), mask.astype(np.float32))
    masked_latents = bundle.encode_latent(kept) * bundle.manifest.latent.scale_factor
    x_T = latents(bundle, seed=9)
    request = P.GenerationRequest(prompt=PROMPT, sampler=sampler, steps=6, guidance=7.5, seed=0, init_image=init,
                                  mask=mask, height=size, width=size)
    got = ours(bundle, request, x_T=x_T)
    for kind in ("torch", "optimum"):
        folder = torch_folders["inpaint"] if kind == "torch" else FIXTURES / "optimum-inpaint"
        inputs = dict(mode="inpaint", folder=str(folder), variant="inpaint", scheduler=sampler, prompt=PROMPT,
                      scheduler_config=str(FIXTURES / "optimum-inpaint" / "scheduler" / "scheduler_config.json"),
                      guidance=7.5, steps=6, seed=0, latents=x_T, mask=mask[None, None].astype(np.float32),
                      masked_latents=masked_latents)
        assert_close(got, reference_images(kind, inputs, tmp_path), f"inpainting {sampler} vs {kind}")


@pytest.mark.parametrize("variant", ["sd1", "sd2", "inpaint"])
def test_fixtures_are_the_rebuilt_torch_pipelines(variant, torch_folders):
    """tiny_sd rebuilds exactly what the fixtures were exported from (the README's promise)."""
    import torch
    pipe = reference.load("torch", dict(mode="txt2img", folder=str(torch_folders[variant]), scheduler="ddim"))
    bundle = open_bundle(FIXTURES / f"optimum-{variant}", provider="cpu")
    m = bundle.manifest
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, m.unet.in_channels, m.latent.height, m.latent.width)).astype(np.float32)
    states = rng.standard_normal((1, 77, 16)).astype(np.float32)
    ids = pipe.tokenizer([PROMPT], padding="max_length", max_length=77, return_tensors="pt").input_ids
    with torch.no_grad():
        unet = pipe.unet(torch.from_numpy(x), 500, torch.from_numpy(states)).sample.numpy()
        text = pipe.text_encoder(ids)[0].numpy()
        image = pipe.vae.decode(torch.from_numpy(x[:, :4])).sample.numpy()
    feeds = {"sample": x, "timestep": np.array([500]), "encoder_hidden_states": states}
    np.testing.assert_allclose(bundle.unet.run(feeds), unet, atol=1e-4)
    np.testing.assert_allclose(bundle.text.encode([PROMPT])[0], text[0], atol=1e-4)
    np.testing.assert_allclose(bundle.vae_decoder.run({"latent_sample": x[:, :4]}), image, atol=1e-4)
