"""dataset.augment = "affine": small random rotations, scalings and shifts of pixel training images."""
import pytest
import torch

from engine.config import ConfigError, load_config
from engine.train import AFFINE, random_affine

pytestmark = pytest.mark.slow  # PyTorch: augmentation on tensors


def test_random_affine_is_small_seeded_and_keeps_the_background():
    x = -torch.ones(6, 1, 16, 16)
    x[:, :, 5:11, 6:10] = 1.0  # a bright bar on the background
    a = random_affine(x, torch.Generator().manual_seed(3))
    b = random_affine(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(a, random_affine(x, torch.Generator().manual_seed(4)))
    assert torch.allclose(a[:, :, 0, :], -torch.ones_like(a[:, :, 0, :]))  # edges stay background
    ink = (a > 0).float().sum((1, 2, 3))
    assert torch.all((ink > 0.6 * 24) & (ink < 1.6 * 24))  # the bar moved a little, never vanished
    assert AFFINE["degrees"] <= 10 and AFFINE["shift"] <= 0.1


def test_augment_is_only_for_pixel_models():
    assert load_config("digits", {"dataset": {"augment": "affine"}})["dataset"]["augment"] == "affine"
    with pytest.raises(ConfigError, match="augment"):
        load_config("landscapes", {"dataset": {"augment": "affine"}})
    with pytest.raises(ConfigError, match="augment"):
        load_config("digits", {"dataset": {"augment": "elastic"}})
