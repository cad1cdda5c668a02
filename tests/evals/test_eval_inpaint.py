"""Kept-pixel and seam measures, validated on untouched images and pasted patches."""
import numpy as np
import pytest
from scipy import ndimage

from benchmarks.evals import inpaint


def smooth_field(seed, size=64):
    rng = np.random.default_rng(seed)
    f = ndimage.gaussian_filter(rng.normal(size=(size, size, 3)), (3, 3, 0))
    f = (f - f.min()) / (f.max() - f.min())
    return (f * 255).round().astype(np.uint8)


@pytest.mark.slow
def test_untouched_image_has_seam_ratio_near_one():
    rng = np.random.default_rng(0)
    ratios = [inpaint.seam_score(smooth_field(s), inpaint.box_mask(64, 64, rng))["seam_ratio"] for s in range(8)]
    assert 0.8 <= np.median(ratios) <= 1.2
    assert all(0.6 <= r <= 1.5 for r in ratios)


@pytest.mark.slow
def test_pasted_patch_has_a_clearly_larger_seam():
    rng = np.random.default_rng(1)
    for s in range(4):
        image, other = smooth_field(s), smooth_field(100 + s)
        mask = inpaint.box_mask(64, 64, rng)
        pasted = np.where(mask[..., None] > 0, other, image)
        assert inpaint.seam_score(pasted, mask)["seam_ratio"] > 2.0
        # pasting the same image back changes nothing
        assert inpaint.seam_score(np.where(mask[..., None] > 0, image, image), mask)["seam_ratio"] < 1.5


def test_brightness_shift_inside_the_mask_is_caught():
    image = smooth_field(7)
    mask = inpaint.box_mask(64, 64, np.random.default_rng(2))
    shifted = np.where(mask[..., None] > 0, np.clip(image.astype(int) + 40, 0, 255), image).astype(np.uint8)
    assert inpaint.seam_score(shifted, mask)["colour_ratio"] > 2.0


@pytest.mark.slow
def test_seam_works_on_procedural_scenes():
    from benchmarks.evals import shapes

    scenes = shapes.render_scenes(12, seed=99, size=64)
    rng = np.random.default_rng(3)
    ratios = [inpaint.seam_score(s.image, inpaint.box_mask(64, 64, rng))["seam_ratio"] for s in scenes]
    assert 0.5 <= np.median(ratios) <= 1.5


def test_kept_pixels():
    image = smooth_field(3)
    mask = np.zeros((64, 64))
    mask[10:30, 10:30] = 1
    result = image.copy()
    result[15, 15] = 255 - result[15, 15]          # inside the mask: allowed
    assert inpaint.kept_pixels(result, image, mask)["max_abs_kept"] == 0
    result[50, 50, 1] = min(int(image[50, 50, 1]) + 9, 255)
    assert inpaint.kept_pixels(result, image, mask)["max_abs_kept"] == min(9, 255 - int(image[50, 50, 1]))


def test_mask_without_border_is_a_clear_error():
    with pytest.raises(ValueError, match="border"):
        inpaint.seam_score(smooth_field(0), np.zeros((64, 64)))
