"""Samplers: plain functions over a denoiser callable (DESIGN.md §1, §6).

A *denoiser* is any callable ``model(x [B,...] float32, t [B] int64) -> output`` with output in the
model's ``prediction_type`` ("epsilon" | "v_prediction" | "sample") and the shape of x.

Every sampler:
- checks ``cancel()`` before each network call and raises ``Cancelled`` when it returns true;
- raises ``NonFiniteError`` (naming the step and timestep) when the network returns NaN or inf;
- after each step runs ``hook(x_prev, t_prev) -> x_prev`` (t_prev = the next timestep, -1 after the
  last step; inpainting blends here), then ``callback(info)`` with
  ``{"step": 1..steps (steps done), "steps", "t": the timestep just evaluated, "x": x_prev, "x0": x̂_0}``
  (x and x0 are float32 copies);
- raises ``ValueError`` saying what was wrong for bad arguments;
- computes in float64 and hands the network float32; returns float32 of x_T's shape.
- ``clip_x0=False`` by default; True clamps x̂_0 to [-1, 1] (diffusers' ``clip_sample``). DDIM keeps
  the network's ε̂ then, as diffusers does with ``use_clipped_model_output=False``.

Samplers and their diffusers counterparts (tests/diffusion/test_parity.py checks the trajectories):
- ``sample_ddpm``: Algorithm 2, x_{t-1} = μ̃(x̂_0, x_t) + σ_t z, σ_t² = β_t ("beta", DDPMScheduler
  "fixed_large") or β̃_t ("beta_tilde", "fixed_small"), z = 0 after the last step. With steps < T it
  runs the respaced schedule (``schedule.respace``), as DDPMScheduler does. Deviation: diffusers also
  adds noise at the last step when that step's timestep is not 0 (trailing spacing); we never do.
- ``sample_ddim``: DDIM (Song et al. eq. 12) with η; σ_t = η sqrt((1-ᾱ_prev)/(1-ᾱ_t) (1-ᾱ_t/ᾱ_prev)),
  ᾱ_prev = 1 after the last step (``set_alpha_to_one``). Deviation: the previous timestep is the next
  one in the list; diffusers uses t - T//steps, which differs for linspace spacing and for trailing
  spacing when steps does not divide T.
- ``sample_dpmpp_2m``: DPM-Solver++(2M) in data prediction, as DPMSolverMultistepScheduler with
  algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint", lower_order_final=True,
  final_sigmas_type="zero": first step first order, last step to σ = 0 (returns x̂_0), timesteps from
  ``spacing.dpm_solver_timesteps``.
- ``sample_dpmpp_2m_sde``: the same with algorithm_type="sde-dpmsolver++" (noise from ``rng``).

Default spacing is "leading" for all three (diffusers' DDPM/DDIM default); pass the bundle's.
"""
from __future__ import annotations

import inspect

import numpy as np

from .checks import is_int, is_number
from .forward import PREDICTION_TYPES, eps_from_x0, to_x0_eps
from .schedule import Schedule, respace
from .spacing import dpm_solver_timesteps, timesteps

SAMPLERS = ("ddpm", "ddim", "dpmpp_2m", "dpmpp_2m_sde")
NEEDS_RNG = ("ddpm", "dpmpp_2m_sde")  # samplers that always add noise (DDIM only with eta > 0)
VARIANCES = ("beta", "beta_tilde")


class Cancelled(Exception):
    """Sampling stopped because ``cancel()`` returned true (before the network call of ``step``)."""

    def __init__(self, step: int, steps: int):
        super().__init__(f"cancelled before step {step} of {steps}")
        self.step, self.steps = step, steps


class NonFiniteError(ArithmeticError):
    """The network returned NaN or infinity."""

    def __init__(self, step: int, steps: int, t: int):
        super().__init__(f"the model returned NaN or infinite values at step {step} of {steps} (timestep {t})")
        self.step, self.steps, self.t = step, steps, t


# ---------------------------------------------------------------------------------------- checks


