"""Inpainting by blending the known image into the sampler's state (mask 1 = generate, 0 = keep).

``inpaint_hook``: after each step x_prev ← m x_prev + (1 - m) x̃_known with x̃_known = q_sample(known_x0,
t_prev) (the known image re-noised to the level the sampler just reached); after the last step
(t_prev = -1) x̃_known = known_x0 itself, so pixels with m = 0 equal the known image exactly. m may be
soft (values in [0, 1]). Works with every sampler of ``samplers.py`` through its ``hook``. On a
Karras grid the state's level lies between integer timesteps; the known image is re-noised to the
rounded timestep the hook is told (a level difference below one training step).

``sample_repaint``: RePaint (Lugmayr et al. 2022) on the DDPM sampler: after every ``jump_length``
reverse steps, go back up ``jump_length`` levels of the grid with q(x_t | x_{t-1}) (β = 1 - ᾱ_t/ᾱ_{t-1}
between grid levels) and denoise again, so the generated region harmonises with the known one; each
jump point is passed ``resamples`` times in all (resamples = 1 is plain blended DDPM).
"""
from __future__ import annotations

import numpy as np

from .condition import _as_mask
from .ddpm import VARIANCES, ddpm_step
from .forward import q_sample
from .grid import Grid
from .sampling import call_model, check_inputs, check_rng, draw, finish_step, predict_x0_eps
from .schedule import Schedule


def _check_known(known_x0, mask, shape=None):
    known = np.asarray(known_x0)
    if known.ndim < 2 or not np.issubdtype(known.dtype, np.floating):
        raise ValueError(f"known_x0 must be a float array [B, C, ...], got shape {known.shape} dtype {known.dtype}")
    if not np.isfinite(known).all():
        raise ValueError("known_x0 contains NaN or infinite values")
    m = _as_mask(mask) if known.ndim == 4 else np.asarray(mask, dtype=np.float32)
    try:
        np.broadcast_shapes(m.shape, known.shape)
    except ValueError:
        raise ValueError(f"mask shape {m.shape} does not broadcast to known_x0 shape {known.shape}") from None
    if m.size and not (m.min() >= 0 and m.max() <= 1):
        raise ValueError("mask values must be in [0, 1] (1 = generate, 0 = keep)")
    if shape is not None and (known.shape[1:] != tuple(shape[1:]) or known.shape[0] not in (1, shape[0])):
        raise ValueError(f"known_x0 shape {known.shape} does not fit x_T shape {tuple(shape)}")
    return known, m


def inpaint_hook(schedule: Schedule, known_x0, mask, rng):
    """A sampler hook ``(x_prev, t_prev) -> x_prev`` blending the re-noised known image where mask < 1."""
    known, m = _check_known(known_x0, mask)
    return _blend_hook(schedule, known, m, rng)


def _blend_hook(schedule: Schedule, known: np.ndarray, m: np.ndarray, rng):
    """inpaint_hook's hook for an already checked (known, m)."""
    if rng is None or not hasattr(rng, "randn"):
        raise ValueError("inpaint_hook re-noises the known image and needs rng=BatchRNG(seeds)")
    known64 = known.astype(np.float64, copy=False)  # converted once, not at every step

    def hook(x_prev, t_prev):
        x_prev = np.asarray(x_prev)
        k = np.broadcast_to(known, x_prev.shape) if known.shape != x_prev.shape else known
        if t_prev >= 0:
            k64 = np.broadcast_to(known64, x_prev.shape) if known64.shape != x_prev.shape else known64
            k = q_sample(schedule, k64, int(t_prev), np.asarray(rng.randn(x_prev.shape[1:]), dtype=np.float64))
        return m * x_prev + (1 - m) * k

    return hook


def _repaint_plan(n: int, jump_length: int, resamples: int) -> list[tuple[str, int]]:
    """Moves from level n-1: ("down", k) denoises level k -> k-1, ("up", k) re-noises level k-1 -> k."""
    left = {j: resamples - 1 for j in range(n - 1 - jump_length, -1, -jump_length)}
    plan, level = [], n - 1
    while level >= 0:
        plan.append(("down", level))
        level -= 1
        if left.get(level, 0) > 0:
            left[level] -= 1
            for _ in range(jump_length):
                level += 1
                plan.append(("up", level))
    return plan


def sample_repaint(model, x_T, grid: Grid, known_x0, mask, *, schedule: Schedule, rng=None,
                   jump_length: int = 10, resamples: int = 10, callback=None, cancel=None,
                   prediction_type: str = "epsilon", variance: str = "beta", clip_x0: bool = False) -> np.ndarray:
    """RePaint resampling over the levels of ``grid`` (a ``spaced_grid``); ``schedule`` re-noises the known
    image. The callback's "steps" counts network calls."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel)
    check_rng(rng, x.shape[0])
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCES)}")
    for name, v in (("jump_length", jump_length), ("resamples", resamples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    known, m = _check_known(known_x0, mask, x.shape)
    n, ac = grid.steps, grid.alphas_cumprod
    blend = _blend_hook(schedule, known, m, rng)
    plan = _repaint_plan(n, jump_length, resamples)
    calls = sum(move == "down" for move, _ in plan)
    done = 0
    for move, k in plan:
        j = n - 1 - k  # level k is grid point j; level k-1 is point j+1
        if move == "up":  # q(x_k | x_{k-1}) = N(sqrt(1 - β) x_{k-1}, β), β = 1 - ᾱ_k / ᾱ_{k-1}
            beta = 1.0 - ac[j] / ac[j + 1]
            x = np.sqrt(1 - beta) * x + np.sqrt(beta) * draw(rng, x)
            continue
        t = int(grid.timesteps[j])
        done += 1
        out = call_model(model, x, t, step=done, steps=calls, cancel=cancel)
        x0, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        noise = draw(rng, x) if k > 0 else None
        x = ddpm_step(x, x0, alpha_bar=ac[j], alpha_bar_prev=ac[j + 1], variance=variance, noise=noise)
        x = finish_step(x, x0, step=done, steps=calls, t=t, t_prev=grid.next_timestep(j), callback=callback,
                        hook=blend)
    return x.astype(np.float32)
