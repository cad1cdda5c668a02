"""What a bundle holds for other tools: diffusers' ONNX pipeline layout beside our studio.json.

optimum's ``ORTStableDiffusionPipeline`` / ``ORTDiffusionPipeline.from_pretrained(bundle)`` loads a
bundle of a latent text-to-image model (no class labels, label maps or inpainting channels), and
samples it as we do. For that the bundle holds, beside the ONNX graphs:

- ``model_index.json``: ``_class_name`` "StableDiffusionPipeline" (the class optimum maps to its ORT
  pipeline), each ONNX component as ``["diffusers", "OnnxRuntimeModel"]``, the scheduler and the
  tokenizer classes. A model no diffusers pipeline can run keeps ``_class_name``
  "DiffusionStudioPipeline" and says why in ``_diffusion_studio_unsupported`` (one sentence).
- ``scheduler/scheduler_config.json``: the diffusers scheduler of the bundle's default sampler (the
  sampler table's ``diffusers`` entry) with the trained betas, prediction type, spacing and clipping.
- ``<component>/config.json`` for unet, vae_decoder, vae_encoder and text_encoder: the PyTorch
  model's config; the VAE's ``scaling_factor`` is the one the model was trained with; the text
  encoder's ``use_attention_mask`` says whether its graph takes the mask (the SD pipeline then
  passes it).
- ``tokenizer/tokenizer_config.json``: ``model_max_length`` and the pad token beside tokenizer.json,
  which transformers' ``PreTrainedTokenizerFast`` (CLIP models: ``CLIPTokenizerFast``) reads.

Every one of these files is listed in studio.json's ``files`` (roles ``<component>_config``,
``scheduler_config``, ``tokenizer_config``), so it is hashed with the rest.
"""
from __future__ import annotations

import json
from pathlib import Path

from diffusion.samplers import sampler_spec
from engine.loaded import diffusers_unsupported_reason, scheduler_config

MODEL_INDEX = "model_index.json"
OWN_CLASS = "DiffusionStudioPipeline"


def _write(path: Path, data: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def sampler_scheduler_config(model, sampler: str) -> dict:
    """scheduler_config.json for diffusers' scheduler of ``sampler`` with the model's schedule."""
    base = scheduler_config(model)  # DDPMScheduler's fields: betas, prediction type, spacing, clip_sample
    cls, extra = sampler_spec(sampler).diffusers
    cfg = {**base, "_class_name": cls, **extra}
    if cls not in ("DDPMScheduler", "DDIMScheduler", "LCMScheduler"):  # no clip_sample / variance_type there
        cfg.pop("clip_sample", None)
        cfg.pop("variance_type", None)
    return cfg


def _text_config(text_encoder) -> dict:
    inner = getattr(text_encoder, "model", None)
    cfg = inner.config.to_dict() if hasattr(getattr(inner, "config", None), "to_dict") else dict(text_encoder.spec())
    return {**cfg, "use_attention_mask": bool(getattr(text_encoder, "uses_attention_mask", True))}


def _tokenizer_class(text_encoder) -> str:
    return "CLIPTokenizerFast" if getattr(text_encoder, "kind", None) == "clip" else "PreTrainedTokenizerFast"


def write_ecosystem_files(model, bundle: Path, files: dict, *, sampler: str) -> dict:
    """Writes the files of the module docstring into ``bundle``; returns role -> relative path to add to
    studio.json's ``files``. ``files`` is the bundle's role -> path so far."""
    bundle = Path(bundle)
    written = {"scheduler_config": _write(bundle / "scheduler" / "scheduler_config.json",
                                          sampler_scheduler_config(model, sampler))}
    configs = {"unet": json.loads(model.unet.to_json_string())}
    if model.vae is not None:
        vae = {**json.loads(model.vae.to_json_string()), "scaling_factor": float(model.scale_factor)}
        configs.update(vae_decoder=vae, vae_encoder=vae)
    if model.text_encoder is not None:
        configs["text_encoder"] = _text_config(model.text_encoder)
        settings = model.text_encoder.tokenizer_settings()
        written["tokenizer_config"] = _write(bundle / "tokenizer" / "tokenizer_config.json", {
            "tokenizer_class": _tokenizer_class(model.text_encoder), "model_max_length": settings["max_length"],
            "pad_token": settings["pad_token"]})
    for role, cfg in configs.items():
        if role in files:
            written[f"{role}_config"] = _write(bundle / role / "config.json", cfg)
    _write(bundle / MODEL_INDEX, model_index(model, files, sampler=sampler))
    return {role: p.relative_to(bundle).as_posix() for role, p in written.items()}


def model_index(model, files: dict, *, sampler: str) -> dict:
    """model_index.json of the bundle (module docstring)."""
    reason = diffusers_unsupported_reason(model)
    index = {"_class_name": OWN_CLASS if reason else "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
             "_diffusion_studio_manifest": "studio.json"}
    if reason:
        index["_diffusion_studio_unsupported"] = reason
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        if role in files:
            index[role] = ["diffusers", "OnnxRuntimeModel"]
    index["scheduler"] = ["diffusers", sampler_spec(sampler).diffusers[0]]
    if model.text_encoder is not None:
        index["tokenizer"] = ["transformers", _tokenizer_class(model.text_encoder)]
    index.update(feature_extractor=[None, None], safety_checker=[None, None], requires_safety_checker=False)
    return index