def check_common(model, x_T, schedule, prediction_type, rng=None, callback=None, cancel=None, hook=None,
                 needs_rng=False) -> np.ndarray:
    """Validate what every sampler takes; return x_T as a float64 working copy."""
    if not callable(model):
        raise ValueError(f"model must be callable (x, t) -> output, got {type(model).__name__}")
    if not isinstance(schedule, Schedule) or schedule.respaced_from is not None:
        raise ValueError("schedule must be a Schedule from make_schedule / schedule_from_dict")
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")
    x = np.asarray(x_T)
    if x.ndim < 1 or x.shape[0] < 1 or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x_T must be a float array [B, ...] with B >= 1, got shape {x.shape} dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("x_T contains NaN or infinite values")
    for name, fn in (("callback", callback), ("cancel", cancel), ("hook", hook)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{name} must be callable or None, got {type(fn).__name__}")
    if needs_rng:
        if rng is None or not hasattr(rng, "randn"):
            raise ValueError("this sampler adds noise and needs rng=BatchRNG(seeds)")
        if hasattr(rng, "__len__") and len(rng) != x.shape[0]:
            raise ValueError(f"rng has {len(rng)} generators but x_T has batch {x.shape[0]}")
    return x.astype(np.float64)


def sampler_timesteps(name: str, T: int, steps: int, spacing: str, steps_offset: int = 0) -> np.ndarray:
    """The timesteps sampler ``name`` visits: ``dpm_solver_timesteps`` for the DPM-Solver++ ones, else ``timesteps``."""
    visit = dpm_solver_timesteps if name.startswith("dpmpp_2m") else timesteps
    return visit(T, steps, spacing, steps_offset)


def check_steps(steps, T: int) -> int:
    if not is_int(steps):
        raise ValueError(f"steps must be an integer, got {steps!r}")
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be between 1 and num_train_timesteps ({T}), got {steps}")
    return int(steps)


# ---------------------------------------------------------------------------------- step helpers


def call_model(model, x: np.ndarray, t: int, step: int, steps: int, cancel) -> np.ndarray:
    """One network evaluation at integer timestep t for the whole batch (cancel checked first)."""
    if cancel is not None and cancel():
        raise Cancelled(step, steps)
    out = np.asarray(model(x.astype(np.float32), np.full(x.shape[0], t, dtype=np.int64)))
    if out.shape != x.shape:
        raise ValueError(f"the model returned shape {out.shape} for input shape {x.shape}")
    if not np.isfinite(out).all():
        raise NonFiniteError(step, steps, int(t))
    return out.astype(np.float64)


def predict_x0_eps(schedule, out, x, t, prediction_type, clip_x0):
    """(x̂_0, ε̂) from the model output; with clip_x0, x̂_0 is clipped to [-1, 1] and ε̂ recomputed
    from it, ε̂ = (x_t - sqrt(ᾱ_t) x̂_0) / sqrt(1 - ᾱ_t), so the pair still describes x_t.

    diffusers' DDIM clips x̂_0 but keeps the network's ε̂; that inconsistent pair drifts (a pixel
    model on the cosine schedule lost most of its class accuracy with it). DDPM and DPM-Solver++
    use only x̂_0, so for them both conventions are the same.
    """
    x0, eps = to_x0_eps(schedule, out, x, int(t), prediction_type)
    if clip_x0:
        x0 = np.clip(x0, -1.0, 1.0)
        eps = eps_from_x0(schedule, x, int(t), x0)
    return x0, eps


def finish_step(x, x0, step, steps, t, t_prev, callback, hook) -> np.ndarray:
    """Run the hook (e.g. inpainting's blend) and report the step."""
    if hook is not None:
        shape = x.shape
        x = np.asarray(hook(x, int(t_prev)), dtype=np.float64)
        if x.shape != shape:
            raise ValueError(f"hook returned shape {x.shape}, expected {shape}")
    if callback is not None:
        callback({"step": step, "steps": steps, "t": int(t), "x": x.astype(np.float32),
                  "x0": x0.astype(np.float32)})
    return x


def ddpm_step(rs: Schedule, k: int, x, x0, variance: str, rng) -> np.ndarray:
    """x_{k-1} = coef1_k x̂_0 + coef2_k x_k + σ_k z on the (respaced) schedule rs; z = 0 when k = 0."""
    mean = rs.posterior_mean_coef1[k] * x0 + rs.posterior_mean_coef2[k] * x
    if k == 0:
        return mean
    sigma2 = rs.betas[k] if variance == "beta" else max(rs.posterior_variance[k], 1e-20)
    return mean + np.sqrt(sigma2) * np.asarray(rng.randn(x.shape[1:]), dtype=np.float64)


# -------------------------------------------------------------------------------------- samplers


def sample_ddpm(model, x_T, schedule: Schedule, steps: int | None = None, *, prediction_type: str = "epsilon",
                variance: str = "beta", spacing: str = "leading", steps_offset: int = 0, rng=None,
                callback=None, cancel=None, hook=None, clip_x0: bool = False) -> np.ndarray:
    """Ancestral sampling, DDPM Algorithm 2 (σ_t² = β_t or β̃_t), on ``steps`` timesteps (default T)."""
    x = check_common(model, x_T, schedule, prediction_type, rng, callback, cancel, hook, needs_rng=True)
    if variance not in VARIANCES:
        raise ValueError(f"unknown variance {variance!r}; expected one of {', '.join(VARIANCES)}")
    T = schedule.num_train_timesteps
    n = check_steps(T if steps is None else steps, T)
    ts = sampler_timesteps("ddpm", T, n, spacing, steps_offset)
    rs = respace(schedule, ts)
    for j, t in enumerate(ts):
        out = call_model(model, x, t, j + 1, n, cancel)
        x0, _ = predict_x0_eps(schedule, out, x, t, prediction_type, clip_x0)
        x = ddpm_step(rs, n - 1 - j, x, x0, variance, rng)
        x = finish_step(x, x0, j + 1, n, t, ts[j + 1] if j + 1 < n else -1, callback, hook)
    return x.astype(np.float32)


def sample_ddim(model, x_T, schedule: Schedule, steps: int, *, eta: float = 0.0, prediction_type: str = "epsilon",
                spacing: str = "leading", steps_offset: int = 0, rng=None, callback=None, cancel=None,
                hook=None, clip_x0: bool = False) -> np.ndarray:
    """DDIM: x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 - ᾱ_prev - σ²) ε̂ + σ z, σ = η sqrt(β̃_t).

    η = 0 is deterministic; η = 1 has DDPM's posterior variance β̃_t (on the respaced steps).
    """
    if not is_number(eta) or not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be a number between 0 and 1, got {eta!r}")
    x = check_common(model, x_T, schedule, prediction_type, rng, callback, cancel, hook, needs_rng=eta > 0)
    T = schedule.num_train_timesteps
    n = check_steps(steps, T)
    ts = sampler_timesteps("ddim", T, n, spacing, steps_offset)
    ac = schedule.alphas_cumprod
    for j, t in enumerate(ts):
        t_prev = int(ts[j + 1]) if j + 1 < n else -1
        out = call_model(model, x, t, j + 1, n, cancel)
        x0, eps = predict_x0_eps(schedule, out, x, t, prediction_type, clip_x0)
        a_t, a_prev = ac[t], (ac[t_prev] if t_prev >= 0 else 1.0)
        std = eta * np.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        x = np.sqrt(a_prev) * x0 + np.sqrt(max(1 - a_prev - std**2, 0.0)) * eps
        if std > 0:
            x = x + std * np.asarray(rng.randn(x.shape[1:]), dtype=np.float64)
        x = finish_step(x, x0, j + 1, n, t, t_prev, callback, hook)
    return x.astype(np.float32)


def sample_dpmpp_2m(model, x_T, schedule: Schedule, steps: int, *, prediction_type: str = "epsilon",
                    spacing: str = "leading", steps_offset: int = 0, rng=None, callback=None, cancel=None,
                    hook=None, clip_x0: bool = False) -> np.ndarray:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), in λ = log(α/σ) with α = sqrt(ᾱ), σ = sqrt(1-ᾱ):

    x_next = (σ_next/σ) x - α_next (e^{-h} - 1) (D0 + D1/2),  h = λ_next - λ,
    D0 = x̂_0,  D1 = (x̂_0 - x̂_0^prev) h / h_prev  (D1 = 0 on the first step); the last step returns x̂_0.
    Deterministic: ``rng`` is accepted (so one set of arguments fits every sampler) and unused.
    """
    x = check_common(model, x_T, schedule, prediction_type, None, callback, cancel, hook)
    return _dpmpp_2m(model, x, schedule, steps, prediction_type, spacing, steps_offset, None, callback, cancel,
                     hook, clip_x0)


def sample_dpmpp_2m_sde(model, x_T, schedule: Schedule, steps: int, *, prediction_type: str = "epsilon",
                        spacing: str = "leading", steps_offset: int = 0, rng=None, callback=None, cancel=None,
                        hook=None, clip_x0: bool = False) -> np.ndarray:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, the SDE variant; diffusers' algorithm_type="sde-dpmsolver++"):

    x_next = (σ_next/σ) e^{-h} x + α_next (1 - e^{-2h}) (D0 + D1/2) + σ_next sqrt(1 - e^{-2h}) z,
    with D0, D1 and h as in ``sample_dpmpp_2m``; z ~ N(0, I) from ``rng`` (fresh noise each step, like
    ancestral DDPM, at DPM-Solver++'s step count); the last step returns x̂_0.
    """
    x = check_common(model, x_T, schedule, prediction_type, rng, callback, cancel, hook, needs_rng=True)
    return _dpmpp_2m(model, x, schedule, steps, prediction_type, spacing, steps_offset, rng, callback, cancel,
                     hook, clip_x0)


