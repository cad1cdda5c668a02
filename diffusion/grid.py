"""Sampling grids: the noise levels a sampler visits, computed once (k-diffusion's ``sigmas``).

A ``Grid`` of n steps holds
- ``timesteps``: int64 [n], the timestep the network is told at each step;
- ``alphas_cumprod``: float64 [n + 1], ᾱ at the start of each step and, last, at the end; the end is
  1.0 (σ = 0, the clean sample) for every grid built here.
The state x a sampler carries is always x_t in the model's own (variance-preserving) form, at level
``alphas_cumprod[j]`` before step j; samplers that work in k-diffusion's variance-exploding form
x/sqrt(ᾱ) convert inside. σ_j = sqrt((1 - ᾱ_j) / ᾱ_j) is ``Grid.sigmas``.

One grid function per family, each equal to the diffusers scheduler it names (``timesteps`` /
``dpm_solver_timesteps`` in spacing.py hold the spacing rules):
- ``spaced_grid``: ``timesteps(T, steps, spacing, steps_offset)`` (DDPMScheduler, DDIMScheduler).
- ``euler_grid``: the same points (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler), and their
  start: diffusers scales pure noise by ``init_noise_sigma``, sqrt(σ_max² + 1) for leading spacing
  (x_T = z) but σ_max for trailing and linspace (x_T = z σ_max / sqrt(σ_max² + 1) = sqrt(1 - ᾱ_0) z,
  as k-diffusion starts). ``Grid.noise_scale`` carries that factor. Deviation: for linspace spacing
  diffusers' Euler visits fractional timesteps (σ interpolated between two); we round them, so Euler
  equals diffusers for linspace only where (T - 1) / (steps - 1) is a whole number.
- ``dpm_grid``: ``dpm_solver_timesteps`` (DPMSolverMultistepScheduler, UniPCMultistepScheduler).
- ``karras_grid``: Karras et al. 2022 (ρ = 7) between σ(0) and σ(T - 1) of the trained schedule, as
  those two schedulers with ``use_karras_sigmas=True``: σ_i = (σ_max^(1/ρ) + i/(n-1) (σ_min^(1/ρ) -
  σ_max^(1/ρ)))^ρ; the network is told round(t(σ_i)), t(σ) interpolating log σ linearly between
  integer timesteps; the solver uses σ_i itself. Spacing and steps_offset do not apply. Near σ_min
  many steps can round to the same timestep (diffusers does the same). Deviation: for the cosine
  schedule diffusers does not round (fractional timesteps); we always round.
- ``lcm_grid``: LCMScheduler's rule: of the ``original_steps`` = 50 timesteps k-1, 2k-1, ..., T-1
  (k = T // 50; the distillation grid) take ``steps`` evenly by index, from T-1 down. img2img
  (strength < 1) keeps the first int(50 strength) distillation timesteps, as its img2img pipeline
  does. Schedules with T < 50 use original_steps = T (diffusers refuses them; every LCM has T=1000).

img2img (``truncate``): diffusers' img2img pipelines run the last min(int(n strength), n) steps of the
full grid, starting from the init image noised to the first kept level: ``Grid.start`` with ``x0``.
We run at least one step where diffusers would run none (it raises).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .checks import is_number
from .schedule import Schedule
from .spacing import dpm_solver_timesteps, timesteps

KARRAS_RHO = 7.0
LCM_ORIGINAL_STEPS = 50


@dataclass(frozen=True, eq=False)
class Grid:
    """The n steps a sampler takes (see the module docstring); arrays are read-only copies."""

    timesteps: np.ndarray
    alphas_cumprod: np.ndarray
    num_train_timesteps: int
    noise_scale: float = 1.0

    def __post_init__(self):
        ts = np.array(self.timesteps, dtype=np.int64)
        ac = np.array(self.alphas_cumprod, dtype=np.float64)
        T = self.num_train_timesteps
        if ts.ndim != 1 or len(ts) < 1 or ac.shape != (len(ts) + 1,):
            raise ValueError(f"a grid needs timesteps [n >= 1] and alphas_cumprod [n + 1], got shapes "
                             f"{ts.shape} and {ac.shape}")
        if ts.min() < 0 or ts.max() >= T:
            raise ValueError(f"grid timesteps must lie in 0..{T - 1}, got {ts.min()}..{ts.max()}")
        if not (np.isfinite(ac).all() and (ac[:-1] > 0).all() and (ac[:-1] < 1).all() and ac[-1] == 1.0
                and (np.diff(ac) > 0).all()):
            raise ValueError("grid alphas_cumprod must rise strictly inside (0, 1) and end at 1.0")
        ts.setflags(write=False)
        ac.setflags(write=False)
        object.__setattr__(self, "timesteps", ts)
        object.__setattr__(self, "alphas_cumprod", ac)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def sigmas(self) -> np.ndarray:
        """σ_j = sqrt((1 - ᾱ_j) / ᾱ_j), float64 [n + 1] ending in 0."""
        ac = self.alphas_cumprod
        return np.sqrt((1.0 - ac) / ac)

    def next_timestep(self, j: int) -> int:
        """The timestep after step j (-1 after the last): what a sampler's hook is told."""
        return int(self.timesteps[j + 1]) if j + 1 < self.steps else -1

    def truncate(self, strength: float) -> Grid:
        """img2img: the last min(int(n strength), n) steps (at least one); see the module docstring."""
        check_strength(strength)
        n = self.steps
        start = n - max(1, min(int(n * strength), n))
        return replace(self, timesteps=self.timesteps[start:], alphas_cumprod=self.alphas_cumprod[start:])

    def start(self, noise, x0=None) -> np.ndarray:
        """The sampler's first state: ``noise_scale * noise`` (text-to-image), or with ``x0`` (img2img)
        x0 noised to the first level, sqrt(ᾱ_0) x0 + sqrt(1 - ᾱ_0) noise. float64."""
        noise = np.asarray(noise, dtype=np.float64)
        if x0 is None:
            return self.noise_scale * noise
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape != noise.shape:
            raise ValueError(f"x0 shape {x0.shape} differs from the noise's {noise.shape}")
        a = self.alphas_cumprod[0]
        return np.sqrt(a) * x0 + np.sqrt(1.0 - a) * noise


