"""Sampling grids: the noise levels a sampler visits, computed once (k-diffusion's ``sigmas``).

A ``Grid`` of n steps holds
- ``timesteps``: int64 [n], the whole timestep of each step (what hooks, callbacks and recipes see);
- ``model_timesteps``: float64 [n] or None: what the network is told where that is not a whole number
  (diffusers' Euler on linspace spacing evaluates the network between training timesteps); None
  means ``timesteps``. ``Grid.network_timestep(j)`` is the one a sampler passes to the network: an
  int, or a float where the grid is fractional (the runtime then feeds a float-timestep U-Net the
  fraction and an int64 one the nearest whole timestep);
- ``alphas_cumprod``: float64 [n + 1], ᾱ at the start of each step and, last, at the end. The end
  is 1.0 (σ = 0, the clean sample) for every grid but DDIM's with ``set_alpha_to_one=False`` (the
  Stable Diffusion configs), whose last step ends at ᾱ of timestep 0 (diffusers' ``final_alpha_cumprod``).
The state x a sampler carries is always x_t in the model's own (variance-preserving) form, at level
``alphas_cumprod[j]`` before step j; samplers that work in k-diffusion's variance-exploding form
x/sqrt(ᾱ) convert inside. σ_j = sqrt((1 - ᾱ_j) / ᾱ_j) is ``Grid.sigmas``.

One grid function per family, each equal to the diffusers scheduler it names (``timesteps`` /
``dpm_solver_timesteps`` in spacing.py hold the spacing rules). All take
``(schedule, *, steps, spacing, steps_offset, strength, set_alpha_to_one)``; a setting a family
has no use for is checked and ignored:
- ``spaced_grid``: ``timesteps(T, steps, spacing, steps_offset)`` (DDPMScheduler: the end is always 1).
- ``ddim_grid``: the same points (DDIMScheduler); the end is 1, or ᾱ_0 with ``set_alpha_to_one=False``.
  Deviation: diffusers' DDIM steps from t to t - T // steps, which is the grid's next point for
  leading spacing (every Stable Diffusion config) and for trailing spacing when steps divides T;
  elsewhere (linspace, or trailing with 1000 % steps != 0) we step to the grid's next point.
- ``euler_grid``: the same points (EulerDiscreteScheduler, EulerAncestralDiscreteScheduler), and their
  start: diffusers scales pure noise by ``init_noise_sigma``, sqrt(σ_max² + 1) for leading spacing
  (x_T = z) but σ_max for trailing and linspace (x_T = z σ_max / sqrt(σ_max² + 1) = sqrt(1 - ᾱ_0) z,
  as k-diffusion starts). ``Grid.noise_scale`` carries that factor. For linspace spacing the points
  are linspace(0, T - 1, steps) unrounded, σ interpolated linearly between training timesteps (as
  diffusers does); the network is told the fractional timestep (``model_timesteps``).
- ``dpm_grid``: ``dpm_solver_timesteps`` (DPMSolverMultistepScheduler, UniPCMultistepScheduler).
- ``karras_grid``: Karras et al. 2022 (ρ = 7) between σ(0) and σ(T - 1) of the trained schedule, as
  DPMSolverMultistepScheduler with ``use_karras_sigmas=True``: σ_i = (σ_max^(1/ρ) + i/(n-1)
  (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ; the network is told round(t(σ_i)), t(σ) interpolating log σ
  linearly between integer timesteps; the solver uses σ_i itself. Spacing and steps_offset do not
  apply. Near σ_min many steps can share a timestep (diffusers does the same). Deviation: for the
  cosine schedule diffusers skips the rounding and then stores the timesteps as int64, which
  truncates (and its float32 σ puts t(σ_max) just below T - 1, so even the first becomes T - 2): the
  network is told a timestep at most one below ours; σ, and so the solver, agree.
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
    model_timesteps: np.ndarray | None = None

    def __post_init__(self):
        ts = np.array(self.timesteps, dtype=np.int64)
        ac = np.array(self.alphas_cumprod, dtype=np.float64)
        T = self.num_train_timesteps
        if ts.ndim != 1 or len(ts) < 1 or ac.shape != (len(ts) + 1,):
            raise ValueError(f"a grid needs timesteps [n >= 1] and alphas_cumprod [n + 1], got shapes "
                             f"{ts.shape} and {ac.shape}")
        if ts.min() < 0 or ts.max() >= T:
            raise ValueError(f"grid timesteps must lie in 0..{T - 1}, got {ts.min()}..{ts.max()}")
        inner = ac[:-1]
        if not (np.isfinite(ac).all() and (inner > 0).all() and (inner < 1).all() and (np.diff(inner) > 0).all()
                and ac[-2] <= ac[-1] <= 1.0):
            raise ValueError("grid alphas_cumprod must rise strictly inside (0, 1) and end at most at 1.0")
        ts.setflags(write=False)
        ac.setflags(write=False)
        object.__setattr__(self, "timesteps", ts)
        object.__setattr__(self, "alphas_cumprod", ac)
        if self.model_timesteps is not None:
            mt = np.array(self.model_timesteps, dtype=np.float64)
            if mt.shape != ts.shape or not np.isfinite(mt).all() or mt.min() < 0 or mt.max() > T - 1 \
                    or (np.abs(mt - ts) > 0.5).any():
                raise ValueError("grid model_timesteps must lie in 0..T-1, within 0.5 of timesteps")
            mt.setflags(write=False)
            object.__setattr__(self, "model_timesteps", mt)

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def sigmas(self) -> np.ndarray:
        """σ_j = sqrt((1 - ᾱ_j) / ᾱ_j), float64 [n + 1] (ending in 0 where the grid ends at ᾱ = 1)."""
        ac = self.alphas_cumprod
        return np.sqrt((1.0 - ac) / ac)

    def network_timestep(self, j: int) -> int | float:
        """The timestep the network is told at step j: an int, or a float on a fractional grid."""
        if self.model_timesteps is not None:
            return float(self.model_timesteps[j])
        return int(self.timesteps[j])

    def next_timestep(self, j: int) -> int:
        """The timestep after step j (-1 after the last): what a sampler's hook is told."""
        return int(self.timesteps[j + 1]) if j + 1 < self.steps else -1

    def truncate(self, strength: float) -> Grid:
        """img2img: the last min(int(n strength), n) steps (at least one); see the module docstring."""
        check_strength(strength)
        n = self.steps
        start = n - max(1, min(int(n * strength), n))
        model_ts = None if self.model_timesteps is None else self.model_timesteps[start:]
        return replace(self, timesteps=self.timesteps[start:], alphas_cumprod=self.alphas_cumprod[start:],
                       model_timesteps=model_ts)

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


