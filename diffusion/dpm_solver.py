"""DPM-Solver++(2M) and its SDE variant (Lu et al. 2022), in data prediction, on a grid.

With α = sqrt(ᾱ), σ = sqrt(1 - ᾱ) (the model's own form, no rescaling), λ = log(α/σ),
h = λ' - λ, D0 = x̂_0 and D1 = (x̂_0 - x̂_0^prev) h / h_prev (D1 = 0 on the first step):

- ``sample_dpmpp_2m``:      x' = (σ'/σ) x - α' (e^{-h} - 1) (D0 + D1/2)
- ``sample_dpmpp_2m_sde``:  x' = (σ'/σ) e^{-h} x + α' (1 - e^{-2h}) (D0 + D1/2) + σ' sqrt(1 - e^{-2h}) z
  (fresh noise z from ``rng`` on every step but the last)

The last step goes to σ = 0 and returns x̂_0. These are diffusers' DPMSolverMultistepScheduler with
algorithm_type "dpmsolver++" / "sde-dpmsolver++", solver_order=2, solver_type="midpoint",
lower_order_final=True, final_sigmas_type="zero", on ``dpm_grid`` (timestep spacing) or
``karras_grid`` (``use_karras_sigmas=True``: A1111's "DPM++ 2M Karras" and "DPM++ 2M SDE Karras").
"""
from __future__ import annotations

import numpy as np

from .grid import Grid
from .sampling import call_model, check_inputs, check_rng, draw, finish_step, predict_x0_eps


def _dpmpp_2m(model, x, grid: Grid, *, rng, prediction_type, callback, cancel, hook, clip_x0) -> np.ndarray:
    """DPM-Solver++(2M); with ``rng`` its SDE variant."""
    n, ac = grid.steps, grid.alphas_cumprod
    alpha, sigma = np.sqrt(ac), np.sqrt(1 - ac)
    with np.errstate(divide="ignore"):  # λ = inf at the clean end; the last step never uses it
        lam = np.log(alpha) - np.log(sigma)
    x0_prev = h_prev = None
    for j, t in enumerate(grid.timesteps):
        out = call_model(model, x, t, step=j + 1, steps=n, cancel=cancel)
        x0, _ = predict_x0_eps(out, x, ac[j], prediction_type=prediction_type, clip_x0=clip_x0)
        if j + 1 == n:
            x_next = x0
        else:
            h = lam[j + 1] - lam[j]
            d = x0 if x0_prev is None else x0 + 0.5 * (h / h_prev) * (x0 - x0_prev)
            if rng is None:
                x_next = (sigma[j + 1] / sigma[j]) * x - alpha[j + 1] * np.expm1(-h) * d
            else:
                z = draw(rng, x)
                x_next = ((sigma[j + 1] / sigma[j]) * np.exp(-h) * x - alpha[j + 1] * np.expm1(-2 * h) * d
                          + sigma[j + 1] * np.sqrt(-np.expm1(-2 * h)) * z)
            h_prev = h
        x0_prev = x0
        x = finish_step(x_next, x0, step=j + 1, steps=n, t=t, t_prev=grid.next_timestep(j), callback=callback,
                        hook=hook)
    return x.astype(np.float32)


def sample_dpmpp_2m(model, x_T, grid: Grid, *, prediction_type: str = "epsilon", callback=None, cancel=None,
                    hook=None, clip_x0: bool = False) -> np.ndarray:
    """DPM-Solver++(2M) (module docstring). Deterministic."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    return _dpmpp_2m(model, x, grid, rng=None, prediction_type=prediction_type, callback=callback, cancel=cancel,
                     hook=hook, clip_x0=clip_x0)


def sample_dpmpp_2m_sde(model, x_T, grid: Grid, *, rng=None, prediction_type: str = "epsilon", callback=None,
                        cancel=None, hook=None, clip_x0: bool = False) -> np.ndarray:
    """SDE-DPM-Solver++(2M) (module docstring): fresh noise from ``rng`` every step."""
    x = check_inputs(model, x_T, grid, prediction_type=prediction_type, callback=callback, cancel=cancel, hook=hook)
    check_rng(rng, x.shape[0])
    return _dpmpp_2m(model, x, grid, rng=rng, prediction_type=prediction_type, callback=callback, cancel=cancel,
                     hook=hook, clip_x0=clip_x0)
