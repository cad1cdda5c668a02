"""What the user painted for one model: the start image, the inpainting mask and the label map,
with undo/redo over whole strokes.

A mask is HxW float32 in [0, 1] (1 = generate, 0 = keep); a label map HxW int32 of palette indices,
-1 where nothing was painted (brush.py). `stash()` / `unstash()` move the whole state, undo history
included, so the app keeps one canvas per model for the session.
"""
from __future__ import annotations

import zlib

import numpy as np
from PySide6.QtCore import QObject, Signal

from . import brush, images

MAX_UNDO = 50


def _pack(layer: np.ndarray) -> tuple:
    """A painted layer as an undo step keeps it: zlib-compressed (painted layers are mostly flat; raw,
    50 steps of a 1024x1024 mask and label map held 400 MB), with its dtype and shape."""
    return layer.dtype.str, layer.shape, zlib.compress(np.ascontiguousarray(layer).tobytes(), 1)


def _unpack(packed: tuple) -> np.ndarray:
    dtype, shape, data = packed
    return np.frombuffer(zlib.decompress(data), dtype).reshape(shape).copy()


class CanvasState(QObject):
    """Init image, inpainting mask and label map, with undo/redo over whole strokes."""

    changed = Signal()
    undoChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.height, self.width = 32, 32
        self.init_image: np.ndarray | None = None
        self.mask = np.zeros((32, 32), np.float32)
        self.labels = np.full((32, 32), -1, np.int32)
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []

    # --- size and content -------------------------------------------------------------------
    def resize(self, height: int, width: int) -> None:
        """A new picture size: the start image, the mask (bilinear) and the label map (nearest) are
        resampled to it; the undo history (of the old size) starts over."""
        if (height, width) == (self.height, self.width):
            return
        from PIL import Image

        self.height, self.width = height, width
        if self.init_image is not None:
            self.init_image = images.resize(self.init_image, height, width)
        self.mask = np.clip(np.asarray(Image.fromarray(self.mask.astype(np.float32), "F").resize(
            (width, height), Image.BILINEAR), np.float32), 0.0, 1.0).copy()
        self.labels = np.asarray(Image.fromarray(self.labels.astype(np.int32), "I").resize(
            (width, height), Image.NEAREST), np.int32).copy()
        self._undo.clear()
        self._redo.clear()
        self.changed.emit()
        self.undoChanged.emit()

    def stash(self) -> dict:
        """Everything this canvas holds (size, layers, undo and redo), to `unstash` later."""
        return {"size": (self.height, self.width), "init_image": self.init_image, "mask": self.mask,
                "labels": self.labels, "undo": list(self._undo), "redo": list(self._redo)}

    def unstash(self, state: dict) -> None:
        self.height, self.width = state["size"]
        self.init_image, self.mask, self.labels = state["init_image"], state["mask"], state["labels"]
        self._undo, self._redo = list(state["undo"]), list(state["redo"])
        self.changed.emit()
        self.undoChanged.emit()

    def start_fresh(self, height: int, width: int, keep_image: bool) -> bool:
        """An empty canvas of a new size (no undo history); `keep_image` carries the start image
        over, resampled. True when a start image came along."""
        self.height, self.width = height, width
        carried = keep_image and self.init_image is not None
        self.init_image = images.resize(self.init_image, height, width) if carried else None
        self.mask = np.zeros((height, width), np.float32)
        self.labels = np.full((height, width), -1, np.int32)
        self._undo.clear()
        self._redo.clear()
        self.changed.emit()
        self.undoChanged.emit()
        return carried

    def has_mask(self) -> bool:
        return bool(self.mask.max() > 0)

    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def _snapshot(self):
        return (self.init_image, _pack(self.mask), _pack(self.labels))

    def checkpoint(self) -> None:
        """Call before any change: the current state becomes one undo step."""
        self._undo.append(self._snapshot())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()
        self.undoChanged.emit()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        self._step_back(self._undo, self._redo)

    def redo(self) -> None:
        self._step_back(self._redo, self._undo)

    def _step_back(self, source: list, target: list) -> None:
        """Restore the newest snapshot of `source`, keeping the current state on `target`."""
        if source:
            target.append(self._snapshot())
            init_image, mask, labels = source.pop()
            self.init_image, self.mask, self.labels = init_image, _unpack(mask), _unpack(labels)
            self.changed.emit()
            self.undoChanged.emit()

    def set_init_image(self, image: np.ndarray | None) -> None:
        self.checkpoint()
        self.init_image = None if image is None else images.resize(images.to_rgb_uint8(image), self.height, self.width)
        self.changed.emit()

    def set_mask(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (self.height, self.width):
            raise ValueError(
                f"The mask is {mask.shape[1]}×{mask.shape[0]} pixels but this model makes "
                f"{self.width}×{self.height} images; use a mask of the same size."
            )
        self.checkpoint()
        self.mask = np.clip(mask, 0.0, 1.0)
        self.changed.emit()

    def set_labels(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int32)
        if labels.shape != (self.height, self.width):
            raise ValueError(f"The label map is {labels.shape[1]}×{labels.shape[0]} but the model makes {self.width}×{self.height} images.")
        self.checkpoint()
        self.labels = labels.copy()
        self.changed.emit()

    # --- painting (a stroke = checkpoint() then several dabs) ------------------------------
    def dab_mask(self, x: float, y: float, radius: float, hardness: float, erase: bool) -> None:
        self.dabs_mask([(x, y)], radius, hardness, erase)

    def dab_labels(self, x: float, y: float, radius: float, label: int) -> None:
        self.dabs_labels([(x, y)], radius, label)

    # A mouse move paints every dab between the last point and this one, then says `changed` once:
    # each `changed` redraws the whole overlay and re-checks the controls, which per dab made the
    # brush lag (the soak test spent 89% of its time there).
    def dabs_mask(self, points, radius: float, hardness: float, erase: bool) -> None:
        for x, y in points:
            brush.paint_mask(self.mask, x, y, radius, hardness, erase)
        self.changed.emit()

    def dabs_labels(self, points, radius: float, label: int) -> None:
        for x, y in points:
            brush.paint_labels(self.labels, x, y, radius, label)
        self.changed.emit()

    def bucket(self, x: int, y: int, label: int) -> None:
        self.checkpoint()
        brush.flood_fill(self.labels, x, y, label)
        self.changed.emit()

    def invert_mask(self) -> None:
        self.checkpoint()
        self.mask = 1.0 - self.mask
        self.changed.emit()

    def fill_mask(self) -> None:
        self.checkpoint()
        self.mask = np.ones_like(self.mask)
        self.changed.emit()

    def clear_mask(self) -> None:
        self.checkpoint()
        self.mask = np.zeros_like(self.mask)
        self.changed.emit()

    def clear_labels(self) -> None:
        self.checkpoint()
        self.labels = np.full_like(self.labels, -1)
        self.changed.emit()

    def fill_labels(self, label: int) -> None:
        self.checkpoint()
        self.labels = np.full_like(self.labels, label)
        self.changed.emit()
