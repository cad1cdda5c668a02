"""The same sampler over the ONNX session and over PyTorch gives the same images.

Tolerance: each network call agrees to ~1e-6 relative (the fp32 parity check). DDIM with eta=0 is
deterministic; an error δ in ε̂ at step t moves x̂_0 by at most sqrt(1-ᾱ_t)/sqrt(ᾱ_t)·δ, which is
< 160·δ for the linear schedule (ᾱ_999 ≈ 4e-5), and later steps contract it again. Ten steps of
~1e-6 errors therefore stay below 1e-3 relative to the image's largest value: that is the bound
asserted. A wrong graph (see test_bundle) is off by order 1.
"""
from __future__ import annotations

import numpy as np
import pytest

from diffusion import samplers
from diffusion.noise import initial_noise
from diffusion.schedule import schedule_from_dict

from desktop.runtime.bundle import open_bundle
from engine.torch_denoiser import torch_denoiser
from export.bundle_writer import export_bundle

pytestmark = pytest.mark.slow  # exports ONNX bundles


def onnx_denoiser(bundle):
    def denoise(x, t, class_labels=None):
        feeds = {"sample": x.astype(np.float32), "timestep": np.asarray(t, dtype=np.int64).reshape(-1)}
        if class_labels is not None:
            feeds["class_labels"] = np.asarray(class_labels, dtype=np.int64)
        return bundle.unet.run(feeds)
    return denoise


@pytest.mark.parametrize("name", ["ddim", "dpmpp_2m"])
def test_onnx_and_torch_samplers_agree(tmp_path, pixel_class_model, name):
    out = export_bundle(pixel_class_model, tmp_path / "b", log=lambda s: None)
    bundle = open_bundle(out, provider="cpu")
    schedule = schedule_from_dict(bundle.manifest.schedule)
    x_T = initial_noise(7, 2, (1, 8, 8))
    labels = np.array([0, 1], dtype=np.int64)
    torch_model = torch_denoiser(pixel_class_model.unet)
    images = {}
    grid = samplers.sampler_grid(name, schedule, steps=10)
    for which, den in (("torch", torch_model), ("onnx", onnx_denoiser(bundle))):
        model = (lambda x, t, den=den: den(x, t, class_labels=labels))
        images[which] = samplers.sample(name, model, x_T.copy(), grid, prediction_type="epsilon")
    a, b = images["onnx"], images["torch"]
    assert np.isfinite(b).all() and np.abs(b).max() > 0.1
    rel = np.abs(a - b).max() / np.abs(b).max()
    print(f"{name}: onnx vs torch max relative difference {rel:.2e}")
    assert rel < 1e-3, rel
    # and the check is sensitive: another class gives a different image
    other = samplers.sample(name, lambda x, t: torch_model(x, t, class_labels=1 - labels), x_T.copy(), grid,
                            prediction_type="epsilon")
    assert np.abs(other - b).max() / np.abs(b).max() > 1e-2
