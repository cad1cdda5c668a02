"""DDPM's reverse process on a grid: ancestral sampling (Ho et al. 2020) and DDIM (Song et al. 2021).

A step goes from level ᾱ = ᾱ_j to ᾱ' = ᾱ_{j+1} of the grid (``spaced_grid``; ᾱ' = 1 after the last
step). On the grid the process has β_j = 1 - ᾱ/ᾱ' (the schedule respaced to the visited timesteps,
as diffusers' DDPMScheduler does with fewer steps than T) and the posterior
q(x' | x, x_0) = N(c1 x_0 + c2 x, β̃), c1 = β sqrt(ᾱ')/(1 - ᾱ), c2 = sqrt(1 - β)(1 - ᾱ')/(1 - ᾱ),
β̃ = β (1 - ᾱ')/(1 - ᾱ).

- ``sample_ddpm``: x' = c1 x̂_0 + c2 x + σ z, σ² = β ("beta", DDPMScheduler "fixed_large") or β̃
  ("beta_tilde", "fixed_small"), z = 0 on the last step. Deviation: diffusers also adds noise on
  the last step when its timestep is not 0 (trailing spacing); we never do.
- ``sample_ddim``: x' = sqrt(ᾱ') x̂_0 + sqrt(1 - ᾱ' - σ²) ε̂ + σ z, σ = η sqrt(β̃) (η = 0:
  deterministic; η = 1: DDPM's β̃). Deviation: the previous level is the grid's next point;
  diffusers uses t - T//steps, which differs for linspace spacing and for trailing spacing when
  steps does not divide T.
"""
from __future__ import annotations

import numpy as np

from .checks import is_number
from .grid import Grid
from .sampling import call_model, check_inputs, check_rng, draw, finish_step, predict_x0_eps

VARIANCES = ("beta", "beta_tilde")


def ddpm_step(x, x0, *, alpha_bar: float, alpha_bar_prev: float, variance: str, noise) -> np.ndarray:
    """x' = c1 x̂_0 + c2 x + σ z (module docstring); ``noise`` None means z = 0."""
    beta = 1.0 - alpha_bar / alpha_bar_prev
    c1 = beta * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar)
    c2 = (1.0 - alpha_bar_prev) * np.sqrt(1.0 - beta) / (1.0 - alpha_bar)
    mean = c1 * x0 + c2 * x
    if noise is None:
        return mean
    sigma2 = beta if variance == "beta" else max(beta * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar), 1e-20)
    return mean + np.sqrt(sigma2) * noise


def sample_ddpm(model, x_T, grid: Grid, *, rng=None, prediction_type: str = "epsilon", variance: str = "beta",
                callback=None, cancel=None, hook=None, clip_x0: bool = False) -> np.ndarray:
    """Ancestral sampling, DDPM Algorithm 2 (σ² = β or β̃), over the grid's steps."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    check_rng(rng, x.shape[0])
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCES)}")
    n, ac = grid.steps, grid.alphas_cumprod
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        x0, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        noise = draw(rng, x) if j + 1 < n else None
        x = ddpm_step(x, x0, alpha_bar=ac[j], alpha_bar_prev=ac[j + 1], variance=variance, noise=noise)
        x = finish_step(x, x0, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback, hook=hook)
    return x.astype(np.float32)


def sample_ddim(model, x_T, grid: Grid, *, eta: float = 0.0, rng=None, prediction_type: str = "epsilon",
                callback=None, cancel=None, hook=None, clip_x0: bool = False) -> np.ndarray:
    """DDIM with η (module docstring); ``rng`` is needed only when η > 0."""
    if not is_number(eta) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number between 0 and 1, got {eta!r}")
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    if eta > 0:
        check_rng(rng, x.shape[0])
    n, ac = grid.steps, grid.alphas_cumprod
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        x0, eps = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        a_t, a_prev = ac[j], ac[j + 1]
        std = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = np.sqrt(a_prev) * x0 + np.sqrt(max(1 - a_prev - std**2, 0.0)) * eps
        if std > 0:
            x = x + std * draw(rng, x)
        x = finish_step(x, x0, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback, hook=hook)
    return x.astype(np.float32)
