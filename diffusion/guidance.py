"""Classifier-free guidance (Ho & Salimans 2022; docs/MATH.md): ε̂ = ε_u + s (ε_c - ε_u).

Both halves come from ONE batched network call: x2 = [x; x], t2 = [t; t] and every conditioning input
``cond2[k] = [uncond[k]; cond[k]]`` (unconditional half first). A conditioning value whose batch is 1
is repeated to the batch of x (e.g. the encoding of the empty prompt). The same formula applies to
any prediction type (ε, v or x_0 are all affine in the score).
"""
from __future__ import annotations

import numpy as np

from .checks import is_number


def _batched(value, batch: int, key: str, which: str) -> np.ndarray:
    value = np.asarray(value)
    if value.ndim == 0:
        raise ValueError(f"{which}[{key!r}] must have a batch dimension, got a scalar")
    if value.shape[0] == 1 and batch > 1:
        value = np.repeat(value, batch, axis=0)
    if value.shape[0] != batch:
        raise ValueError(f"{which}[{key!r}] has batch {value.shape[0]}, expected {batch} (or 1)")
    return value


def cfg_denoiser(model, cond: dict, uncond: dict, scale: float):
    """A denoiser ``(x, t) -> u + scale (c - u)`` built from ``model(x, t, **conditioning)``."""
    if not callable(model):
        raise ValueError(f"model must be callable, got {type(model).__name__}")
    cond, uncond = dict(cond or {}), dict(uncond or {})
    if set(cond) != set(uncond):
        raise ValueError(f"cond and uncond must have the same inputs, got {sorted(cond)} and {sorted(uncond)}")
    if not is_number(scale) or not np.isfinite(scale):
        raise ValueError(f"guidance scale must be a finite number, got {scale!r}")
    scale = float(scale)
    cache: dict[int, dict] = {}  # batch size -> the doubled conditioning (built once, not every step)

    def denoiser(x, t):
        x = np.asarray(x)
        batch = x.shape[0]
        t = np.broadcast_to(np.asarray(t, dtype=np.int64), (batch,))
        cond2 = cache.get(batch)
        if cond2 is None:
            cond2 = cache[batch] = {
                k: np.concatenate([_batched(uncond[k], batch, k, "uncond"), _batched(cond[k], batch, k, "cond")])
                for k in cond}
        out = np.asarray(model(np.concatenate([x, x]), np.concatenate([t, t]), **cond2))
        if out.shape[0] != 2 * batch:
            raise ValueError(f"the model returned batch {out.shape[0]} for a guided batch of {2 * batch}")
        u, c = out[:batch], out[batch:]
        return u + scale * (c - u)

    return denoiser
