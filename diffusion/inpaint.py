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

from .checks import is_int
from .condition import as_mask
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
    m = as_mask(mask) if known.ndim == 4 else np.asarray(mask, dtype=np.float32)
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
        if not is_int(v) or v < 1:
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

def _neighbour_sum(a: np.ndarray) -> np.ndarray:
    """Sum of the 4-neighbours of every pixel of a [H, W, C] array; outside the image counts 0."""
    s = np.zeros_like(a)
    s[1:] += a[:-1]
    s[:-1] += a[1:]
    s[:, 1:] += a[:, :-1]
    s[:, :-1] += a[:, 1:]
    return s


def poisson_blend(generated, known, mask, *, tol: float = 1e-4, max_iter: int = 4000, crop: bool = True) -> np.ndarray:
    """Poisson image editing (Pérez et al. 2003) of a generated region into the kept pixels.

    With Ω = {mask > 0} (mask 1 = generate, 0 = keep), f on Ω minimises Σ (f_p - f_q - v_pq)² over
    4-neighbour pairs (p in Ω), with f_q = known_q outside Ω and the guidance v_pq = g_p - g_q from
    the generated image g between two pixels of Ω, and 0 across the border (the border carries no edge
    of its own: the generated side's colour there is whatever the sampler made of a region it could
    not see whole). So f keeps the generated gradients inside Ω and meets the kept pixels without a
    jump; outside Ω the result is `known` exactly. Image edges: no flux. Solved for δ = f - g by
    conjugate gradients, on Ω's bounding box grown by one pixel (`crop`; the same system, less work),
    to a residual of `tol` relative to the boundary data (max error under one grey level on 0..255).

    generated, known: [H, W] or [H, W, C] arrays (any value range); mask: [H, W] in [0, 1].
    crop=False solves on the whole image (benchmarks/bench_blend.py compares the two).
    A soft mask's blend m * f + (1 - m) * known is the caller's (Ω covers every m > 0).
    """
    g = np.asarray(generated, np.float64)
    k = np.asarray(known, np.float64)
    m = np.asarray(mask, np.float64)
    if g.shape != k.shape or m.shape != g.shape[:2]:
        raise ValueError(f"poisson_blend: generated {g.shape}, known {k.shape} and mask {m.shape} must share H x W")
    flat = g.ndim == 2
    if flat:
        g, k = g[..., None], k[..., None]
    inside = m > 0
    if inside.all():  # nothing kept to meet
        out = g.copy()
    else:
        out = k.copy()
        if inside.any():
            box = (slice(None), slice(None))
            if crop:  # Ω, its kept neighbours and nothing else (the Laplacian only couples neighbours)
                ys, xs = np.nonzero(inside)
                box = (slice(max(ys.min() - 1, 0), ys.max() + 2), slice(max(xs.min() - 1, 0), xs.max() + 2))
            out[box] = _solve_blend(g[box], k[box], inside[box], tol, max_iter)
    return out[..., 0] if flat else out


def _dst1(a: np.ndarray, axis: int) -> np.ndarray:
    """Type-I discrete sine transform along `axis` (unnormalised; its own inverse up to 2 / (N + 1))."""
    a = np.moveaxis(a, axis, 0)
    z = np.zeros((1, *a.shape[1:]))
    y = np.concatenate([z, a, z, -a[::-1]], axis=0)
    return np.moveaxis(-np.fft.fft(y, axis=0).imag[1:a.shape[0] + 1] / 2, 0, axis)


def _box_poisson_solver(h: int, w: int):
    """u = L⁻¹ r for the 5-point Laplacian on an h x w box with zero values outside it, by sine transforms."""
    lam = (4 - 2 * np.cos(np.pi * np.arange(1, h + 1) / (h + 1))[:, None]
           - 2 * np.cos(np.pi * np.arange(1, w + 1) / (w + 1))[None, :])[..., None]
    scale = 4.0 / ((h + 1) * (w + 1))

    def solve(r: np.ndarray) -> np.ndarray:
        return scale * _dst1(_dst1(_dst1(_dst1(r, 0), 1) / lam, 0), 1)
    return solve


def _solve_blend(g: np.ndarray, k: np.ndarray, inside: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """poisson_blend on a window whose edge pixels are either kept pixels or the image's own edges.

    Conjugate gradients, preconditioned by the window's own Dirichlet Laplacian (solved exactly by sine
    transforms) when Ω fills at least half its window: then a blob or box converges in a few dozen
    iterations where plain CG needs about one per pixel of its width. Thin strokes (Ω a small part of
    its window) converge fast without it, and cheaper per iteration."""
    omega = inside[..., None].astype(np.float64)
    n = _neighbour_sum(np.ones_like(omega))  # in-image neighbours: 2, 3 or 4

    def A(d):  # the Laplacian system on Ω; d is 0 outside Ω
        return omega * (n * d - _neighbour_sum(omega * d))

    if inside.mean() >= 0.5:  # Ω fills its window: the window's Laplacian is a good approximation
        box_solve = _box_poisson_solver(*inside.shape)

        def M(r):  # the preconditioner, kept on Ω (symmetric positive definite there)
            return omega * box_solve(omega * r)
    else:  # thin strokes: plain CG converges in about their width, each iteration far cheaper
        def M(r):
            return r

    b = omega * (_neighbour_sum((1 - omega) * k) - (n - _neighbour_sum(omega)) * g)
    d = np.zeros_like(g)
    r = b.copy()
    z = M(r)
    p = z.copy()
    rz = (r * z).sum(axis=(0, 1))  # one system per channel, solved together
    stop = (tol ** 2) * np.maximum((b * b).sum(axis=(0, 1)), 1e-24)
    for _ in range(max_iter):
        if ((r * r).sum(axis=(0, 1)) <= stop).all():
            break
        Ap = A(p)
        alpha = rz / np.maximum((p * Ap).sum(axis=(0, 1)), 1e-300)
        d += alpha * p
        r -= alpha * Ap
        z = M(r)
        rz_new = (r * z).sum(axis=(0, 1))
        p = z + (rz_new / np.maximum(rz, 1e-300)) * p
        rz = rz_new
    return omega * (g + d) + (1 - omega) * k
