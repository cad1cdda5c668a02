"""Which of the T training timesteps a sampler visits, as diffusers computes them
(Table 2 of Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed").

- ``leading``:  (arange(steps) * (T // steps))[::-1] + steps_offset. ``steps_offset`` defaults to 0,
  the default of diffusers' DDPM/DDIM/DPMSolver configs (Stable Diffusion's config sets 1).
- ``trailing``: round(arange(T, 0, -T/steps)) - 1 (starts at T-1). Float rounding in ``arange`` makes
  diffusers' list one element too long for some (T, steps), e.g. (15, 13), ending in -1; we keep the
  first ``steps`` values (identical to diffusers wherever its list has the right length).
- ``linspace``: round(linspace(0, T-1, steps))[::-1].

``dpm_solver_timesteps`` is the variant diffusers' DPMSolverMultistepScheduler uses: for leading and
linspace it builds the grid for steps+1 and drops the final 0 (its last step goes to σ = 0, the clean
sample, instead). Where steps + 1 > T that grid does not exist (diffusers then repeats timesteps);
we return all timesteps T-1..0 instead.
"""
from __future__ import annotations

import numpy as np

from .checks import is_int

SPACINGS = ("leading", "trailing", "linspace")


def _check(T, steps, spacing):
    for name, value in (("num_train_timesteps", T), ("steps", steps)):
        if not is_int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if T < 1:
        raise ValueError(f"num_train_timesteps must be at least 1, got {T}")
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and num_train_timesteps ({T}), got {steps}")
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; expected one of {', '.join(SPACINGS)}")


def timesteps(T: int, steps: int, spacing: str = "leading", steps_offset: int = 0) -> np.ndarray:
    """The ``steps`` timesteps (int64, strictly descending, in 0..T-1) a DDPM/DDIM sampler visits."""
    _check(T, steps, spacing)
    if spacing == "linspace":
        ts = np.linspace(0, T - 1, steps).round()[::-1]
    elif spacing == "leading":
        ts = (np.arange(0, steps) * (T // steps)).round()[::-1] + steps_offset
    else:
        ts = np.round(np.arange(T, 0, -T / steps)[:steps]) - 1
    ts = ts.astype(np.int64).copy()
    if ts[0] > T - 1 or ts[-1] < 0:
        raise ValueError(f"steps_offset={steps_offset} puts timesteps outside 0..{T - 1}")
    return ts


def dpm_solver_timesteps(T: int, steps: int, spacing: str = "linspace", steps_offset: int = 0) -> np.ndarray:
    """The timesteps diffusers' DPMSolverMultistepScheduler visits (see the module docstring)."""
    _check(T, steps, spacing)
    if spacing == "trailing":
        return timesteps(T, steps, "trailing")
    if steps + 1 > T:
        return np.arange(T - 1, -1, -1, dtype=np.int64)
    ts = timesteps(T, steps + 1, spacing, 0)[:-1] + steps_offset
    if ts[0] > T - 1 or ts[-1] < 0:
        raise ValueError(f"steps_offset={steps_offset} puts timesteps outside 0..{T - 1}")
    return ts
