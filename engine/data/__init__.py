"""Data sets for training: image folders as users keep them, and procedural / built-in sets.

- ``ImageFolderDataset(root, size=None, crop="center", flip=False, channels=3)`` (``folder.py``, which
  documents the folder naming rule), ``DataError``.
- ``GeneratedDataset(name, count, seed=0, size=None, **options)`` for ``"shapes"``, ``"landscapes"``,
  ``"digits"`` (``generated.py``; the generators are ``shapes.py``, ``landscapes.py``, ``digits.py``).
- ``diffusion-studio make-dataset`` writes a generated set as an image folder (``cli.py``).
"""
from .folder import DataError, ImageFolderDataset, Skipped
from .generated import GENERATORS, GeneratedDataset, Item, item_rng

__all__ = ["DataError", "GENERATORS", "GeneratedDataset", "ImageFolderDataset", "Item", "Skipped", "item_rng"]
