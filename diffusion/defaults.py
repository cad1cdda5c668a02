"""The one fallback table for sampling settings.

A model's own defaults (the bundle manifest's `defaults`: sampler, steps, guidance, spacing) are the
truth everywhere: the app's controls, `generate`, recipes. This table is what a model gets when it
does not say: a manifest without `defaults`, a training config with guidance 0 ("automatic"), a
diffusers folder loaded for export, and the app before any model is open.
"""
from __future__ import annotations

SAMPLER = "dpmpp_2m"  # DPM-Solver++(2M): the best images per network call on our models
STEPS = 20
SPACING = "trailing"
GUIDANCE_CONDITIONAL = 3.0  # class, text or label-map models: something for guidance to drop
GUIDANCE_UNCONDITIONAL = 1.0  # nothing to drop: guidance 1 is the plain model, one call per step
GUIDANCE_SD_TEXT = 7.5  # text models in the Stable Diffusion family (diffusers' and A1111's default)

__all__ = ["GUIDANCE_CONDITIONAL", "GUIDANCE_SD_TEXT", "GUIDANCE_UNCONDITIONAL", "SAMPLER", "SPACING", "STEPS",
           "fallback_defaults", "fallback_guidance"]


def fallback_guidance(conditional: bool) -> float:
    """Guidance for a model that names none: GUIDANCE_CONDITIONAL when it takes a class, text or label
    map, else GUIDANCE_UNCONDITIONAL."""
    return GUIDANCE_CONDITIONAL if conditional else GUIDANCE_UNCONDITIONAL


def fallback_defaults(*, conditional: bool, num_train_timesteps: int = 1000) -> dict:
    """{"sampler", "steps", "guidance", "spacing"} for a model that names none (steps at most T)."""
    return {"sampler": SAMPLER, "steps": min(STEPS, num_train_timesteps), "guidance": fallback_guidance(conditional),
            "spacing": SPACING}