def _dpmpp_2m(model, x, schedule, steps, prediction_type, spacing, steps_offset, rng, callback, cancel, hook,
              clip_x0) -> np.ndarray:
    """DPM-Solver++(2M); with ``rng`` its SDE variant."""
    T = schedule.num_train_timesteps
    n = check_steps(steps, T)
    ts = sampler_timesteps("dpmpp_2m", T, n, spacing, steps_offset)
    ac = schedule.alphas_cumprod
    alpha, sigma = np.sqrt(ac), np.sqrt(1 - ac)
    lam = np.log(alpha) - np.log(sigma)
    x0_prev = h_prev = None
    for j, t in enumerate(ts):
        t_prev = int(ts[j + 1]) if j + 1 < n else -1
        out = call_model(model, x, t, j + 1, n, cancel)
        x0, _ = predict_x0_eps(schedule, out, x, t, prediction_type, clip_x0)
        if t_prev < 0:
            x_next = x0
        else:
            h = lam[t_prev] - lam[t]
            d = x0 if x0_prev is None else x0 + 0.5 * (h / h_prev) * (x0 - x0_prev)
            if rng is None:
                x_next = (sigma[t_prev] / sigma[t]) * x - alpha[t_prev] * np.expm1(-h) * d
            else:
                z = np.asarray(rng.randn(x.shape[1:]), dtype=np.float64)
                x_next = ((sigma[t_prev] / sigma[t]) * np.exp(-h) * x - alpha[t_prev] * np.expm1(-2 * h) * d
                          + sigma[t_prev] * np.sqrt(-np.expm1(-2 * h)) * z)
            h_prev = h
        x0_prev = x0
        x = finish_step(x_next, x0, j + 1, n, t, t_prev, callback, hook)
    return x.astype(np.float32)


_FUNCTIONS = {"ddpm": sample_ddpm, "ddim": sample_ddim, "dpmpp_2m": sample_dpmpp_2m, "dpmpp_2m_sde": sample_dpmpp_2m_sde}


def sample(name: str, model, x_T, schedule: Schedule, **kw) -> np.ndarray:
    """Run the sampler called ``name`` (one of ``SAMPLERS``) with its keyword arguments."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    fn = _FUNCTIONS[name]
    accepted = set(inspect.signature(fn).parameters) - {"model", "x_T", "schedule"}
    unknown = set(kw) - accepted
    if unknown:
        raise ValueError(f"sampler {name!r} does not take {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(sorted(accepted))}")
    if name != "ddpm" and "steps" not in kw:
        raise ValueError(f"sampler {name!r} needs steps")
    return fn(model, x_T, schedule, **kw)