def _grid(schedule: Schedule, ts: np.ndarray, *, strength: float, noise_scale: float = 1.0, end: float = 1.0,
          alphas_cumprod: np.ndarray | None = None, model_timesteps: np.ndarray | None = None) -> Grid:
    """The grid through ``ts`` at ᾱ of those timesteps (or ``alphas_cumprod`` where a grid computes
    its own), ending at ``end``; img2img's part of it for strength < 1."""
    ac = np.append(schedule.alphas_cumprod[ts] if alphas_cumprod is None else alphas_cumprod, end)
    grid = Grid(timesteps=ts, alphas_cumprod=ac, num_train_timesteps=schedule.num_train_timesteps,
                noise_scale=noise_scale, model_timesteps=model_timesteps)
    return grid if check_strength(strength) == 1.0 else grid.truncate(strength)


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return bool(value)


def spaced_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
                strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """DDPM: the ``timesteps`` of spacing.py, then the clean end (``set_alpha_to_one`` does not apply:
    DDPMScheduler always ends at 1)."""
    T = _check_schedule(schedule).num_train_timesteps
    _check_flag(set_alpha_to_one, "set_alpha_to_one")
    return _grid(schedule, timesteps(T, steps, spacing, steps_offset), strength=strength)


def ddim_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
              strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """DDIM: the ``timesteps`` of spacing.py, ending at ᾱ = 1, or at ᾱ_0 (the level of timestep 0)
    with ``set_alpha_to_one=False``, as DDIMScheduler's ``final_alpha_cumprod``."""
    T = _check_schedule(schedule).num_train_timesteps
    end = 1.0 if _check_flag(set_alpha_to_one, "set_alpha_to_one") else float(schedule.alphas_cumprod[0])
    return _grid(schedule, timesteps(T, steps, spacing, steps_offset), strength=strength, end=end)


