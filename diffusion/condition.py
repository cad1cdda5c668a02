"""Conditioning channels concatenated after x_t (docs/ARCHITECTURE.md "Conventions").

- inpainting: ``[x_t, mask_to_size(mask, h, w), encode(masked_image(x0, mask))]``; mask 1 = generate, 0 = keep.
- semantic maps: ``[x_t, one_hot_labels(label_map, K, h, w)]``; all zeros = no map (unconditional).

Resizing (``resize``): mean pooling when the size divides exactly (h | H and w | W), otherwise bilinear
with half-pixel centres and no antialiasing (torch's ``interpolate(mode="bilinear", align_corners=False)``).
All outputs are float32 NCHW.
"""
from __future__ import annotations

import numpy as np

from .checks import is_int


def as_mask(mask, what="mask") -> np.ndarray:
    """A mask as float32 [B, 1, H, W] in [0, 1] (from [H, W] or [B, 1, H, W]); ValueError naming `what` otherwise."""
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None, None]
    if m.ndim != 4 or m.shape[1] != 1:
        raise ValueError(f"{what} must be [H, W] or [B, 1, H, W], got shape {m.shape}")
    if not (np.issubdtype(m.dtype, np.floating) or np.issubdtype(m.dtype, np.integer) or m.dtype == bool):
        raise ValueError(f"{what} must be numeric, got dtype {m.dtype}")
    m = m.astype(np.float32)
    if m.size and not (np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1):
        raise ValueError(f"{what} values must be in [0, 1] (1 = generate, 0 = keep), "
                         f"got {np.nanmin(m):g}..{np.nanmax(m):g}")
    return m


def _check_size(h, w):
    for name, v in (("h", h), ("w", w)):
        if not is_int(v) or v < 1:
            raise ValueError(f"target size {name} must be a positive integer, got {v!r}")


def _bilinear_axis(n_in: int, n_out: int):
    """Source indices and weights along one axis (half-pixel centres, clamped at the border)."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (src - i0).astype(np.float32)


def resize(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """[N, C, H, W] -> [N, C, h, w]: mean pooling when h | H and w | W, else bilinear."""
    _check_size(h, w)
    n, c, H, W = a.shape
    if H % h == 0 and W % w == 0:
        return a.reshape(n, c, h, H // h, w, W // w).mean(axis=(3, 5), dtype=np.float64).astype(np.float32)
    y0, y1, wy = _bilinear_axis(H, h)
    x0, x1, wx = _bilinear_axis(W, w)
    rows = a[:, :, y0, :] * (1 - wy)[:, None] + a[:, :, y1, :] * wy[:, None]
    return (rows[..., x0] * (1 - wx) + rows[..., x1] * wx).astype(np.float32)


def mask_to_size(mask, h: int, w: int) -> np.ndarray:
    """Mask [B,1,H,W] or [H,W] in [0,1] -> [B,1,h,w] (a [H,W] mask gives B = 1)."""
    return resize(as_mask(mask), h, w)


def masked_image(x0, mask) -> np.ndarray:
    """x0 (1 - mask): the part of the image to keep; x0 [B,C,H,W], mask [B or 1,1,H,W] or [H,W]."""
    x0 = np.asarray(x0, dtype=np.float32)
    m = as_mask(mask)
    if x0.ndim != 4:
        raise ValueError(f"image must be [B, C, H, W], got shape {x0.shape}")
    if m.shape[2:] != x0.shape[2:] or m.shape[0] not in (1, x0.shape[0]):
        raise ValueError(f"mask shape {m.shape} does not fit image shape {x0.shape} "
                         "(need the same H, W and batch 1 or the image's)")
    return x0 * (1 - m)


def one_hot_labels(label_map, K: int, h: int, w: int) -> np.ndarray:
    """Label map [B,H,W] or [H,W] of ints in 0..K-1 -> soft one-hot [B,K,h,w] (resize of the full one-hot)."""
    if not is_int(K) or K < 1:
        raise ValueError(f"number of labels K must be a positive integer, got {K!r}")
    labels = np.asarray(label_map)
    if labels.ndim == 2:
        labels = labels[None]
    if labels.ndim != 3:
        raise ValueError(f"label map must be [H, W] or [B, H, W], got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map must hold integers, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= K):
        raise ValueError(f"labels must be in 0..{K - 1}, got {labels.min()}..{labels.max()}")
    one_hot = (labels[:, None] == np.arange(K)[None, :, None, None]).astype(np.float32)
    return resize(one_hot, h, w)
