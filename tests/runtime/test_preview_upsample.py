"""Smooth latent previews: upsample_bilinear against PIL's bilinear resize (the oracle)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from desktop.runtime.preview import interpolation_matrix, upsample_bilinear


@pytest.mark.parametrize("h,w,factor", [(16, 16, 4), (8, 12, 8), (5, 3, 2), (1, 4, 3)])
def test_upsample_bilinear_matches_pil(h, w, factor):
    x = np.random.default_rng(h * w).standard_normal((2, 3, h, w)).astype(np.float32)
    got = upsample_bilinear(x, factor)
    assert got.shape == (2, 3, h * factor, w * factor) and got.dtype == np.float32
    for b in range(2):
        for c in range(3):
            ref = np.asarray(Image.fromarray(x[b, c], "F").resize((w * factor, h * factor), Image.BILINEAR))
            np.testing.assert_allclose(got[b, c], ref, atol=1e-5)


def test_interpolation_rows_are_convex_combinations():
    m = interpolation_matrix(7, 29)
    assert np.allclose(m.sum(axis=1), 1) and (m >= 0).all()
    assert upsample_bilinear(np.ones((1, 3, 4, 4), np.float32), 1).shape == (1, 3, 4, 4)