def check_strength(strength) -> float:
    if not is_number(strength) or not 0 < strength <= 1:
        raise ValueError(f"strength must be a number in (0, 1], got {strength!r}")
    return float(strength)


def _check_schedule(schedule) -> Schedule:
    if not isinstance(schedule, Schedule) or schedule.respaced_from is not None:
        raise ValueError("schedule must be a Schedule from make_schedule / schedule_from_dict")
    return schedule


def _grid(schedule: Schedule, ts: np.ndarray, *, strength: float, noise_scale: float = 1.0) -> Grid:
    ac = np.append(schedule.alphas_cumprod[ts], 1.0)
    grid = Grid(timesteps=ts, alphas_cumprod=ac, num_train_timesteps=schedule.num_train_timesteps,
                noise_scale=noise_scale)
    return grid if check_strength(strength) == 1.0 else grid.truncate(strength)


def spaced_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
                strength: float = 1.0) -> Grid:
    """DDPM/DDIM: the ``timesteps`` of spacing.py, then the clean end."""
    T = _check_schedule(schedule).num_train_timesteps
    return _grid(schedule, timesteps(T, steps, spacing, steps_offset), strength=strength)


def euler_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
               strength: float = 1.0) -> Grid:
    """Euler / Euler ancestral: the spaced points with diffusers' start scale (module docstring)."""
    T = _check_schedule(schedule).num_train_timesteps
    ts = timesteps(T, steps, spacing, steps_offset)
    scale = 1.0 if spacing == "leading" else float(np.sqrt(1.0 - schedule.alphas_cumprod[ts[0]]))
    return _grid(schedule, ts, strength=strength, noise_scale=scale)


def dpm_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
             strength: float = 1.0) -> Grid:
    """DPM-Solver++ / UniPC: ``dpm_solver_timesteps`` of spacing.py, then the clean end."""
    T = _check_schedule(schedule).num_train_timesteps
    return _grid(schedule, dpm_solver_timesteps(T, steps, spacing, steps_offset), strength=strength)


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = KARRAS_RHO) -> np.ndarray:
    """(σ_max^(1/ρ) + ramp (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ for ramp = linspace(0, 1, steps)."""
    ramp = np.linspace(0, 1, steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


def sigma_to_timestep(sigma, schedule: Schedule) -> np.ndarray:
    """t(σ): log σ interpolated linearly between integer timesteps (clamped to 0..T-1), unrounded."""
    ac = schedule.alphas_cumprod
    log_sigmas = np.log(np.sqrt((1.0 - ac) / ac))
    return np.interp(np.log(np.maximum(sigma, 1e-10)), log_sigmas, np.arange(len(ac), dtype=np.float64))


def karras_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
                strength: float = 1.0) -> Grid:
    """Karras σ between σ(0) and σ(T-1); ``spacing`` and ``steps_offset`` do not apply (they are
    checked and accepted so that every grid function takes the same arguments)."""
    T = _check_schedule(schedule).num_train_timesteps
    timesteps(T, steps, spacing, steps_offset)
    ac = schedule.alphas_cumprod
    sigma_all = np.sqrt((1.0 - ac) / ac)
    sigmas = karras_sigmas(float(sigma_all[0]), float(sigma_all[-1]), steps)
    ts = np.round(sigma_to_timestep(sigmas, schedule)).astype(np.int64)
    grid = Grid(timesteps=ts, alphas_cumprod=np.append(1.0 / (1.0 + sigmas**2), 1.0), num_train_timesteps=T)
    return grid if check_strength(strength) == 1.0 else grid.truncate(strength)


def lcm_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
             strength: float = 1.0) -> Grid:
    """LCMScheduler's timesteps (module docstring); ``spacing`` and ``steps_offset`` do not apply."""
    T = _check_schedule(schedule).num_train_timesteps
    timesteps(T, steps, spacing, steps_offset)
    strength = check_strength(strength)
    original = min(LCM_ORIGINAL_STEPS, T)
    k = T // original
    origin = np.arange(1, int(original * strength) + 1, dtype=np.int64) * k - 1
    if steps > len(origin):
        raise ValueError(f"an LCM takes at most {len(origin)} steps here ({original} distillation steps"
                         + (f" x strength {strength:g}" if strength < 1 else "") + f"), got {steps}")
    index = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
    return _grid(schedule, origin[::-1][index], strength=1.0)
