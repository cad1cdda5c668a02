"""The learned preview decoder: training, export as the bundle's preview role, and the runtime."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from desktop.runtime.manifest import BundleError
from desktop.runtime.preview import PreviewNetwork, latent_preview, read_preview
from engine.preview_decoder import PreviewDecoder, psnr, train_preview_decoder
from export import preview_fit, preview_net
from export.bundle_writer import export_bundle

pytestmark = pytest.mark.slow  # PyTorch: trains and exports


def _nonlinear_pairs(n=96, seed=0):
    """Latents [n,4,4,4] and a local nonlinear 'decode' [n,3,8,8] with sub-pixel detail."""
    z = torch.randn(n, 4, 4, 4, generator=torch.Generator().manual_seed(seed))
    mix = torch.randn(3, 4, generator=torch.Generator().manual_seed(42))  # the same decoder for every seed
    rgb = torch.tanh(torch.einsum("kc,nchw->nkhw", mix, z) + 0.5 * z[:, :1] ** 2 - 0.5)
    up = torch.nn.functional.interpolate(rgb, scale_factor=2, mode="nearest")
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2
    return z, (up * (0.8 + 0.2 * checker * torch.tanh(z[:, 1:2].repeat_interleave(2, 2).repeat_interleave(2, 3))))


def test_decoder_shapes_and_range():
    net = PreviewDecoder(latent_channels=4, factor=8, width=16)
    out = net(torch.randn(2, 4, 5, 3))
    assert out.shape == (2, 3, 40, 24) and out.abs().max() <= 1
    with pytest.raises(ValueError, match="power of two"):
        PreviewDecoder(factor=3)


def test_training_beats_the_linear_map_on_a_nonlinear_decoder():
    z, rgb = _nonlinear_pairs()
    net, report = train_preview_decoder(z, rgb, factor=2, steps=400, batch=32, width=16, lr=3e-3)
    zt, rgbt = _nonlinear_pairs(32, seed=1)
    linear = preview_fit.fit_linear(z.numpy(), preview_fit.pool(rgb.numpy(), 4, 4))
    lin = latent_preview(zt.numpy(), (np.asarray(linear["weight"], np.float32), np.asarray(linear["bias"], np.float32)), 2)
    with torch.no_grad():
        learned = psnr(net(zt), rgbt)
    assert learned > psnr(torch.from_numpy(lin), rgbt) + 1.0, (learned, report)
    assert report["steps"] == 400 and np.isfinite(report["l1"])


@pytest.fixture
def latent_bundle(tmp_path, latent_inpaint_model):
    return export_bundle(latent_inpaint_model, tmp_path / "b", log=lambda *a: None)


def test_export_with_a_preview_decoder_writes_the_network_role(tmp_path, latent_inpaint_model):
    from desktop.runtime.bundle import open_bundle

    out = export_bundle(latent_inpaint_model, tmp_path / "n", preview_decoder_steps=3, log=lambda *a: None)
    manifest = json.loads((out / "studio.json").read_text())
    assert manifest["files"]["preview"] == preview_net.PREVIEW_DECODER_FILE
    assert not (out / "preview" / "linear.json").exists()
    assert manifest["provenance"]["export"]["preview"]["steps"] == 3
    bundle = open_bundle(out)
    assert isinstance(bundle.preview, PreviewNetwork)
    m = bundle.manifest
    z = np.zeros((1, m.latent.channels, m.latent.height, m.latent.width), np.float32)
    assert latent_preview(z, bundle.preview, m.image.height // m.latent.height).shape[1:] == \
        (3, m.image.height, m.image.width)


def test_add_preview_decoder_installs_an_onnx_preview_the_runtime_runs(latent_bundle):
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate

    before = open_bundle(latent_bundle)
    assert not isinstance(before.preview, PreviewNetwork)
    ecosystem = (latent_bundle / "model_index.json").read_bytes()  # export.ecosystem's, with its notes
    report = preview_net.add_preview_decoder(latent_bundle, steps=30, width=8, log=lambda *a: None)
    assert (latent_bundle / "model_index.json").read_bytes() == ecosystem
    manifest = json.loads((latent_bundle / "studio.json").read_text())
    assert manifest["files"]["preview"] == preview_net.PREVIEW_DECODER_FILE
    assert not (latent_bundle / "preview" / "linear.json").exists()
    assert manifest["provenance"]["export"]["preview"]["parity"]["max_rel"] <= 1e-4
    assert {"psnr_vs_vae_decode", "linear_psnr_vs_vae_decode", "parameters"} <= set(report)
    assert manifest["model_hash"] == before.manifest.model_hash  # the U-Net is unchanged
    bundle = open_bundle(latent_bundle)
    assert isinstance(bundle.preview, PreviewNetwork)
    frames = []
    result = generate(bundle, GenerationRequest(steps=3, seed=1, batch_size=2), on_step=frames.append)
    assert len(frames) == 3 and all(p.shape == (16, 16, 3) and p.dtype == np.uint8 for p in frames[-1].preview)
    assert len(result.images) == 2


def test_a_fine_tuned_bundle_on_the_same_vae_takes_the_decoder_a_different_vae_is_refused(latent_bundle, tmp_path):
    from desktop.runtime.bundle import open_bundle
    from tests.helpers.tiny_models import loaded, tiny_unet2d, tiny_vae

    preview_net.add_preview_decoder(latent_bundle, steps=2, width=8, log=lambda *a: None)
    model = lambda unet_seed, vae_seed: loaded(  # noqa: E731  (the fixture's model, other seeds)
        kind="latent", unet=tiny_unet2d(9, 4, 8, seed=unet_seed), vae=tiny_vae(vae_seed), scale_factor=1.1,
        image_size=16, image_channels=3, mask={"kind": "inpaint"}, name="tiny-inpaint")
    tuned = export_bundle(model(1, 0), tmp_path / "tuned", log=lambda *a: None)
    before = open_bundle(tuned).manifest.model_hash
    report = preview_net.copy_preview_decoder(tuned, latent_bundle, log=lambda *a: None)
    rel = preview_net.PREVIEW_DECODER_FILE
    assert (tuned / rel).read_bytes() == (latent_bundle / rel).read_bytes()
    assert "tiny-inpaint" in report["copied_from"] and report["steps"] == 2
    bundle = open_bundle(tuned)
    assert isinstance(bundle.preview, PreviewNetwork) and bundle.manifest.model_hash == before
    assert not (tuned / "preview" / "linear.json").exists()
    other = export_bundle(model(1, 5), tmp_path / "other", log=lambda *a: None)
    manifest = (other / "studio.json").read_bytes()
    with pytest.raises(ValueError, match="VAE decoders of .* differ"):
        preview_net.copy_preview_decoder(other, latent_bundle, log=lambda *a: None)
    assert (other / "studio.json").read_bytes() == manifest and not (other / rel).exists()


def test_a_bad_preview_network_is_refused_naming_the_file(latent_bundle, tmp_path):
    preview_net.add_preview_decoder(latent_bundle, steps=2, width=8, log=lambda *a: None)
    rel = preview_net.PREVIEW_DECODER_FILE
    assert isinstance(read_preview(latent_bundle, rel, 4), PreviewNetwork)
    with pytest.raises(BundleError, match="latent_sample"):
        read_preview(latent_bundle, rel, 3)  # the wrong number of latent channels
    (latent_bundle / rel).write_bytes(b"not an onnx file")
    with pytest.raises(BundleError, match="decoder.onnx"):
        read_preview(latent_bundle, rel, 4)


class _HalfSizeNet(PreviewNetwork):
    """A stand-in network that answers at half the image size (2x the latent size)."""

    def __init__(self):
        super().__init__(None, "x.onnx")

    def __call__(self, x0):
        return np.full((x0.shape[0], 3, x0.shape[2] * 2, x0.shape[3] * 2), 0.5, np.float32)


def test_latent_preview_upsamples_a_network_output_to_the_image_size():
    out = latent_preview(np.zeros((1, 4, 8, 8), np.float32), _HalfSizeNet(), 4)
    assert out.shape == (1, 3, 32, 32) and np.allclose(out, 0.5)
