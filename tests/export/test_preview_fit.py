"""The linear latent -> RGB preview map."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from export.preview_fit import apply_linear, fit_linear, fit_preview, training_pairs
from tests.helpers.tiny_models import tiny_vae

pytestmark = pytest.mark.slow  # fits preview maps on VAEs


def test_fit_linear_recovers_a_known_map():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3))
    b = np.array([0.1, -0.2, 0.05])
    z = rng.normal(size=(6, 4, 5, 5)) * 0.2
    rgb = np.einsum("nchw,ck->nkhw", z, w) + b[None, :, None, None]
    fit = fit_linear(z, rgb)
    np.testing.assert_allclose(fit["weight"], w, atol=1e-8)
    np.testing.assert_allclose(fit["bias"], b, atol=1e-8)


class LocalDecoderVAE(torch.nn.Module):
    """A stand-in VAE whose decoder is local and nonlinear, like a trained one: each 2x2 patch's
    colour is tanh of a 1x1 conv of its latent pixel plus a squared term and a little texture."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(block_out_channels=(8, 16), latent_channels=4, in_channels=3)
        torch.manual_seed(3)
        self.mix = torch.nn.Conv2d(4, 3, 1)

    def decode(self, z, return_dict=False):
        rgb = torch.tanh(0.6 * self.mix(z) + 0.2 * z[:, :1] ** 2)
        up = torch.nn.functional.interpolate(rgb, scale_factor=2, mode="nearest")
        texture = 0.05 * torch.sin(torch.arange(up.shape[-1], dtype=up.dtype) * 2.0)
        return (up + texture,)


def _held_out_errors(vae, scale_factor):
    preview, report = fit_preview(vae, scale_factor, 16, samples=48, seed=0)
    assert np.asarray(preview["weight"]).shape == (4, 3) and len(preview["bias"]) == 3
    z, rgb, source = training_pairs(vae, scale_factor, 16, samples=32, seed=99)  # new latents
    assert "random" in source
    linear = np.mean((apply_linear(preview, z) - rgb) ** 2)
    # the baseline even knows the held-out set's own mean colour
    mean_colour = np.mean((rgb.mean(axis=(0, 2, 3), keepdims=True) - rgb) ** 2)
    print(f"held-out mse: linear {linear:.5f}, mean colour {mean_colour:.5f}")
    return linear, mean_colour


def test_preview_beats_the_mean_colour_on_held_out_latents():
    linear, mean_colour = _held_out_errors(LocalDecoderVAE(), 1.0)
    assert linear < 0.5 * mean_colour


def test_preview_of_a_random_diffusers_vae_is_no_worse_than_the_mean():
    """An untrained AutoencoderKL barely carries colour in its latents; the fit must still not
    lose to the mean colour on latents it has not seen."""
    linear, mean_colour = _held_out_errors(tiny_vae(), 0.8)
    assert linear < mean_colour


def test_preview_uses_real_images_when_the_data_folder_exists(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "im0.mask.png")  # skipped
    z, rgb, source = training_pairs(tiny_vae(), 0.8, 16, samples=32, data_dir=tmp_path)
    assert source.startswith("6 images") and z.shape == (6, 4, 8, 8) and rgb.shape == (6, 3, 8, 8)
