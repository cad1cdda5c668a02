"""The diffusion math of DESIGN.md §1, in numpy only."""
from .forward import q_sample, q_step_sample, to_x0_eps
from .guidance import cfg_denoiser
from .inpaint import inpaint_hook, sample_repaint
from .noise import BatchRNG, initial_noise
from .samplers import SAMPLERS, Cancelled, NonFiniteError, sample, sample_ddim, sample_ddpm, sample_dpmpp_2m, sample_dpmpp_2m_sde
from .schedule import SCHEDULES, Schedule, make_schedule, schedule_from_dict
from .spacing import SPACINGS, timesteps

__all__ = [
    "SAMPLERS", "SCHEDULES", "SPACINGS", "BatchRNG", "Cancelled", "NonFiniteError", "Schedule", "cfg_denoiser",
    "initial_noise", "inpaint_hook", "make_schedule", "q_sample", "q_step_sample", "sample", "sample_ddim",
    "sample_ddpm", "sample_dpmpp_2m", "sample_dpmpp_2m_sde", "sample_repaint", "schedule_from_dict", "timesteps", "to_x0_eps",
]
