"""The one reader of diffusers' `scheduler/scheduler_config.json` (numpy-free, stdlib only).

Both the runtime (Stable-Diffusion ONNX folders) and the engine (diffusers folders) read a
scheduler config through `parse_scheduler_config`, so a folder means the same thing to both.

A key the file leaves out takes the default of the scheduler class the file names
(`_class_name`), as `SchedulerClass.from_config` would: diffusers' defaults differ between
classes (DDIM/DDPM clip x̂_0 by default, PNDM and Euler do not; Euler and DPM-Solver space
timesteps "linspace" by default, DDIM/DDPM/PNDM/LCM "leading"). Values for every class:
beta_start 1e-4, beta_end 0.02, beta_schedule "linear", T 1000, prediction_type "epsilon",
steps_offset 0, except LCM/TCD whose defaults are SD's scaled_linear 0.00085..0.012.

What the runtime cannot honour is refused with a sentence naming the file and the key:
`trained_betas`, beta schedules other than linear / scaled_linear / squaredcos_cap_v2,
`thresholding` (dynamic thresholding), `rescale_betas_zero_snr`, `clip_sample` with a
`clip_sample_range` other than 1, unknown prediction types or spacings.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .checks import is_int, is_number
from .forward import PREDICTION_TYPES
from .spacing import SPACINGS

CONFIG_PATH = "scheduler/scheduler_config.json"
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine"}
LINSPACE_CLASSES = ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler",
                    "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "LMSDiscreteScheduler",
                    "HeunDiscreteScheduler", "KDPM2DiscreteScheduler", "KDPM2AncestralDiscreteScheduler",
                    "DEISMultistepScheduler")
CLIPPING_CLASSES = ("DDPMScheduler", "DDIMScheduler", "DDIMInverseScheduler", "DDIMParallelScheduler")
SD_BETA_CLASSES = ("LCMScheduler", "TCDScheduler")  # classes whose betas default to SD's
# Stable Diffusion 1.x's scheduler config: what an SD folder without scheduler/ is taken to mean.
STABLE_DIFFUSION = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                    "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "set_alpha_to_one": False,
                    "skip_prk_steps": True, "steps_offset": 1}


@dataclass(frozen=True)
class SchedulerConfig:
    """What a scheduler config says, in our terms.

    `schedule` is the manifest's `schedule` field; `spacing` and `steps_offset` place the timesteps
    (diffusion.spacing); `clip_sample` clamps x̂_0 to [-1, 1]; `set_alpha_to_one` is DDIM/PNDM's
    ᾱ after the last step (1, or ᾱ_0 when false); `lcm` is set for LCMScheduler
    (`original_inference_steps`, `timestep_scaling`)."""

    class_name: str | None
    schedule: dict
    prediction_type: str
    spacing: str
    steps_offset: int
    clip_sample: bool
    set_alpha_to_one: bool
    use_karras_sigmas: bool = False
    original_inference_steps: int | None = None
    timestep_scaling: float | None = None

    @property
    def is_lcm(self) -> bool:
        return self.class_name == "LCMScheduler"


def _get(cfg: dict, key: str, kind, default, where: str):
    value = cfg.get(key, default)
    if value is None:
        return default
    if kind is bool and not isinstance(value, bool):
        raise ValueError(f"{where}: '{key}' must be true or false, got {value!r}")
    if kind is int and not is_int(value):
        raise ValueError(f"{where}: '{key}' must be an integer, got {value!r}")
    if kind is float and not is_number(value):
        raise ValueError(f"{where}: '{key}' must be a number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ValueError(f"{where}: '{key}' must be a string, got {value!r}")
    return kind(value)


def _refuse_unsupported(cfg: dict, where: str) -> None:
    if cfg.get("trained_betas") is not None:
        raise ValueError(f"{where}: 'trained_betas' (an explicit list of betas) is not supported")
    if _get(cfg, "thresholding", bool, False, where):
        raise ValueError(f"{where}: 'thresholding' (dynamic thresholding of x̂_0) is not supported")
    if _get(cfg, "rescale_betas_zero_snr", bool, False, where):
        raise ValueError(f"{where}: 'rescale_betas_zero_snr' (zero terminal SNR) is not supported")


def parse_scheduler_config(cfg: dict, where: str = CONFIG_PATH) -> SchedulerConfig:
    """A scheduler config (the JSON object) -> SchedulerConfig; ValueError naming `where` and the key."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(cfg).__name__}")
    _refuse_unsupported(cfg, where)
    cls = _get(cfg, "_class_name", str, None, where)
    sd_betas = cls in SD_BETA_CLASSES
    beta_schedule = _get(cfg, "beta_schedule", str, "scaled_linear" if sd_betas else "linear", where)
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"{where}: 'beta_schedule' {beta_schedule!r} is not supported "
                         f"(supported: {', '.join(BETA_SCHEDULES)})")
    T = _get(cfg, "num_train_timesteps", int, 1000, where)
    if not 1 <= T <= 100_000:
        raise ValueError(f"{where}: 'num_train_timesteps' must be from 1 to 100000, got {T}")
    beta_start = _get(cfg, "beta_start", float, 0.00085 if sd_betas else 1e-4, where)
    beta_end = _get(cfg, "beta_end", float, 0.012 if sd_betas else 0.02, where)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"{where}: need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    prediction_type = _get(cfg, "prediction_type", str, "epsilon", where)
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"{where}: 'prediction_type' {prediction_type!r} is not supported "
                         f"(supported: {', '.join(PREDICTION_TYPES)})")
    spacing = _get(cfg, "timestep_spacing", str, "linspace" if cls in LINSPACE_CLASSES else "leading", where)
    if spacing not in SPACINGS:
        raise ValueError(f"{where}: 'timestep_spacing' {spacing!r} is not supported (supported: {', '.join(SPACINGS)})")
    steps_offset = _get(cfg, "steps_offset", int, 0, where)
    if not 0 <= steps_offset < T:
        raise ValueError(f"{where}: 'steps_offset' must be from 0 to {T - 1}, got {steps_offset}")
    clip = _get(cfg, "clip_sample", bool, cls in CLIPPING_CLASSES, where) if cls not in _NO_CLIP else False
    if clip and _get(cfg, "clip_sample_range", float, 1.0, where) != 1.0:
        raise ValueError(f"{where}: 'clip_sample_range' other than 1 is not supported")
    lcm = cls == "LCMScheduler"
    return SchedulerConfig(
        class_name=cls,
        schedule={"name": BETA_SCHEDULES[beta_schedule], "num_train_timesteps": T, "beta_start": beta_start,
                  "beta_end": beta_end, "cosine_s": 0.008},
        prediction_type=prediction_type, spacing=spacing, steps_offset=steps_offset, clip_sample=clip,
        set_alpha_to_one=_get(cfg, "set_alpha_to_one", bool, cls not in ("PNDMScheduler",), where),
        use_karras_sigmas=_get(cfg, "use_karras_sigmas", bool, False, where),
        original_inference_steps=_get(cfg, "original_inference_steps", int, 50, where) if lcm else None,
        timestep_scaling=_get(cfg, "timestep_scaling", float, 10.0, where) if lcm else None,
    )


# Classes that have no clip_sample setting at all (a stray key in their config means nothing).
_NO_CLIP = ("PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
            "DPMSolverMultistepScheduler", "LMSDiscreteScheduler", "UniPCMultistepScheduler")


def read_scheduler_config(path: str | Path, where: str | None = None) -> SchedulerConfig:
    """Read and parse a scheduler_config.json file; ValueError with one sentence when it cannot be used."""
    where = where or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: cannot be read ({exc})") from None
    if len(text) > 1_000_000:
        raise ValueError(f"{where}: too large for a scheduler config ({len(text)} bytes)")
    try:
        cfg = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    return parse_scheduler_config(cfg, where)
