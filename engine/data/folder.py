"""Image folders as users keep them, as a torch Dataset.

The naming rule (the README repeats it):

- Every ``.png``, ``.jpg``/``.jpeg`` and ``.webp`` file under the root, at any depth, is an image of
  the data set, except sidecar files (below) and anything whose name starts with a dot.
- **Class**: the name of the first sub-folder under the root (``root/cat/2024/a.png`` is class
  ``cat``). Class names are sorted and numbered from 0 (``dataset.classes``). Images lying directly in
  the root have class -1 (no class).
- **Caption**: ``img.txt`` beside ``img.png`` (UTF-8, surrounding whitespace stripped); no file means
  the empty caption ``""``.
- **Inpainting mask**: ``img.mask.png`` beside ``img.png`` (any mode, read as 8-bit gray; white = 1 =
  the region to generate, black = 0 = keep). Same size as the image.
- **Semantic label map**: ``img.labels.png`` beside ``img.png``: an 8-bit single-channel PNG whose
  pixel values are label indices (mode ``L``, or mode ``P`` where the palette index is the label and
  the palette only makes it viewable). Same size as the image.
- A sidecar is recognised by its name: a file whose stem ends in ``.mask`` or ``.labels`` is never an
  image of the data set, whatever its extension.
- An optional ``dataset.json`` in the root (``make-dataset`` writes one) is read into
  ``dataset.info``; it may name the labels of the label maps.

Every image and its sidecars are decoded once at construction, so an unreadable or truncated file
(or a label map that is not single-channel, or a sidecar of the wrong size) is skipped there with a
warning naming it, and listed in ``dataset.skipped``; a folder with no usable image raises
``DataError`` naming the folder before any training starts.

Transforms, applied identically to the image, mask and label map: resize so the shorter side is
``size`` (image bicubic, mask bilinear, label map nearest, so label values stay valid), then a centre
or random ``size`` x ``size`` crop, then (``flip=True``) a horizontal flip with probability 1/2.
Random choices use torch's global generator, so DataLoader worker seeding applies.

An item is a dict: ``"image"`` float32 [C,H,W] in [-1,1] (C = 3 for RGB, 1 for grayscale),
``"class"`` int (-1 without a class), ``"caption"`` str, and only when the sidecar exists
``"mask"`` float32 [1,H,W] in [0,1] and ``"labels"`` int64 [H,W].
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
SIDECAR_TAGS = (".mask", ".labels")


class DataError(ValueError):
    """A data set that cannot be used; the message names the folder or file and what was expected."""


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class _Entry:
    path: Path
    class_index: int
    caption: str
    mask: Path | None
    labels: Path | None


def is_sidecar(path: Path) -> bool:
    """True for ``img.mask.png`` / ``img.labels.png`` (any extension): not images of the data set."""
    return any(Path(path.name).stem.endswith(tag) for tag in SIDECAR_TAGS)


def sidecar(path: Path, tag: str) -> Path:
    """``dir/img.png`` -> ``dir/img{tag}`` (``.txt``, ``.mask.png``, ``.labels.png``)."""
    return path.with_name(path.stem + tag)


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, sorted, hidden files and folders and sidecars left out)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES or is_sidecar(path):
                continue
            found.append(path)
    return found


def open_image(path: Path) -> Image.Image:
    """Decode an image fully (so truncation shows now, not mid-epoch); alpha is composited on white."""
    with Image.open(path) as im:
        im.load()
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return im.copy()


def open_labels(path: Path) -> Image.Image:
    """A label map: 8-bit single channel (mode L, or P read as raw palette indices)."""
    with Image.open(path) as im:
        im.load()
        if im.mode not in ("L", "P"):
            raise DataError(
                f"{path}: a label map must be an 8-bit single-channel PNG of label indices "
                f"(mode L or P), not mode {im.mode}"
            )
        return im.copy()


def _warn_skip(skipped: list[Skipped], path: Path, reason: str) -> None:
    skipped.append(Skipped(path, reason))
    warnings.warn(f"skipping {path}: {reason}", stacklevel=3)


def _check(entry_path: Path, skipped: list[Skipped]) -> tuple[Path | None, Path | None] | None:
    """Decode an image and its sidecars; return (mask, labels) paths, or None when skipped."""
    try:
        image = open_image(entry_path)
    except Exception as exc:  # PIL raises many kinds for bad files
        _warn_skip(skipped, entry_path, f"unreadable image ({type(exc).__name__}: {exc})")
        return None
    found: list[Path | None] = []
    for tag, opener in ((".mask.png", open_image), (".labels.png", open_labels)):
        path = sidecar(entry_path, tag)
        if not path.exists():
            found.append(None)
            continue
        try:
            side = opener(path)
        except Exception as exc:
            _warn_skip(skipped, entry_path, f"unreadable {tag[1:]} file {path} ({exc})")
            return None
        if side.size != image.size:
            _warn_skip(
                skipped, entry_path,
                f"{path} is {side.size[0]}x{side.size[1]} but the image is {image.size[0]}x{image.size[1]}",
            )
            return None
        found.append(path)
    return found[0], found[1]


def _read_caption(path: Path) -> str:
    txt = sidecar(path, ".txt")
    return txt.read_text(encoding="utf-8").strip() if txt.exists() else ""


def resize_shorter(im: Image.Image, size: int, resample: int) -> Image.Image:
    """Scale so the shorter side is ``size`` (up or down), keeping the aspect ratio."""
    w, h = im.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    return im if new == (w, h) else im.resize(new, resample)


def _crop_box(w: int, h: int, size: int, random_crop: bool) -> tuple[int, int, int, int]:
    if random_crop:
        left = int(torch.randint(0, w - size + 1, ()).item())
        top = int(torch.randint(0, h - size + 1, ()).item())
    else:
        left, top = (w - size) // 2, (h - size) // 2
    return left, top, left + size, top + size


def image_to_tensor(im: Image.Image) -> torch.Tensor:
    """uint8 HxW(xC) -> float32 [C,H,W] in [-1, 1]."""
    a = np.asarray(im, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    return torch.from_numpy(a.transpose(2, 0, 1) / 127.5 - 1.0)


class ImageFolderDataset(Dataset):
    """An image folder (see the module docstring for the naming rule) as a torch Dataset.

    size: output side (square) after shorter-side resize and crop; None keeps images as they are.
    crop: "center" or "random". flip: random horizontal flips. channels: 3 (RGB) or 1 (grayscale).
    """

    def __init__(self, root, size: int | None = None, crop: str = "center", flip: bool = False,
                 channels: int = 3):
        self.root = Path(root)
        if crop not in ("center", "random"):
            raise ValueError(f"crop must be 'center' or 'random', not {crop!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels!r}")
        if size is not None and (not isinstance(size, int) or size < 1):
            raise ValueError(f"size must be a positive integer or None, not {size!r}")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: not a folder (expected a folder of images)")
        self.size, self.crop, self.flip, self.channels = size, crop, flip, channels
        self.skipped: list[Skipped] = []
        self.info = self._read_info()

        candidates = find_images(self.root)
        usable: list[tuple[Path, str | None, str, Path | None, Path | None]] = []
        for path in candidates:
            checked = _check(path, self.skipped)
            if checked is None:
                continue
            try:
                caption = _read_caption(path)
            except (OSError, UnicodeDecodeError) as exc:
                _warn_skip(self.skipped, path, f"unreadable caption {sidecar(path, '.txt')} ({exc})")
                continue
            rel = path.relative_to(self.root).parts
            usable.append((path, rel[0] if len(rel) > 1 else None, caption, *checked))
        if not usable:
            what = (f"{len(candidates)} image file(s), none readable" if candidates
                    else "no .png, .jpg, .jpeg or .webp files")
            raise DataError(f"{self.root}: no usable image in this folder ({what})")

        self.classes: list[str] = sorted({c for _, c, *_ in usable if c is not None})
        self.class_to_idx = {name: i for i, name in enumerate(self.classes)}
        self.entries = [
            _Entry(p, self.class_to_idx[c] if c is not None else -1, cap, m, lab)
            for p, c, cap, m, lab in usable
        ]
        if self.skipped:
            log.warning("%s: skipped %d unusable file(s)", self.root, len(self.skipped))

    def _read_info(self) -> dict:
        path = self.root / "dataset.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc

    @property
    def files(self) -> list[Path]:
        return [e.path for e in self.entries]

    @property
    def has_masks(self) -> bool:
        """True when every item has a mask (so a default collate can batch them)."""
        return all(e.mask is not None for e in self.entries)

    @property
    def has_labels(self) -> bool:
        """True when every item has a label map."""
        return all(e.labels is not None for e in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict:
        e = self.entries[index]
        try:
            image = open_image(e.path).convert("L" if self.channels == 1 else "RGB")
            mask = open_image(e.mask).convert("L") if e.mask else None
            labels = open_labels(e.labels) if e.labels else None
        except Exception as exc:
            raise DataError(f"{e.path}: could not be read any more ({exc})") from exc
        layers = [(image, Image.BICUBIC), (mask, Image.BILINEAR), (labels, Image.NEAREST)]
        if self.size is not None:
            layers = [(resize_shorter(im, self.size, rs) if im else None, rs) for im, rs in layers]
            box = _crop_box(*layers[0][0].size, self.size, self.crop == "random")
            layers = [(im.crop(box) if im else None, rs) for im, rs in layers]
        if self.flip and bool(torch.rand(()) < 0.5):
            layers = [(im.transpose(Image.FLIP_LEFT_RIGHT) if im else None, rs) for im, rs in layers]
        (image, _), (mask, _), (labels, _) = layers
        item = {"image": image_to_tensor(image), "class": e.class_index, "caption": e.caption}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.asarray(mask, dtype=np.float32)[None] / 255.0)
        if labels is not None:
            item["labels"] = torch.from_numpy(np.asarray(labels, dtype=np.int64).copy())
        return item
