"""scikit-learn's handwritten digits (``sklearn.datasets.load_digits``, bundled, no download).

1797 images of 8 x 8 pixels with 17 gray levels (0..16), scaled to 0..255 (v * 255 / 16, rounded),
white strokes on black. Native size is 16 x 16: the 8 x 8 image upsampled with bilinear filtering
(``size=8`` keeps the original pixels; other sizes resize the 8 x 8 image bilinearly). One channel;
class names "0".."9"; captions like "the digit 7". No label maps (``LABELS = None``).

Item ``index`` is image ``index`` of the fixed collection (``seed`` is accepted for the common
interface and changes nothing); ``count`` may not exceed ``MAX_COUNT``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

from .generated import Item

NATIVE_SIZE = 16
MAX_COUNT = 1797
CLASSES = tuple(str(d) for d in range(10))
LABELS = None
CAPTIONS = ("the digit {d}", "a handwritten {d}", "the number {d}")


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64)


def make_item(seed: int, index: int, size: int | None = None, channels: int = 1) -> Item:
    """Digit ``index`` as uint8 [size, size, channels] (default 16 x 16 x 1)."""
    images, targets = _digits()
    if not 0 <= index < len(images):
        raise IndexError(f"digits has {len(images)} images; index {index} is out of range")
    size = size or NATIVE_SIZE
    image = images[index]
    if size != 8:
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    image = np.repeat(image[:, :, None], channels, axis=2)
    d = int(targets[index])
    caption = CAPTIONS[index % len(CAPTIONS)].format(d=d)
    return Item(image, None, caption, d, {"digit": d, "index": index, "caption": caption, "class": d})
