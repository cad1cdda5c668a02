"""Noise schedules: β_t for t = 0..T-1 and every array derived from it (docs/MATH.md, "Forward process").

    alphas = 1 - betas,  alphas_cumprod[t] = ᾱ_t = prod(alphas[:t+1]),  alphas_cumprod_prev[t] = ᾱ_{t-1}
    (ᾱ_{-1} = 1), posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, β̃_t I) with
    β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t),  coef1 = β_t sqrt(ᾱ_{t-1}) / (1 - ᾱ_t),
    coef2 = sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t).

Schedules (all float64, indexed like diffusers: ``betas[0]`` takes the data x_0 to x_1):
- ``linear``: β = linspace(beta_start, beta_end, T) (DDPM: 1e-4 .. 0.02).
- ``scaled_linear``: β = linspace(sqrt(beta_start), sqrt(beta_end), T)² (Stable Diffusion passes
  beta_start=0.00085, beta_end=0.012).
- ``cosine`` (diffusers' ``squaredcos_cap_v2``): f(u) = cos(((u/T + s)/(1 + s)) π/2)²,
  β_t = clip(1 - f(t+1)/f(t), 0, 0.999), so ᾱ_t = f(t+1)/f(0) wherever the clip is inactive.
  beta_start/beta_end are ignored (but kept in ``to_dict`` so the manifest round-trips).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from .checks import is_int

SCHEDULES = ("linear", "cosine", "scaled_linear")


@dataclass(frozen=True, eq=False)
class Schedule:
    """A fixed forward process. Arrays are float64 of length T (``num_train_timesteps``).

    ``respaced_from`` is None for a trained schedule; for ``respace(...)`` it holds the original
    timesteps (ascending) that index k stands for.
    """

    name: str
    num_train_timesteps: int
    betas: np.ndarray
    alphas: np.ndarray
    alphas_cumprod: np.ndarray
    alphas_cumprod_prev: np.ndarray
    posterior_variance: np.ndarray
    posterior_log_variance_clipped: np.ndarray
    posterior_mean_coef1: np.ndarray
    posterior_mean_coef2: np.ndarray
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_s: float = 0.008
    respaced_from: np.ndarray | None = None

    def to_dict(self) -> dict:
        """The manifest's ``schedule`` field: name, num_train_timesteps, beta_start, beta_end, cosine_s."""
        if self.respaced_from is not None:
            raise ValueError("a respaced schedule is a sampler detail and has no manifest form; "
                             "save the schedule it was respaced from")
        return {
            "name": self.name,
            "num_train_timesteps": int(self.num_train_timesteps),
            "beta_start": float(self.beta_start),
            "beta_end": float(self.beta_end),
            "cosine_s": float(self.cosine_s),
        }


def _cosine_betas(T: int, s: float) -> np.ndarray:
    """β_t = clip(1 - f(t+1)/f(t), 0, 0.999), f(u) = cos(((u/T + s)/(1 + s)) π/2)² (Nichol & Dhariwal)."""
    u = np.arange(T + 1, dtype=np.float64)
    f = np.cos(((u / T + s) / (1 + s)) * math.pi / 2) ** 2
    return np.clip(1.0 - f[1:] / f[:-1], 0.0, 0.999)


def _derive(name, betas, alphas_cumprod, **params) -> Schedule:
    """Build every derived array (docs/MATH.md) from β and ᾱ (ᾱ given so a respaced schedule keeps exact values)."""
    T = len(betas)
    alphas = 1.0 - betas
    prev = np.append(1.0, alphas_cumprod[:-1])
    with np.errstate(divide="ignore", invalid="ignore"):
        posterior_variance = betas * (1.0 - prev) / (1.0 - alphas_cumprod)
        coef1 = betas * np.sqrt(prev) / (1.0 - alphas_cumprod)
        coef2 = (1.0 - prev) * np.sqrt(alphas) / (1.0 - alphas_cumprod)
    # β̃_0 = 0; the log is clipped to β̃_1 as in the DDPM reference code.
    clipped = np.append(posterior_variance[1], posterior_variance[1:]) if T > 1 else posterior_variance
    with np.errstate(divide="ignore"):
        log_clipped = np.log(np.maximum(clipped, 1e-20))
    return Schedule(name=name, num_train_timesteps=T, betas=betas, alphas=alphas,
                    alphas_cumprod=alphas_cumprod, alphas_cumprod_prev=prev,
                    posterior_variance=posterior_variance, posterior_log_variance_clipped=log_clipped,
                    posterior_mean_coef1=coef1, posterior_mean_coef2=coef2, **params)


