"""Per-image random numbers, so that batch size never changes an image (docs/MATH.md, "Random numbers").

Image i of a batch generated from ``seed`` uses seed + i. Each image owns a ``np.random.Generator``
(PCG64) seeded from ``SeedSequence(seed_i, spawn_key=(stream,))``:

- stream 0 draws x_T (``initial_noise``);
- stream 1 (``BatchRNG``'s default) draws the noise a sampler adds during sampling.

So ``x_T = initial_noise(seed, B, shape)`` followed by a sampler with ``rng=BatchRNG.from_seed(seed, B)``
never reuses a number, and ``BatchRNG(...).randn`` called for x_T first is just as valid.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import is_int


def _check_seed(seed) -> int:
    if not is_int(seed) or seed < 0:
        raise ValueError(f"a seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class BatchRNG:
    """One generator per image: ``randn(shape_per_image) -> [B, *shape]`` float32 standard normals."""

    def __init__(self, seeds: Sequence[int] | int, stream: int = 1):
        if is_int(seeds):
            seeds = [seeds]
        seeds = [_check_seed(s) for s in seeds]
        if not seeds:
            raise ValueError("BatchRNG needs at least one seed")
        self.seeds = tuple(seeds)
        self.generators = [np.random.default_rng(np.random.SeedSequence(s, spawn_key=(stream,))) for s in seeds]

    @classmethod
    def from_seed(cls, seed: int, batch: int, stream: int = 1) -> BatchRNG:
        """Seeds seed, seed+1, ..., seed+batch-1."""
        seed = _check_seed(seed)
        if not is_int(batch) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        return cls([seed + i for i in range(batch)], stream)

    def __len__(self) -> int:
        return len(self.generators)

    def randn(self, shape_per_image) -> np.ndarray:
        if isinstance(shape_per_image, (int, np.integer)):
            shape_per_image = (shape_per_image,)
        shape = tuple(int(s) for s in shape_per_image)
        return np.stack([g.standard_normal(shape, dtype=np.float32) for g in self.generators])


def initial_noise(seed: int, batch: int, shape) -> np.ndarray:
    """x_T ~ N(0, I) as float32 [batch, *shape]; image i depends on seed + i only."""
    return BatchRNG.from_seed(seed, batch, stream=0).randn(shape)
