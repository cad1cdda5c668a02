"""What every sampler shares: argument checks, the network call, x̂_0 from the output, the step's end.

A *denoiser* is any callable ``model(x [B,...] float32, t [B] int64) -> output`` with output in the
model's ``prediction_type`` ("epsilon" | "v_prediction" | "sample") and the shape of x. Samplers
(ddpm.py, euler.py, dpm_solver.py, unipc.py, lcm.py; the registry is samplers.py) all:
- take the ``Grid`` they walk (grid.py), built once by the caller;
- check ``cancel()`` before each network call and raise ``Cancelled`` when it returns true;
- raise ``NonFiniteError`` (naming the step and timestep) when the network returns NaN or inf;
- after each step run ``hook(x_prev, t_prev) -> x_prev`` (t_prev = the next step's timestep, -1
  after the last step; inpainting blends here), then ``callback(info)`` with
  ``{"step": 1..steps (steps done), "steps", "t": the timestep just evaluated, "x": x_prev, "x0": x̂_0}``
  (x and x0 are float32 copies);
- raise ``ValueError`` saying what was wrong for bad arguments;
- compute in float64, hand the network float32 and return float32 of x_T's shape;
- with ``clip_x0=True`` clamp x̂_0 to [-1, 1] (diffusers' ``clip_sample``; pixel models) and use the
  ε̂ that goes with the clamped x̂_0, ε̂ = (x_t - sqrt(ᾱ) x̂_0) / sqrt(1 - ᾱ), so the pair still
  describes x_t. diffusers' DDIM keeps the network's ε̂ instead; that inconsistent pair drifts (a pixel
  model on the cosine schedule lost most of its class accuracy with it).
"""
from __future__ import annotations

import numpy as np

from .forward import PREDICTION_TYPES
from .grid import Grid


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


def check_inputs(model, x_T, grid, *, prediction_type: str, callback=None, cancel=None, hook=None) -> np.ndarray:
    """Validate what every sampler takes; return x_T as a float64 working copy."""
    if not callable(model):
        raise ValueError(f"model must be callable (x, t) -> output, got {type(model).__name__}")
    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a Grid (diffusion.samplers.sampler_grid), got {type(grid).__name__}")
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
    return x.astype(np.float64)


def check_rng(rng, batch: int) -> None:
    """Samplers that add noise need ``rng`` with ``randn(shape_per_image) -> [B, *shape]``."""
    if rng is None or not hasattr(rng, "randn"):
        raise ValueError("this sampler adds noise and needs rng=BatchRNG(seeds)")
    if hasattr(rng, "__len__") and len(rng) != batch:
        raise ValueError(f"rng has {len(rng)} generators but x_T has batch {batch}")


def draw(rng, x: np.ndarray) -> np.ndarray:
    """One standard normal per element of x (per image, from its own generator), float64."""
    return np.asarray(rng.randn(x.shape[1:]), dtype=np.float64)


def call_model(model, x: np.ndarray, t: int, *, step: int, steps: int, cancel) -> np.ndarray:
    """One network evaluation at integer timestep t for the whole batch (cancel checked first)."""
    if cancel is not None and cancel():
        raise Cancelled(step, steps)
    out = np.asarray(model(x.astype(np.float32), np.full(x.shape[0], t, dtype=np.int64)))
    if out.shape != x.shape:
        raise ValueError(f"the model returned shape {out.shape} for input shape {x.shape}")
    if not np.isfinite(out).all():
        raise NonFiniteError(step, steps, int(t))
    return out.astype(np.float64)


def predict_x0_eps(out: np.ndarray, x: np.ndarray, alpha_bar: float, *, prediction_type: str,
                   clip_x0: bool) -> tuple[np.ndarray, np.ndarray]:
    """(x̂_0, ε̂) at level ᾱ from the network output (x_t = sqrt(ᾱ) x_0 + sqrt(1 - ᾱ) ε, v = sqrt(ᾱ) ε -
    sqrt(1 - ᾱ) x_0); with clip_x0, x̂_0 is clamped to [-1, 1] and ε̂ recomputed from it."""
    a = np.float64(alpha_bar)
    if prediction_type == "epsilon":
        x0, eps = (x - np.sqrt(1 - a) * out) / np.sqrt(a), out
    elif prediction_type == "v_prediction":
        x0, eps = np.sqrt(a) * x - np.sqrt(1 - a) * out, np.sqrt(a) * out + np.sqrt(1 - a) * x
    else:
        x0, eps = out, (x - np.sqrt(a) * out) / np.sqrt(1 - a)
    if clip_x0:
        x0 = np.clip(x0, -1.0, 1.0)
        eps = (x - np.sqrt(a) * x0) / np.sqrt(1 - a)
    return x0, eps


def finish_step(x, x0, *, step: int, steps: int, t: int, t_prev: int, callback, hook) -> np.ndarray:
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
