"""A bundle's ONNX weights back into PyTorch (fine-tuning a shipped model): exact round trips."""
from __future__ import annotations

import json

import pytest
import torch
from tests.helpers.tiny_models import tiny_unet2d

from engine import bundle_weights as bw
from export.bundle_writer import export_bundle

pytestmark = pytest.mark.slow  # exports ONNX bundles


@pytest.mark.parametrize("fp16", [False, True])
def test_unet_and_vae_come_back_from_a_bundle(tmp_path, latent_inpaint_model, fp16):
    bundle = export_bundle(latent_inpaint_model, tmp_path / "b", fp16=fp16, log=lambda *a: None)
    fresh = tiny_unet2d(9, 4, 8, seed=5)  # same architecture, other weights
    bw.unet_from_bundle(fresh, bundle)
    for (name, a), b in zip(latent_inpaint_model.unet.state_dict().items(), fresh.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3 if fp16 else 0), name
    vae, scale = bw.vae_from_bundle(bundle)
    assert scale == pytest.approx(1.1)
    for (name, a), b in zip(latent_inpaint_model.vae.state_dict().items(), vae.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-3 if fp16 else 0), name


def test_a_different_architecture_is_refused(tmp_path, latent_inpaint_model):
    bundle = export_bundle(latent_inpaint_model, tmp_path / "b", log=lambda *a: None)
    other = tiny_unet2d(9, 4, 8)
    other.conv_in = torch.nn.Conv2d(9, 8, 5, padding=2)  # another kernel size
    with pytest.raises(bw.BundleWeightsError, match="conv_in"):
        bw.unet_from_bundle(other, bundle)
    with pytest.raises(bw.BundleWeightsError, match="not a bundle"):
        bw.read_manifest(tmp_path)


def test_vae_config_is_read_off_the_encoder_graph(tmp_path, latent_inpaint_model):
    bundle = export_bundle(latent_inpaint_model, tmp_path / "b", log=lambda *a: None)
    files = json.loads((bundle / "studio.json").read_text())["files"]
    cfg = bw.vae_config_from_graph(bundle / files["vae_encoder"], 4)
    assert cfg["model"]["block_out_channels"] == [8, 16] and cfg["model"]["layers_per_block"] == 1
