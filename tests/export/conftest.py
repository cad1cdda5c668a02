"""Fixtures: tiny LoadedModels of every kind (builders in tests/helpers/tiny_models.py).

PyTorch is imported inside them: only slow tests use it (tests/helpers/fast_target.py), and
`make test-fast` collects the fast ONNX-level tests of this folder without importing it."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _one_thread(request):
    """PyTorch on one thread for the slow tests (the only ones that use it)."""
    if request.node.get_closest_marker("slow") is None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def pixel_class_model():
    """Grey 8x8 pixel DDPM with two classes (+ the null class)."""
    from tests.helpers.tiny_models import loaded, tiny_unet2d

    return loaded(kind="pixel", unet=tiny_unet2d(1, 1, 8, num_class_embeds=3), image_size=8, image_channels=1,
                  class_names=["zero", "one"], name="tiny-pixel")


@pytest.fixture
def latent_text_model(tmp_path_factory):
    """16x16 RGB latent model: cross-attention on a scratch text encoder, plus a class embedding."""
    import torch
    from diffusers import UNet2DConditionModel

    from tests.helpers.tiny_models import loaded, tiny_text_encoder, tiny_vae

    te = tiny_text_encoder(tmp_path_factory.mktemp("tokenizer"))
    torch.manual_seed(1)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4, num_class_embeds=3,
    ).eval()
    return loaded(kind="latent", unet=unet, vae=tiny_vae(), scale_factor=0.8, text_encoder=te, image_size=16,
                  image_channels=3, class_names=["cat", "dog"], name="tiny-latent")


@pytest.fixture
def latent_inpaint_model():
    """16x16 latent inpainting model: [z_t (4), mask (1), masked latent (4)] -> 4."""
    from tests.helpers.tiny_models import loaded, tiny_unet2d, tiny_vae

    return loaded(kind="latent", unet=tiny_unet2d(9, 4, 8), vae=tiny_vae(), scale_factor=1.1, image_size=16,
                  image_channels=3, mask={"kind": "inpaint"}, name="tiny-inpaint")


@pytest.fixture
def semantic_model():
    """8x8 RGB pixel model on semantic maps with 3 labels: [x_t (3), one-hot (3)] -> 3."""
    from tests.helpers.tiny_models import loaded, tiny_unet2d

    labels = [{"name": "sky", "color": (90, 160, 230)}, {"name": "grass", "color": [60, 150, 60]},
              {"name": "rock", "color": [120, 110, 100]}]
    return loaded(kind="pixel", unet=tiny_unet2d(6, 3, 8), image_size=8, image_channels=3,
                  mask={"kind": "semantic", "labels": labels}, name="tiny-semantic")
