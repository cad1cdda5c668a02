"""The one fallback table for sampling settings.

A model's own defaults (the bundle manifest's `defaults`: sampler, steps, guidance, spacing) are the
truth everywhere: the app's controls, `generate`, recipes. This table is what a model gets when it
does not say: a manifest without `defaults`, a training config with guidance 0 ("automatic"), a
diffusers folder loaded for export, and the app before any model is open. A model with a diffusers
scheduler config (SD folders, diffusers folders) gets `defaults_for_scheduler`: what its scheduler
implies (an LCM's or SD-Turbo's few steps), the table for the rest.
"""
from __future__ import annotations

from .samplers import sampler_for_scheduler

SAMPLER = "dpmpp_2m"  # DPM-Solver++(2M): the best images per network call on our models
STEPS = 20
SPACING = "trailing"
GUIDANCE_CONDITIONAL = 3.0  # class, text or label-map models: something for guidance to drop
GUIDANCE_UNCONDITIONAL = 1.0  # nothing to drop: guidance 1 is the plain model, one call per step
GUIDANCE_SD_TEXT = 7.5  # text models in the Stable Diffusion family (diffusers' and A1111's default)

FEW_STEP = {"steps": 4, "guidance": 1.0}  # SD-Turbo style (Euler, trailing): no classifier-free guidance
LCM = {"sampler": "lcm", "steps": 4, "guidance": 8.5}  # latent consistency models: guidance embedded in the U-Net

__all__ = ["FEW_STEP", "GUIDANCE_CONDITIONAL", "GUIDANCE_SD_TEXT", "GUIDANCE_UNCONDITIONAL", "LCM", "SAMPLER", "SPACING",
           "STEPS", "defaults_for_scheduler", "fallback_defaults", "fallback_guidance"]


def fallback_guidance(conditional: bool) -> float:
    """Guidance for a model that names none: GUIDANCE_CONDITIONAL when it takes a class, text or label
    map, else GUIDANCE_UNCONDITIONAL."""
    return GUIDANCE_CONDITIONAL if conditional else GUIDANCE_UNCONDITIONAL


def fallback_defaults(*, conditional: bool, num_train_timesteps: int = 1000) -> dict:
    """{"sampler", "steps", "guidance", "spacing"} for a model that names none (steps at most T)."""
    return {"sampler": SAMPLER, "steps": min(STEPS, num_train_timesteps), "guidance": fallback_guidance(conditional),
            "spacing": SPACING}


def defaults_for_scheduler(sched, *, steps: int, guidance: float) -> dict:
    """The defaults (sampler, steps, guidance, spacing) a user of a model whose scheduler config is
    ``sched`` (diffusion.scheduler_config.SchedulerConfig) expects: a latent consistency model LCM's
    sampler, steps and guidance; an SD-Turbo-style model (Euler with trailing spacing) its Euler with
    FEW_STEP; any other its own scheduler's sampler where we have one (not DDPM, which needs hundreds of
    steps; else SAMPLER) with ``steps`` and ``guidance``. The spacing is always the config's."""
    if sched.is_lcm:
        return {**LCM, "spacing": sched.spacing}
    own = sampler_for_scheduler(sched.class_name, use_karras_sigmas=sched.use_karras_sigmas)
    if sched.spacing == "trailing" and own in ("euler", "euler_a"):
        return {"sampler": own, **FEW_STEP, "spacing": "trailing"}
    sampler = own if own not in (None, "ddpm", "lcm") else SAMPLER
    return {"sampler": sampler, "steps": steps, "guidance": guidance, "spacing": sched.spacing}
