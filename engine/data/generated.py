"""Procedural and built-in data sets as one in-memory torch Dataset.

A generator module (``shapes``, ``landscapes``, ``digits``) provides ``CLASSES`` (class names),
``LABELS`` (list of (name, RGB) for its label maps, or None), ``NATIVE_SIZE`` and
``make_item(seed, index, size=None, **options) -> Item``. Item ``index`` of a set depends only on
``(seed, index)``: its randomness comes from ``item_rng(seed, index)``, so it never depends on how many
items were made or in what order.

Deviation from a plain ``default_rng(seed + index)``: the generator is seeded with the pair
``[seed, index]`` so that the sets for seeds 0 and 1 do not share all but one item (with
``seed + index``, item 1 of seed 0 would equal item 0 of seed 1, and an evaluation set made with
the next seed would be the training set shifted by one).
"""
from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from .folder import image_to_tensor

GENERATORS = ("shapes", "landscapes", "digits")


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of item ``index`` of the set made with ``seed``."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    return np.random.default_rng([int(seed), int(index)])


@dataclass
class Item:
    """One generated example. image: uint8 [H,W,C] (C = 3 or 1); labels: uint8 [H,W] or None."""

    image: np.ndarray
    labels: np.ndarray | None
    caption: str
    class_index: int
    scene: dict = field(default_factory=dict)


def generator_module(name: str):
    if name not in GENERATORS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(GENERATORS)}")
    return importlib.import_module(f"{__package__}.{name}")


def _make_item(module_name: str, seed: int, size, options: dict, index: int) -> Item:
    return importlib.import_module(module_name).make_item(seed, index, size=size, **options)


class GeneratedDataset(Dataset):
    """``count`` items of a generator, made on first use and cached.

    size: output side (None = the generator's native size). Items are dicts like
    ``ImageFolderDataset``'s: "image" float32 [C,H,W] in [-1,1], "class" int, "caption" str, and
    "labels" int64 [H,W] for generators that make label maps. ``item(i).scene`` gives the
    structured description of item i.
    """

    def __init__(self, name: str, count: int, seed: int = 0, size: int | None = None, **options):
        self.module = generator_module(name)
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        limit = getattr(self.module, "MAX_COUNT", None)
        if limit is not None and count > limit:
            raise ValueError(f"{name} has only {limit} images; count {count} is too many")
        self.name, self.count, self.seed, self.size, self.options = name, count, seed, size, options
        self.classes: list[str] = list(self.module.CLASSES)
        self.labels: list | None = self.module.LABELS
        self._cache: dict[int, Item] = {}

    def item(self, index: int) -> Item:
        if not 0 <= index < self.count:
            raise IndexError(f"index {index} out of range for {self.count} items")
        if index not in self._cache:
            self._cache[index] = self.module.make_item(self.seed, index, size=self.size, **self.options)
        return self._cache[index]

    def prefill(self, workers: int | None = None) -> None:
        """Make every item now, on ``workers`` processes (default: all cores).

        Items depend only on (seed, index), so making them in parallel gives the same data as
        making them one by one; training then reads from memory instead of drawing scenes.
        """
        missing = [i for i in range(self.count) if i not in self._cache]
        workers = max(1, min(workers or os.cpu_count() or 1, len(missing) // 256 or 1))
        if workers == 1:
            for i in missing:
                self.item(i)
            return
        import multiprocessing as mp

        make = functools.partial(_make_item, self.module.__name__, self.seed, self.size, self.options)
        with mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(workers) as pool:
            for i, it in zip(missing, pool.imap(make, missing, chunksize=64)):
                self._cache[i] = it

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        it = self.item(index)
        out = {"image": image_to_tensor(it.image), "class": it.class_index, "caption": it.caption}
        if it.labels is not None:
            out["labels"] = torch.from_numpy(it.labels.astype(np.int64))
        return out
