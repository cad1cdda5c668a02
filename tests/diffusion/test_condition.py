"""Conditioning channels (ARCHITECTURE.md Conventions): resizing against torch, one-hot maps, validation."""
import numpy as np
import pytest

from diffusion.condition import mask_to_size, masked_image, one_hot_labels


@pytest.mark.slow  # PyTorch is the oracle
@pytest.mark.parametrize("H,W,h,w", [(16, 16, 8, 8), (12, 18, 3, 6), (16, 16, 16, 16)])
def test_mask_to_size_mean_pools_when_the_size_divides(H, W, h, w):
    import torch
    F = torch.nn.functional
    mask = np.random.default_rng(0).uniform(size=(2, 1, H, W)).astype(np.float32)
    expected = F.avg_pool2d(torch.from_numpy(mask), (H // h, W // w)).numpy()
    np.testing.assert_allclose(mask_to_size(mask, h, w), expected, rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # PyTorch is the oracle
@pytest.mark.parametrize("H,W,h,w", [(16, 16, 6, 6), (10, 7, 4, 9), (5, 5, 16, 16), (3, 8, 7, 3)])
def test_mask_to_size_is_torch_bilinear_otherwise(H, W, h, w):
    import torch
    F = torch.nn.functional
    mask = np.random.default_rng(1).uniform(size=(1, 1, H, W)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(mask), size=(h, w), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(mask_to_size(mask, h, w), expected, rtol=1e-5, atol=1e-6)


def test_two_dimensional_mask_and_masked_image():
    mask = np.zeros((4, 4), np.float32)
    mask[:2] = 1
    assert mask_to_size(mask, 2, 2).shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(mask_to_size(mask, 2, 2)[0, 0], [[1, 1], [0, 0]])
    x0 = np.random.default_rng(0).uniform(-1, 1, (3, 3, 4, 4)).astype(np.float32)
    kept = masked_image(x0, mask)
    np.testing.assert_array_equal(kept[:, :, :2], 0)
    np.testing.assert_array_equal(kept[:, :, 2:], x0[:, :, 2:])


def test_one_hot_labels_is_a_soft_partition():
    labels = np.random.default_rng(0).integers(0, 5, (2, 12, 12))
    full = one_hot_labels(labels, 5, 12, 12)
    assert full.shape == (2, 5, 12, 12)
    np.testing.assert_array_equal(full.argmax(1), labels)
    pooled = one_hot_labels(labels, 5, 4, 4)
    np.testing.assert_allclose(pooled.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(pooled[0, 3, 0, 0], (labels[0, :3, :3] == 3).mean(), rtol=1e-6)
    assert one_hot_labels(labels[0], 5, 5, 5).shape == (1, 5, 5, 5)  # bilinear path, [H, W] input


@pytest.mark.parametrize("call,message", [
    (lambda: mask_to_size(np.full((4, 4), 2.0), 2, 2), r"in \[0, 1\]"),
    (lambda: mask_to_size(np.ones((1, 3, 4, 4)), 2, 2), r"\[B, 1, H, W\]"),
    (lambda: mask_to_size(np.ones((4, 4)), 0, 2), "target size h"),
    (lambda: masked_image(np.ones((1, 3, 4, 4)), np.ones((5, 5))), "does not fit"),
    (lambda: one_hot_labels(np.full((4, 4), 5), 5, 2, 2), r"labels must be in 0\.\.4"),
    (lambda: one_hot_labels(np.full((4, 4), -1), 5, 2, 2), r"labels must be in 0\.\.4"),
    (lambda: one_hot_labels(np.zeros((4, 4), np.float32), 5, 2, 2), "integers"),
    (lambda: one_hot_labels(np.zeros((1, 1, 4, 4), int), 5, 2, 2), r"\[B, H, W\]"),
    (lambda: one_hot_labels(np.zeros((4, 4), int), 0, 2, 2), "number of labels"),
])
def test_bad_condition_inputs_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call()
