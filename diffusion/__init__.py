"""The diffusion math (docs/ARCHITECTURE.md), in numpy only."""
from .forward import q_sample, q_step_sample, to_x0_eps
from .grid import Grid
from .guidance import cfg_denoiser
from .inpaint import inpaint_hook, sample_repaint
from .noise import BatchRNG, initial_noise
from .samplers import (
    SAMPLERS,
    Cancelled,
    NonFiniteError,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_euler,
    sample_euler_ancestral,
    sample_lcm,
    sample_unipc,
    sampler_grid,
)
from .schedule import SCHEDULES, Schedule, make_schedule, schedule_from_dict
from .spacing import SPACINGS, timesteps

__all__ = [
    "SAMPLERS", "SCHEDULES", "SPACINGS", "BatchRNG", "Cancelled", "Grid", "NonFiniteError", "Schedule", "cfg_denoiser",
    "initial_noise", "inpaint_hook", "make_schedule", "q_sample", "q_step_sample", "sample", "sample_ddim",
    "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_euler", "sample_euler_ancestral", "sample_lcm",
    "sample_repaint", "sample_unipc", "sampler_grid", "schedule_from_dict", "timesteps", "to_x0_eps",
]
