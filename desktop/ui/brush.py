"""Brush and fill operations on masks and label maps (numpy, no Qt), so they can be tested alone.

A mask is HxW float32 in [0, 1], 1 = generate, 0 = keep (the runtime's convention). A label map is
HxW int32 holding a palette index, -1 where nothing was painted.
"""
from __future__ import annotations

from collections import deque

import numpy as np


def brush_alpha(shape, cx: float, cy: float, radius: float, hardness: float) -> np.ndarray:
    """Coverage of a round brush centred at (cx, cy), in [0, 1].

    alpha(d) = 1 for d <= hardness * r, then falls linearly to 0 at d = r (a feathered edge);
    hardness 1 is a hard disc. Pixel centres are at integer coordinates + 0.5.
    """
    h, w = shape
    radius = max(float(radius), 0.5)
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
    d = np.sqrt((xs - cx) ** 2 + (ys - cy) ** 2)
    inner = radius * float(np.clip(hardness, 0.0, 1.0))
    if radius - inner < 1e-6:
        return (d <= radius).astype(np.float32)
    return np.clip((radius - d) / (radius - inner), 0.0, 1.0).astype(np.float32)


def stroke_points(x0: float, y0: float, x1: float, y1: float, radius: float) -> list[tuple[float, float]]:
    """Points along a segment, spaced a quarter radius apart, so fast strokes leave no gaps."""
    dist = float(np.hypot(x1 - x0, y1 - y0))
    n = max(1, int(np.ceil(dist / max(radius * 0.25, 0.5))))
    return [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]


def paint_mask(mask: np.ndarray, cx, cy, radius, hardness, erase: bool = False) -> None:
    """Paint (max) or erase (min with 1 - alpha) one brush dab into `mask`, in place."""
    a = brush_alpha(mask.shape, cx, cy, radius, hardness)
    if erase:
        np.minimum(mask, 1.0 - a, out=mask)
    else:
        np.maximum(mask, a, out=mask)


def paint_labels(labels: np.ndarray, cx, cy, radius, label: int) -> None:
    """Set every pixel under a hard disc to `label` (-1 erases), in place."""
    a = brush_alpha(labels.shape, cx, cy, radius, 1.0)
    labels[a > 0] = label


def flood_fill(labels: np.ndarray, x: int, y: int, label: int) -> int:
    """Bucket fill: the 4-connected region of equal value containing (x, y) becomes `label`.

    Returns the number of pixels changed.
    """
    h, w = labels.shape
    if not (0 <= x < w and 0 <= y < h):
        return 0
    target = labels[y, x]
    if target == label:
        return 0
    region = np.zeros_like(labels, dtype=bool)
    queue = deque([(y, x)])
    region[y, x] = True
    same = labels == target
    while queue:
        cy, cx = queue.popleft()
        for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
            if 0 <= ny < h and 0 <= nx < w and same[ny, nx] and not region[ny, nx]:
                region[ny, nx] = True
                queue.append((ny, nx))
    labels[region] = label
    return int(region.sum())


def labels_to_rgba(labels: np.ndarray, colors: list[tuple[int, int, int]], opacity: float) -> np.ndarray:
    """Label map -> HxWx4 uint8 overlay; unpainted (-1) pixels are transparent."""
    h, w = labels.shape
    out = np.zeros((h, w, 4), np.uint8)
    palette = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    painted = (labels >= 0) & (labels < len(palette))
    out[painted, :3] = palette[labels[painted]]
    out[painted, 3] = int(round(255 * opacity))
    return out


def mask_to_rgba(mask: np.ndarray, opacity: float, color=(255, 60, 90)) -> np.ndarray:
    h, w = mask.shape
    out = np.zeros((h, w, 4), np.uint8)
    out[:, :, :3] = color
    out[:, :, 3] = np.clip(mask * 255.0 * opacity, 0, 255).astype(np.uint8)
    return out


def fill_unpainted(labels: np.ndarray) -> np.ndarray:
    """A complete label map: each unpainted (-1) pixel takes the label of the nearest painted pixel
    (grown one 4-neighbour ring at a time). All unpainted stays all -1 (no map)."""
    out = np.asarray(labels, np.int64).copy()
    if (out < 0).all():
        return out
    while (out < 0).any():
        grown = out.copy()
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
            src = np.roll(out, shift, axis=axis)
            edge = [slice(None)] * 2
            edge[axis] = 0 if shift == 1 else -1
            src[tuple(edge)] = -1  # no wrap-around
            take = (grown < 0) & (src >= 0)
            grown[take] = src[take]
        out = grown
    return out
