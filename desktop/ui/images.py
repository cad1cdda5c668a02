"""Conversions between numpy arrays and Qt images, and small image helpers for display."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 uint8 -> contiguous HxWx3 uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


def qimage_from_array(image: np.ndarray) -> QImage:
    """A deep-copied QImage (RGB888 or RGBA8888) from an HxWx3/HxWx4/HxW uint8 array."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 4:
        a = np.ascontiguousarray(a.astype(np.uint8))
        h, w, _ = a.shape
        return QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    a = to_rgb_uint8(a)
    h, w, _ = a.shape
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def array_from_qimage(image: QImage) -> np.ndarray:
    """QImage -> HxWx3 uint8."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    h, w = img.height(), img.width()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=img.bytesPerLine() * h)
    return buf.reshape(h, img.bytesPerLine())[:, : 3 * w].reshape(h, w, 3).copy()


def load_image(path: str | Path) -> np.ndarray:
    """Any image Pillow reads -> HxWx3 uint8 (alpha flattened onto white)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA", "P"):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWx3 uint8 resized with Lanczos (Pillow)."""
    from PIL import Image

    if image.shape[0] == height and image.shape[1] == width:
        return image
    return np.asarray(Image.fromarray(to_rgb_uint8(image)).resize((width, height), Image.LANCZOS))


def tile(images: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Lay out a batch side by side in a near-square grid with a `gap` pixel border."""
    images = [to_rgb_uint8(i) for i in images]
    if len(images) == 1:
        return images[0]
    n = len(images)
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    h, w, _ = images[0].shape
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 40, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = im[:h, :w]
    return out


def latent_to_image(x: np.ndarray) -> np.ndarray:
    """A noisy sample x_t [C,H,W] (image or latent) -> HxWx3 uint8 for display.

    Image-space samples are shown as images (clipped to [-1, 1]); latents with C != 1, 3 show their
    first three channels, each normalised to its own range, so the noise is visible as noise.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4:
        x = x[0]
    c = x.shape[0]
    if c in (1, 3):
        rgb = np.clip((x + 1.0) * 127.5, 0, 255)
        rgb = np.repeat(rgb, 3, axis=0) if c == 1 else rgb
    else:
        ch = x[:3] if c >= 3 else np.repeat(x[:1], 3, axis=0)
        lo = ch.min(axis=(1, 2), keepdims=True)
        hi = ch.max(axis=(1, 2), keepdims=True)
        rgb = (ch - lo) / np.maximum(hi - lo, 1e-6) * 255.0
    return np.ascontiguousarray(rgb.transpose(1, 2, 0).astype(np.uint8))
