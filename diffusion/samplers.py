"""The samplers, in ONE table: names, what the app shows, what A1111 calls them, their grid, their code.

    grid = sampler_grid(name, schedule, steps=20, spacing="leading", steps_offset=1)  # once
    x = sample(name, model, grid.start(noise), grid, prediction_type=..., rng=BatchRNG(seeds), ...)

``SAMPLER_SPECS`` is the registry: the app's drop-down (``label``, ``tip``), the command line
(``name``), PNG recipes and A1111's infotext (``a1111``: A1111 1.9+ writes "Sampler: DPM++ 2M,
Schedule type: Karras"; desktop/runtime/a1111.py also reads older "Sampler: DPM++ 2M Karras"), and
bundles' scheduler_config.json (``diffusers``) all read it.
``SAMPLERS`` lists the names in menu order. Each sampler walks a ``Grid`` (grid.py) made by its
family's grid function; the sampler functions (ddpm.py, euler.py, dpm_solver.py, unipc.py, lcm.py)
and the contract they share (sampling.py) are documented where they are defined.

``sample(name, ...)`` passes ``rng`` only to samplers that draw noise (``NEEDS_RNG``, and DDIM with
η > 0); any other keyword a sampler does not take is an error naming what it does take.

Parity with diffusers (tests/diffusion/test_parity.py, step by step, same noise): ddpm
DDPMScheduler; ddim DDIMScheduler; euler EulerDiscreteScheduler; euler_a
EulerAncestralDiscreteScheduler; dpmpp_2m(_sde) DPMSolverMultistepScheduler (algorithm_type
"dpmsolver++" / "sde-dpmsolver++"), and their _karras variants with use_karras_sigmas=True; unipc
UniPCMultistepScheduler; lcm LCMScheduler.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .ddpm import VARIANCES, sample_ddim, sample_ddpm
from .dpm_solver import sample_dpmpp_2m, sample_dpmpp_2m_sde
from .euler import sample_euler, sample_euler_ancestral
from .grid import Grid, dpm_grid, euler_grid, karras_grid, lcm_grid, spaced_grid
from .lcm import sample_lcm
from .sampling import Cancelled, NonFiniteError
from .schedule import Schedule
from .unipc import sample_unipc


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler: ``name`` (recipes, manifests, ``--sampler``), ``label`` (the app), ``tip`` (its
    tooltip), ``a1111`` = (Sampler, Schedule type or None) as A1111 writes them, its grid function
    and sampler function, ``diffusers``
    = (scheduler class, config entries) that samples the same way (what a bundle's
    scheduler_config.json names), whether it adds noise, and ``lcm_only``: it needs a model
    distilled for it."""

    name: str
    label: str
    tip: str
    a1111: tuple[str, str | None]
    run: Callable
    grid: Callable
    diffusers: tuple[str, dict]
    adds_noise: bool = False
    lcm_only: bool = False


_DPM = {"solver_order": 2, "solver_type": "midpoint", "lower_order_final": True, "final_sigmas_type": "zero"}


