"""The forward process and the conversions between what a network may predict (docs/MATH.md).

    q(x_t | x_0)     = N(sqrt(ᾱ_t) x_0, (1 - ᾱ_t) I)        -> q_sample
    q(x_t | x_{t-1}) = N(sqrt(1 - β_t) x_{t-1}, β_t I)      -> q_step_sample
    q(x_{t-1} | x_t, x_0) = N(μ̃_t, β̃_t I)                  -> posterior_mean_variance
    μ̃_t = 1/sqrt(α_t) (x_t - β_t/sqrt(1 - ᾱ_t) ε)            -> posterior_mean_from_eps
    x_t = sqrt(ᾱ) x_0 + sqrt(1-ᾱ) ε,   v = sqrt(ᾱ) ε - sqrt(1-ᾱ) x_0   (the "v" of Salimans & Ho)

``t`` is an int or an int array [B] (one timestep per batch item); arrays are [B, ...]. Results keep
the floating dtype of the inputs (coefficients are float64; numpy promotes float32 inputs to float64
only where an input already is float64).
"""
from __future__ import annotations

import numpy as np

from .schedule import Schedule

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def _coef(arr: np.ndarray, t, like: np.ndarray) -> np.ndarray:
    """arr[t] shaped to broadcast against ``like`` ([B, ...]), in ``like``'s float dtype."""
    t_arr = np.asarray(t)
    if not np.issubdtype(t_arr.dtype, np.integer):
        raise ValueError(f"timesteps must be integers, got dtype {t_arr.dtype}")
    if t_arr.size and (t_arr.min() < 0 or t_arr.max() >= len(arr)):
        raise ValueError(f"timestep out of range 0..{len(arr) - 1}: {t_arr.min()}..{t_arr.max()}")
    dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else np.float64
    c = arr[t_arr].astype(dtype)
    if t_arr.ndim == 0:
        return c
    if t_arr.ndim != 1 or (like.ndim and len(t_arr) not in (1, like.shape[0])):
        raise ValueError(f"timesteps must be a scalar or one per batch item ({like.shape[0]}), "
                         f"got shape {t_arr.shape}")
    return c.reshape((-1,) + (1,) * (like.ndim - 1))


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")


def q_sample(schedule: Schedule, x0, t, noise):
    """x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε (a draw from q(x_t | x_0))."""
    x0, noise = np.asarray(x0), np.asarray(noise)
    _same_shape(x0, noise, "q_sample x0 and noise")
    ac = _coef(schedule.alphas_cumprod, t, x0)
    return np.sqrt(ac) * x0 + np.sqrt(1 - ac) * noise


def q_step_sample(schedule: Schedule, x_prev, t, noise):
    """x_t = sqrt(1 - β_t) x_{t-1} + sqrt(β_t) ε (one step of q(x_t | x_{t-1}); x_prev is level t-1)."""
    x_prev, noise = np.asarray(x_prev), np.asarray(noise)
    _same_shape(x_prev, noise, "q_step_sample x_prev and noise")
    beta = _coef(schedule.betas, t, x_prev)
    return np.sqrt(1 - beta) * x_prev + np.sqrt(beta) * noise


def posterior_mean_variance(schedule: Schedule, x0, x_t, t):
    """(μ̃_t, β̃_t, log β̃_t clipped) of q(x_{t-1} | x_t, x_0): μ̃_t = coef1 x_0 + coef2 x_t."""
    x0, x_t = np.asarray(x0), np.asarray(x_t)
    _same_shape(x0, x_t, "posterior_mean_variance x0 and x_t")
    mean = _coef(schedule.posterior_mean_coef1, t, x_t) * x0 + _coef(schedule.posterior_mean_coef2, t, x_t) * x_t
    return (mean, _coef(schedule.posterior_variance, t, x_t),
            _coef(schedule.posterior_log_variance_clipped, t, x_t))


def posterior_mean_from_eps(schedule: Schedule, x_t, t, eps):
    """μ̃_t = 1/sqrt(α_t) (x_t - β_t / sqrt(1 - ᾱ_t) ε) (Algorithm 2 without the noise)."""
    x_t, eps = np.asarray(x_t), np.asarray(eps)
    _same_shape(x_t, eps, "posterior_mean_from_eps x_t and eps")
    a, b, ac = (_coef(arr, t, x_t) for arr in (schedule.alphas, schedule.betas, schedule.alphas_cumprod))
    return (x_t - b / np.sqrt(1 - ac) * eps) / np.sqrt(a)


def x0_from_eps(schedule: Schedule, x_t, t, eps):
    """x_0 = (x_t - sqrt(1 - ᾱ_t) ε) / sqrt(ᾱ_t)."""
    ac = _coef(schedule.alphas_cumprod, t, np.asarray(x_t))
    return (x_t - np.sqrt(1 - ac) * eps) / np.sqrt(ac)


def eps_from_x0(schedule: Schedule, x_t, t, x0):
    """ε = (x_t - sqrt(ᾱ_t) x_0) / sqrt(1 - ᾱ_t)."""
    ac = _coef(schedule.alphas_cumprod, t, np.asarray(x_t))
    return (x_t - np.sqrt(ac) * x0) / np.sqrt(1 - ac)


def v_from_eps(schedule: Schedule, x_t, t, eps):
    """v = sqrt(ᾱ_t) ε - sqrt(1 - ᾱ_t) x_0, with x_0 from (x_t, ε); equals (ε - sqrt(1-ᾱ) x_t)/sqrt(ᾱ)."""
    ac = _coef(schedule.alphas_cumprod, t, np.asarray(x_t))
    return (eps - np.sqrt(1 - ac) * x_t) / np.sqrt(ac)


def x0_from_v(schedule: Schedule, x_t, t, v):
    """x_0 = sqrt(ᾱ_t) x_t - sqrt(1 - ᾱ_t) v."""
    ac = _coef(schedule.alphas_cumprod, t, np.asarray(x_t))
    return np.sqrt(ac) * x_t - np.sqrt(1 - ac) * v


def eps_from_v(schedule: Schedule, x_t, t, v):
    """ε = sqrt(ᾱ_t) v + sqrt(1 - ᾱ_t) x_t."""
    ac = _coef(schedule.alphas_cumprod, t, np.asarray(x_t))
    return np.sqrt(ac) * v + np.sqrt(1 - ac) * x_t


def to_x0_eps(schedule: Schedule, model_output, x_t, t, prediction_type: str):
    """(x̂_0, ε̂) from a network output of type "epsilon" | "v_prediction" | "sample".

    For "sample" at ᾱ_t = 1 (no noise) ε̂ is undefined; it is returned as zeros there.
    """
    model_output, x_t = np.asarray(model_output), np.asarray(x_t)
    _same_shape(model_output, x_t, "model output and x_t")
    if prediction_type == "epsilon":
        return x0_from_eps(schedule, x_t, t, model_output), model_output
    if prediction_type == "v_prediction":
        return x0_from_v(schedule, x_t, t, model_output), eps_from_v(schedule, x_t, t, model_output)
    if prediction_type == "sample":
        with np.errstate(divide="ignore", invalid="ignore"):
            eps = eps_from_x0(schedule, x_t, t, model_output)
        return model_output, np.where(np.isfinite(eps), eps, 0.0).astype(eps.dtype)
    raise ValueError(f"unknown prediction_type {prediction_type!r}; expected one of {', '.join(PREDICTION_TYPES)}")
