"""UniPC (Zhao et al. 2023): a multistep predictor plus a corrector that reuses the next network call.

diffusers' UniPCMultistepScheduler as SD pipelines use it: solver_order=2, predict_x0=True,
solver_type="bh2" (B(h) = e^{-h} - 1), lower_order_final=True,
final_sigmas_type="zero", no disabled corrector, on ``dpm_grid`` (or ``karras_grid``).

With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ), λ = log(α/σ) and m_j = x̂_0 at step j, a step from level s to t
(h = λ_t - λ_s, φ = expm1(-h)) starts from x_t' = (σ_t/σ_s) x_s - α_t φ m_s:
- predictor (UniP) of order 1: x_t = x_t'; of order 2 (every step but the first and the last):
  x_t = x_t' - α_t φ (1/2) D1, D1 = (m_prev - m_s) / r, r = (λ_prev - λ_s) / h;
- corrector (UniC), at the start of every step j > 0 once m_j is known: the state x_j is recomputed
  from the previous state x_{j-1} (itself corrected) as x_j = x_t' - α_t φ (ρ_0 D1 + ρ_1 (m_j - m_{j-1}))
  with s = j-1, t = j; for order 1 (after the first step) ρ_1 = 1/2 and no D1; for order 2 (ρ_0, ρ_1)
  solve [[1, 1], [r, 1]] ρ = (b_1, b_2), b_1 = (φ/(-h) - 1)/φ, b_2 = 2 ((φ/(-h) - 1)/(-h) - 1/2)/φ.
The last step goes to σ = 0 and returns x̂_0.

A hook's change to the state reaches UniPC through the next network call only: the corrector
recomputes the state from the previous (corrected) one, as in diffusers, where a pipeline's
per-step latent blend is overwritten the same way. The final hook call (t_prev = -1) still
applies to the returned image.
"""
from __future__ import annotations

import numpy as np

from .grid import Grid
from .sampling import call_model, check_inputs, finish_step, predict_x0_eps


def _update(x_s, m_s, *, alpha, sigma, lam, s: int, t: int, correction):
    """(σ_t/σ_s) x_s - α_t φ (m_s + correction), φ = expm1(-(λ_t - λ_s)); correction is already scaled."""
    phi = np.expm1(-(lam[t] - lam[s]))
    return (sigma[t] / sigma[s]) * x_s - alpha[t] * phi * (m_s + correction)


def _corrector_rhos(h: float, r: float) -> np.ndarray:
    """(ρ_0, ρ_1) of UniC order 2 with B(h) = expm1(-h) (module docstring)."""
    hh = -h
    phi = np.expm1(hh)
    k1 = phi / hh - 1
    k2 = k1 / hh - 0.5
    b = np.array([k1 / phi, 2 * k2 / phi])
    return np.linalg.solve(np.array([[1.0, 1.0], [r, 1.0]]), b)


def sample_unipc(model, x_T, grid: Grid, *, prediction_type: str = "epsilon", callback=None, cancel=None,
                 hook=None, clip_x0: bool = False) -> np.ndarray:
    """UniPC-bh2 of order 2 (module docstring). Deterministic."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    n, ac = grid.steps, grid.alphas_cumprod
    alpha, sigma = np.sqrt(ac), np.sqrt(1 - ac)
    with np.errstate(divide="ignore"):  # λ = inf at the clean end; the last step never uses it
        lam = np.log(alpha) - np.log(sigma)
    coef = {"alpha": alpha, "sigma": sigma, "lam": lam}
    ms: list[np.ndarray] = []  # x̂_0 of the steps so far (the last two are used)
    x_last = None  # the previous step's (corrected) state
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        m, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        if j >= 2:  # corrector of order 2
            h = lam[j] - lam[j - 1]
            r = (lam[j - 2] - lam[j - 1]) / h
            rho = _corrector_rhos(h, r)
            d1 = (ms[-2] - ms[-1]) / r
            x = _update(x_last, ms[-1], s=j - 1, t=j, correction=rho[0] * d1 + rho[1] * (m - ms[-1]), **coef)
        elif j == 1:  # corrector of order 1
            x = _update(x_last, ms[-1], s=0, t=1, correction=0.5 * (m - ms[-1]), **coef)
        ms = [*ms[-1:], m]
        x_last = x
        if j + 1 == n:
            x_next = m
        elif j == 0:  # predictor of order 1 (warm-up)
            x_next = _update(x, m, s=0, t=1, correction=0.0, **coef)
        else:  # predictor of order 2: ρ = 1/2
            h = lam[j + 1] - lam[j]
            d1 = (ms[-2] - m) / ((lam[j - 1] - lam[j]) / h)
            x_next = _update(x, m, s=j, t=j + 1, correction=0.5 * d1, **coef)
        x = finish_step(x_next, m, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback,
                        hook=hook)
    return x.astype(np.float32)