def make_schedule(name: str = "linear", T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                  cosine_s: float = 0.008) -> Schedule:
    """The schedule ``name`` ("linear" | "cosine" | "scaled_linear") over T training timesteps."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {', '.join(SCHEDULES)}")
    if not is_int(T) or T < 1:
        raise ValueError(f"num_train_timesteps must be a positive integer, got {T!r}")
    T = int(T)
    if name == "cosine":
        if not (0 <= cosine_s < 1):
            raise ValueError(f"cosine_s must be in [0, 1), got {cosine_s!r}")
        betas = _cosine_betas(T, cosine_s)
    else:
        if not (0 < beta_start <= beta_end < 1):
            raise ValueError(f"need 0 < beta_start <= beta_end < 1, got beta_start={beta_start!r}, "
                             f"beta_end={beta_end!r}")
        if name == "linear":
            betas = np.linspace(beta_start, beta_end, T, dtype=np.float64)
        else:
            betas = np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=np.float64) ** 2
    return _derive(name, betas, np.cumprod(1.0 - betas), beta_start=float(beta_start),
                   beta_end=float(beta_end), cosine_s=float(cosine_s))


def schedule_from_dict(d: dict) -> Schedule:
    """Inverse of ``Schedule.to_dict`` (the manifest's ``schedule`` field); missing parameters take defaults."""
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"a schedule must be a mapping with at least 'name', got {d!r}")
    unknown = set(d) - {"name", "num_train_timesteps", "beta_start", "beta_end", "cosine_s"}
    if unknown:
        raise ValueError(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
    return make_schedule(d["name"], d.get("num_train_timesteps", 1000), d.get("beta_start", 1e-4),
                         d.get("beta_end", 0.02), d.get("cosine_s", 0.008))


def respace(schedule: Schedule, timesteps) -> Schedule:
    """The schedule seen by a sampler that only visits ``timesteps`` (any order, distinct, in 0..T-1).

    Index k of the result is the k-th smallest visited timestep τ_k: ᾱ'_k = ᾱ_{τ_k} and
    β'_k = 1 - ᾱ_{τ_k}/ᾱ_{τ_{k-1}} (ᾱ_{τ_{-1}} = 1), as diffusers' DDPMScheduler steps with
    ``num_inference_steps`` < T.
    """
    ts = np.unique(np.asarray(timesteps, dtype=np.int64))
    if len(ts) != len(np.asarray(timesteps).ravel()) or ts[0] < 0 or ts[-1] >= schedule.num_train_timesteps:
        raise ValueError(f"respace needs distinct timesteps in 0..{schedule.num_train_timesteps - 1}")
    ac = schedule.alphas_cumprod[ts]
    betas = 1.0 - ac / np.append(1.0, ac[:-1])
    return _derive(schedule.name, betas, ac, beta_start=schedule.beta_start, beta_end=schedule.beta_end,
                   cosine_s=schedule.cosine_s, respaced_from=ts)


def truncate_schedule(schedule: Schedule, T: int) -> Schedule:
    """The forward process restricted to t < T (every array indexed by t is cut; ᾱ_t is unchanged)."""
    if T >= schedule.num_train_timesteps:
        return schedule
    cut = {f.name: getattr(schedule, f.name)[:T] for f in fields(schedule)
           if isinstance(getattr(schedule, f.name), np.ndarray) and f.name != "respaced_from"}
    return replace(schedule, num_train_timesteps=T, **cut)
