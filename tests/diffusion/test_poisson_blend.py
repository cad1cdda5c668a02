"""poisson_blend: kept pixels exact, the generated region meets them without a jump, its gradients kept."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion.inpaint import poisson_blend


def box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w))
    m[y0:y1, x0:x1] = 1.0
    return m


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(h=st.integers(4, 40), w=st.integers(4, 40), seed=st.integers(0, 2**16), offset=st.floats(-80, 80),
       data=st.data())
def test_kept_pixels_exact_and_the_generated_texture_sits_on_the_surroundings(h, w, seed, offset, data):
    rng = np.random.default_rng(seed)
    y0 = data.draw(st.integers(0, h - 2)); y1 = data.draw(st.integers(y0 + 1, h))
    x0 = data.draw(st.integers(0, w - 2)); x1 = data.draw(st.integers(x0 + 1, w))
    m = box_mask(h, w, y0, y1, x0, x1)
    if m.all():
        m[0, 0] = 0.0
    known = rng.uniform(0, 255, (h, w, 3))
    generated = rng.uniform(0, 255, (h, w, 3))
    out = poisson_blend(generated, known, m)
    np.testing.assert_array_equal(out[m == 0], known[m == 0])
    # a flat surrounding and a generated region that is the same picture brighter: the offset goes
    flat = np.full((h, w, 3), 100.0)
    np.testing.assert_allclose(poisson_blend(flat + offset + 0 * generated, flat, m), flat, atol=1e-2 * max(1.0, abs(offset)))
    # any constant shift of the generated image changes nothing (only its gradients are used)
    np.testing.assert_allclose(poisson_blend(generated + offset, known, m), out, atol=1e-2 * max(1.0, abs(offset)))


def test_generated_gradients_are_kept_and_the_border_jump_goes():
    rng = np.random.default_rng(0)
    h = w = 48
    known = rng.uniform(90, 110, (h, w))
    texture = 10 * np.sin(np.arange(w) / 3.0)[None, :] * np.ones((h, 1))
    generated = 160 + texture  # 60 brighter than the surroundings, with its own texture
    m = box_mask(h, w, 12, 36, 12, 36)
    out = poisson_blend(generated, known, m)
    inner = (slice(16, 32), slice(16, 32))
    # the texture (horizontal differences) survives inside, the brightness jump at the border is gone
    np.testing.assert_allclose(np.diff(out[inner], axis=1), np.diff(generated[inner], axis=1), atol=1.5)
    jump_before = np.abs(generated[12:36, 12] - known[12:36, 11]).mean()
    jump_after = np.abs(out[12:36, 12] - known[12:36, 11]).mean()
    assert jump_before > 40 and jump_after < 8


@pytest.mark.slow
def test_large_image_solves_the_same_system_on_the_mask_box():
    rng = np.random.default_rng(1)
    known = rng.uniform(0, 255, (257, 300, 3))
    m = box_mask(257, 300, 40, 200, 30, 280)
    flat = np.full_like(known, 90.0)
    texture = rng.uniform(-5, 5, known.shape)
    out = poisson_blend(flat + 50.0 + texture, flat, m)
    np.testing.assert_array_equal(out[m == 0], flat[m == 0])
    inner = (slice(60, 180), slice(60, 250))
    assert abs((out - flat - texture)[inner].mean()) < 2.0  # the +50 is gone, the texture is there
    np.testing.assert_allclose(np.diff(out[inner], axis=1), np.diff(texture[inner], axis=1), atol=1.0)
    np.testing.assert_allclose(poisson_blend(flat + 50.0 + texture, flat, m, crop=False), out, atol=0.5)


def test_nothing_to_blend_and_bad_shapes():
    known = np.zeros((8, 8, 3))
    gen = np.ones((8, 8, 3))
    np.testing.assert_array_equal(poisson_blend(gen, known, np.zeros((8, 8))), known)  # nothing generated
    np.testing.assert_array_equal(poisson_blend(gen, known, np.ones((8, 8))), gen)  # nothing kept to meet
    np.testing.assert_allclose(poisson_blend(gen[..., 0], known[..., 0], box_mask(8, 8, 2, 6, 2, 6)), 0, atol=1e-2)
    with pytest.raises(ValueError, match="must share H x W"):
        poisson_blend(gen, known, np.zeros((4, 8)))