def euler_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
               strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """Euler / Euler ancestral: the spaced points with diffusers' start scale; for linspace spacing the
    unrounded points with σ interpolated between training timesteps (module docstring)."""
    T = _check_schedule(schedule).num_train_timesteps
    _check_flag(set_alpha_to_one, "set_alpha_to_one")
    ts = timesteps(T, steps, spacing, steps_offset)
    exact = np.linspace(0, T - 1, steps)[::-1] if spacing == "linspace" else ts.astype(np.float64)
    if np.array_equal(exact, ts):
        ac_start, model_ts = schedule.alphas_cumprod[ts], None
    else:  # fractional timesteps: σ linear between training timesteps (diffusers' interpolation_type "linear")
        sigma_all = np.sqrt((1.0 - schedule.alphas_cumprod) / schedule.alphas_cumprod)
        sigma = np.interp(exact, np.arange(T, dtype=np.float64), sigma_all)
        ac_start, model_ts = 1.0 / (1.0 + sigma**2), exact
    scale = 1.0 if spacing == "leading" else float(np.sqrt(1.0 - ac_start[0]))
    return _grid(schedule, ts, strength=strength, noise_scale=scale, alphas_cumprod=ac_start, model_timesteps=model_ts)


def dpm_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
             strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """DPM-Solver++ / UniPC: ``dpm_solver_timesteps`` of spacing.py, then the clean end."""
    T = _check_schedule(schedule).num_train_timesteps
    _check_flag(set_alpha_to_one, "set_alpha_to_one")
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
                strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """Karras σ between σ(0) and σ(T-1); ``spacing``, ``steps_offset`` and ``set_alpha_to_one`` do
    not apply (they are checked and accepted so that every grid function takes the same arguments)."""
    T = _check_schedule(schedule).num_train_timesteps
    timesteps(T, steps, spacing, steps_offset)
    _check_flag(set_alpha_to_one, "set_alpha_to_one")
    ac = schedule.alphas_cumprod
    sigma_all = np.sqrt((1.0 - ac) / ac)
    sigmas = karras_sigmas(float(sigma_all[0]), float(sigma_all[-1]), steps)
    ts = np.round(sigma_to_timestep(sigmas, schedule)).astype(np.int64)
    grid = Grid(timesteps=ts, alphas_cumprod=np.append(1.0 / (1.0 + sigmas**2), 1.0), num_train_timesteps=T)
    return grid if check_strength(strength) == 1.0 else grid.truncate(strength)


def lcm_grid(schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
             strength: float = 1.0, set_alpha_to_one: bool = True) -> Grid:
    """LCMScheduler's timesteps (module docstring); ``spacing``, ``steps_offset`` and
    ``set_alpha_to_one`` do not apply (its last step returns the consistency function's output)."""
    T = _check_schedule(schedule).num_train_timesteps
    timesteps(T, steps, spacing, steps_offset)
    _check_flag(set_alpha_to_one, "set_alpha_to_one")
    strength = check_strength(strength)
    original = min(LCM_ORIGINAL_STEPS, T)
    k = T // original
    origin = np.arange(1, int(original * strength) + 1, dtype=np.int64) * k - 1
    if steps > len(origin):
        raise ValueError(f"an LCM takes at most {len(origin)} steps here ({original} distillation steps"
                         + (f" x strength {strength:g}" if strength < 1 else "") + f"), got {steps}")
    index = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
    return _grid(schedule, origin[::-1][index], strength=1.0)