SAMPLER_SPECS: tuple[SamplerSpec, ...] = (
    SamplerSpec("dpmpp_2m", "DPM++ 2M", "DPM-Solver++(2M): good images in 15-30 steps, deterministic",
                ("DPM++ 2M", None), sample_dpmpp_2m, dpm_grid,
                ("DPMSolverMultistepScheduler", {**_DPM, "algorithm_type": "dpmsolver++"})),
    SamplerSpec("dpmpp_2m_karras", "DPM++ 2M Karras",
                "DPM-Solver++(2M) on Karras noise levels (finer steps near the end): A1111's favourite",
                ("DPM++ 2M", "Karras"), sample_dpmpp_2m, karras_grid,
                ("DPMSolverMultistepScheduler", {**_DPM, "algorithm_type": "dpmsolver++", "use_karras_sigmas": True})),
    SamplerSpec("dpmpp_2m_sde", "DPM++ 2M SDE", "DPM-Solver++(2M) with fresh noise each step: more detail, "
                "20-40 steps", ("DPM++ 2M SDE", None), sample_dpmpp_2m_sde, dpm_grid,
                ("DPMSolverMultistepScheduler", {**_DPM, "algorithm_type": "sde-dpmsolver++"}), adds_noise=True),
    SamplerSpec("dpmpp_2m_sde_karras", "DPM++ 2M SDE Karras", "The SDE variant on Karras noise levels",
                ("DPM++ 2M SDE", "Karras"), sample_dpmpp_2m_sde, karras_grid,
                ("DPMSolverMultistepScheduler",
                 {**_DPM, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}),
                adds_noise=True),
    SamplerSpec("euler", "Euler", "Euler's method: simple and deterministic, 20-40 steps", ("Euler", None),
                sample_euler, euler_grid, ("EulerDiscreteScheduler", {})),
    SamplerSpec("euler_a", "Euler a", "Euler ancestral: fresh noise each step, so images keep changing with "
                "the step count", ("Euler a", None), sample_euler_ancestral, euler_grid,
                ("EulerAncestralDiscreteScheduler", {}), adds_noise=True),
    SamplerSpec("unipc", "UniPC", "UniPC predictor-corrector: good images in 10-20 steps", ("UniPC", None),
                sample_unipc, dpm_grid, ("UniPCMultistepScheduler", {"solver_order": 2, "solver_type": "bh2"})),
    SamplerSpec("ddim", "DDIM", "DDIM: deterministic, 20-50 steps", ("DDIM", None), sample_ddim, spaced_grid,
                ("DDIMScheduler", {"set_alpha_to_one": True})),
    SamplerSpec("ddpm", "DDPM (ancestral)", "The original ancestral sampler: needs hundreds of steps",
                ("DDPM", None), sample_ddpm, spaced_grid,
                ("DDPMScheduler", {"variance_type": "fixed_large"}), adds_noise=True),
    SamplerSpec("lcm", "LCM", "For latent consistency models only: 2-8 steps, guidance built in",
                ("LCM", None), sample_lcm, lcm_grid,
                ("LCMScheduler", {"original_inference_steps": 50, "timestep_scaling": 10.0, "set_alpha_to_one": True}),
                adds_noise=True, lcm_only=True),
)
SPECS_BY_NAME = {s.name: s for s in SAMPLER_SPECS}
SAMPLERS = tuple(SPECS_BY_NAME)
NEEDS_RNG = tuple(s.name for s in SAMPLER_SPECS if s.adds_noise)  # samplers that always add noise


def sampler_spec(name: str) -> SamplerSpec:
    """The registry entry of ``name``; ValueError listing the names for an unknown one."""
    if name not in SPECS_BY_NAME:
        raise ValueError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")
    return SPECS_BY_NAME[name]


def sampler_for_scheduler(class_name: str | None, *, use_karras_sigmas: bool = False) -> str | None:
    """Our sampler for a diffusers scheduler class (a folder's scheduler_config.json), the first in
    the table with that class and Karras setting; None for classes we have no sampler for (PNDM...)."""
    for spec in SAMPLER_SPECS:
        cls, extra = spec.diffusers
        if cls == class_name and bool(extra.get("use_karras_sigmas")) == bool(use_karras_sigmas):
            return spec.name
    return None


def sampler_grid(name: str, schedule: Schedule, *, steps: int, spacing: str = "leading", steps_offset: int = 0,
                 strength: float = 1.0) -> Grid:
    """The grid sampler ``name`` walks: ``steps`` steps of its family's grid (grid.py) for the model's
    ``spacing`` and ``steps_offset``; img2img (strength < 1) keeps the part diffusers' img2img runs."""
    return sampler_spec(name).grid(schedule, steps=steps, spacing=spacing, steps_offset=steps_offset,
                                   strength=strength)


def sample(name: str, model, x_T, grid: Grid, **kw) -> np.ndarray:
    """Run sampler ``name`` over ``grid`` from ``x_T`` with its keyword arguments (module docstring)."""
    fn = sampler_spec(name).run
    accepted = set(inspect.signature(fn).parameters) - {"model", "x_T", "grid"}
    if "rng" not in accepted:
        kw.pop("rng", None)
    unknown = set(kw) - accepted
    if unknown:
        raise ValueError(f"sampler {name!r} does not take {', '.join(sorted(unknown))}; "
                         f"it takes {', '.join(sorted(accepted))}")
    return fn(model, x_T, grid, **kw)


__all__ = [
    "NEEDS_RNG", "SAMPLERS", "SAMPLER_SPECS", "VARIANCES", "Cancelled", "Grid", "NonFiniteError", "SamplerSpec",
    "sample", "sample_ddim", "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_euler",
    "sample_euler_ancestral", "sample_lcm", "sample_unipc", "sampler_for_scheduler", "sampler_grid", "sampler_spec",
]
