"""Multistep sampling of a latent consistency model (Luo et al. 2023; diffusers' LCMScheduler).

Only for models distilled as LCMs (their U-Net usually also takes the guidance embedding
``timestep_cond``, which the runtime provides; guidance is in the model, not in two calls). On
``lcm_grid``, each step maps x_t to the consistency function's output

    f(x_t, t) = c_skip(t) x_t + c_out(t) x̂_0,   c_skip = σ_d² / ((10 t)² + σ_d²),
    c_out = 10 t / sqrt((10 t)² + σ_d²),  σ_d = 0.5

and, except after the last step, noises it afresh to the next level: x' = sqrt(ᾱ') f + sqrt(1 - ᾱ') z
(z from ``rng``). The last step returns f. The callback's "x0" is f.
"""
from __future__ import annotations

import numpy as np

from .grid import Grid
from .sampling import call_model, check_inputs, check_rng, draw, finish_step, predict_x0_eps

SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0


def boundary_scalings(t: int) -> tuple[float, float]:
    """(c_skip, c_out) of the consistency parametrisation at integer timestep t."""
    scaled = t * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (scaled**2 + SIGMA_DATA**2)
    c_out = scaled / (scaled**2 + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def sample_lcm(model, x_T, grid: Grid, *, rng=None, prediction_type: str = "epsilon", callback=None, cancel=None,
               hook=None, clip_x0: bool = False) -> np.ndarray:
    """LCM multistep sampling (module docstring): fresh noise from ``rng`` between steps."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    check_rng(rng, x.shape[0])
    n, ac = grid.steps, grid.alphas_cumprod
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        x0, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        c_skip, c_out = boundary_scalings(int(t))
        f = c_out * x0 + c_skip * x
        x = f if j + 1 == n else np.sqrt(ac[j + 1]) * f + np.sqrt(1 - ac[j + 1]) * draw(rng, x)
        x = finish_step(x, f, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback, hook=hook)
    return x.astype(np.float32)
