"""Euler and Euler ancestral (Karras et al. 2022, Alg. 1; k-diffusion's ``sample_euler(_ancestral)``).

They work on s = x / sqrt(ᾱ) = x sqrt(1 + σ²), the variance-exploding form s = x_0 + σ ε, over the
σ of ``euler_grid`` (diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler); the
network still sees x (diffusers' ``scale_model_input``) and the state handed to hooks and callbacks
is x. With d = (s - x̂_0) / σ:

- ``sample_euler``: s' = s + d (σ' - σ). (For a constant ε̂ this is DDIM with η = 0, the exact ODE
  step.)
- ``sample_euler_ancestral``: σ_up = sqrt(σ'² (σ² - σ'²) / σ²), σ_down = sqrt(σ'² - σ_up²),
  s' = s + d (σ_down - σ) + σ_up z (fresh noise z from ``rng`` on every step but the last, where
  σ_up = 0).

The last step goes to σ = 0 and returns x̂_0. Start text-to-image from ``grid.start(noise)``, which
applies diffusers' ``init_noise_sigma`` (grid.py).
"""
from __future__ import annotations

import numpy as np

from .grid import Grid
from .sampling import call_model, check_inputs, check_rng, draw, finish_step, predict_x0_eps


def _euler(model, x, grid: Grid, *, rng, prediction_type, callback, cancel, hook, clip_x0) -> np.ndarray:
    """Both samplers: ancestral when ``rng`` is given."""
    n, ac, sigmas = grid.steps, grid.alphas_cumprod, grid.sigmas
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        x0, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        sigma, sigma_next = sigmas[j], sigmas[j + 1]
        s = x / np.sqrt(ac[j])
        d = (s - x0) / sigma
        if rng is None:
            s = s + d * (sigma_next - sigma)
        else:
            sigma_up = np.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
            sigma_down = np.sqrt(sigma_next**2 - sigma_up**2)
            s = s + d * (sigma_down - sigma)
            if sigma_up > 0:
                s = s + sigma_up * draw(rng, x)
        x = s * np.sqrt(ac[j + 1])
        x = finish_step(x, x0, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback, hook=hook)
    return x.astype(np.float32)


def sample_euler(model, x_T, grid: Grid, *, prediction_type: str = "epsilon", callback=None, cancel=None,
                 hook=None, clip_x0: bool = False) -> np.ndarray:
    """Euler's method on the probability-flow ODE in σ (module docstring). Deterministic."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    return _euler(model, x, grid, rng=None, prediction_type=prediction_type, callback=callback, cancel=cancel,
                  hook=hook, clip_x0=clip_x0)


def sample_euler_ancestral(model, x_T, grid: Grid, *, rng=None, prediction_type: str = "epsilon", callback=None,
                           cancel=None, hook=None, clip_x0: bool = False) -> np.ndarray:
    """Euler ancestral, A1111's "Euler a" (module docstring): fresh noise from ``rng`` every step."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    check_rng(rng, x.shape[0])
    return _euler(model, x, grid, rng=rng, prediction_type=prediction_type, callback=callback, cancel=cancel,
                  hook=hook, clip_x0=clip_x0)
