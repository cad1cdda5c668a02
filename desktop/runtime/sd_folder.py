"""Opening Stable-Diffusion-family ONNX folders (optimum exports old and new, diffusers' legacy ONNX
exports) as a `Bundle`.

Layout: model_index.json, unet/model.onnx, vae_decoder/model.onnx, optional vae_encoder/ and
text_encoder/ + tokenizer/, scheduler/scheduler_config.json; optimum also writes each component's
config.json. What is read from where:

- Schedule, prediction type (epsilon or SD 2.x's v_prediction), spacing, steps_offset, clip_sample:
  scheduler/scheduler_config.json through `diffusion.scheduler_config` (the parser the engine uses
  too); without the file, Stable Diffusion 1.x's config. Unsupported keys are refused at open.
- VAE factor: 2^(len(block_out_channels) - 1) of vae_decoder/config.json, and its `scaling_factor`;
  without a config (legacy exports), the factor is measured by decoding a 2x2 latent once, and the
  scaling factor is SD's 0.18215.
- Image size: unet/config.json `sample_size` x the VAE factor; without a config, the U-Net's fixed
  input size, else SD 1.x's 64 latent pixels. The U-Net takes sizes that are multiples of its
  divisor, the VAE factor x 2^(number of down blocks - 1) (`size_step`).
- Inputs as the session declares them: the timestep as a 0-d scalar (optimum >= 2) or [B], float
  or int64; input_ids int32 (legacy) or int64; `timestep_cond` (latent consistency models: the
  guidance embedding w); the VAE encoder's `latent_parameters` (mean and log-variance, 2C
  channels; we use the mean), `latent_sample` (a posterior sample drawn inside the graph: legacy
  and optimum 1.x exports) or `latent_mean`.
- Defaults by scheduler: LCM 4 steps, guidance 8.5 (embedded, one U-Net call per step); Euler
  with trailing spacing (SD-Turbo style) 4 steps, guidance 1 (no classifier-free guidance: the
  same images as diffusers' guidance_scale 0); else 25 steps, guidance 7.5.

Anything the runtime cannot use (SDXL's extra inputs, a missing component, a config it cannot
honour) is a BundleError naming the file and what is missing, when the folder opens.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diffusion import defaults as fallback_table
from diffusion.checks import is_int, is_number
from diffusion.scheduler_config import CONFIG_PATH, STABLE_DIFFUSION, parse_scheduler_config, read_scheduler_config
from diffusion.samplers import sampler_for_scheduler

from .manifest import (
    MODEL_INDEX_NAME, BundleError, Conditioning, Defaults, ImageSpec, LatentSpec, Manifest, MaskSpec, TextSpec,
    UNetSpec, model_hash_of, sha256_file,
)
from .text import load_tokenizer

SD_SCALE_FACTOR = 0.18215
SD_LATENT_SIZE = 64  # SD 1.x: 512 px / 8, for folders that say nothing about their size
# A1111's "cheap approximation" of the SD 1.x VAE: scaled latent (4 ch) -> RGB in about [-1, 1].
SD_PREVIEW_WEIGHT = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]
ENCODER_OUTPUTS = ("latent_mean", "latent_parameters", "latent_sample")
LCM_GUIDANCE = 8.5
MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class SDInfo:
    """What an SD folder says beyond the manifest: its scheduler config, the U-Net's size step, the
    guidance-embedding width of a latent consistency model (0 for others), and notes for the user."""

    scheduler: object  # diffusion.scheduler_config.SchedulerConfig
    size_step: int
    timestep_cond_dim: int = 0
    notes: tuple = ()


def read_json(path: Path, rel: str) -> dict:
    """A JSON object from path/rel, or BundleError naming rel."""
    try:
        if (path / rel).stat().st_size > MAX_CONFIG_BYTES:
            raise BundleError(f"{rel}: too large for a config file", rel, None)
        data = json.loads((path / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"{rel}: cannot read JSON ({exc})", rel, None) from None
    if not isinstance(data, dict):
        raise BundleError(f"{rel}: expected a JSON object", rel, None)
    return data


def component_config(path: Path, role: str) -> dict:
    """role/config.json (optimum writes one per component), or {} when the export has none."""
    rel = f"{role}/config.json"
    return read_json(path, rel) if (path / rel).is_file() else {}


def _int_list(cfg: dict, key: str, rel: str) -> list | None:
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(is_int(v) for v in value):
        raise BundleError(f"{rel}: '{key}' must be a non-empty list of integers, got {value!r}", rel, key)
    return value


def _positive_int(cfg: dict, key: str, rel: str, limit: int = 4096) -> int | None:
    value = cfg.get(key)
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 2 and value[0] == value[1]:
        value = value[0]  # [h, w] for a square model
    if not is_int(value) or not 1 <= value <= limit:
        raise BundleError(f"{rel}: '{key}' must be an integer from 1 to {limit}, got {value!r}", rel, key)
    return value


def scheduler_of(path: Path):
    """The folder's SchedulerConfig (SD 1.x's when it has no scheduler config)."""
    try:
        if (path / CONFIG_PATH).is_file():
            return read_scheduler_config(path / CONFIG_PATH, CONFIG_PATH), ()
        return parse_scheduler_config(STABLE_DIFFUSION, CONFIG_PATH), (
            f"no {CONFIG_PATH}: Stable Diffusion 1.x's scheduler settings are assumed",)
    except ValueError as exc:
        raise BundleError(str(exc), CONFIG_PATH, None) from None


def vae_factor_and_scale(path: Path, decoder) -> tuple[int, float]:
    """(image pixels per latent pixel, scaling_factor) from vae_decoder/config.json, else measured."""
    rel = "vae_decoder/config.json"
    cfg = component_config(path, "vae_decoder")
    blocks = _int_list(cfg, "block_out_channels", rel)
    scale = cfg.get("scaling_factor", SD_SCALE_FACTOR)
    if not is_number(scale) or not 0 < scale < 100:
        raise BundleError(f"{rel}: 'scaling_factor' must be a positive number, got {scale!r}", rel, "scaling_factor")
    if blocks is not None:
        return 2 ** (len(blocks) - 1), float(scale)
    return measured_vae_factor(decoder), float(scale)


def measured_vae_factor(decoder) -> int:
    """Decode one 2x2 latent and compare sizes (legacy exports carry no VAE config)."""
    shape = decoder.inputs["latent_sample"][1]
    channels = shape[1] if len(shape) > 1 and isinstance(shape[1], int) and shape[1] > 0 else 4
    try:
        out = decoder.run({"latent_sample": np.zeros((1, channels, 2, 2), np.float32)}, output="sample")
    except Exception as exc:  # onnxruntime raises several unrelated classes
        raise BundleError(f"{decoder.file}: cannot decode a 2x2 latent to measure the VAE factor ({exc}); "
                          "add vae_decoder/config.json with block_out_channels", decoder.file, None) from None
    factor = out.shape[-1] // 2
    if out.ndim != 4 or factor < 1 or factor & (factor - 1):
        raise BundleError(f"{decoder.file}: decodes a 2x2 latent to shape {list(out.shape)}, not a power-of-two "
                          "upscale", decoder.file, None)
    return factor


def latent_size(path: Path, unet) -> tuple[int, int, int]:
    """(height, width, U-Net down blocks) in latent pixels, from unet/config.json or the session."""
    rel = "unet/config.json"
    cfg = component_config(path, "unet")
    side = _positive_int(cfg, "sample_size", rel)
    downs = cfg.get("down_block_types")
    levels = len(downs) if isinstance(downs, list) and downs else len(_int_list(cfg, "block_out_channels", rel) or [0] * 4)
    shape = unet.inputs["sample"][1]
    fixed = [shape[i] if len(shape) > i and isinstance(shape[i], int) and shape[i] > 0 else None for i in (2, 3)]
    h = fixed[0] or side or SD_LATENT_SIZE
    w = fixed[1] or side or SD_LATENT_SIZE
    return h, w, levels


def encoder_output(encoder) -> str:
    """Which output of the VAE encoder holds the latent (see the module docstring)."""
    for name in ENCODER_OUTPUTS:
        if name in encoder.outputs:
            return name
    raise BundleError(f"{encoder.file}: the VAE encoder has none of the outputs {list(ENCODER_OUTPUTS)} "
                      f"(it has {sorted(encoder.outputs)})", encoder.file, "vae_encoder.outputs")


def check_unet(unet, text: bool) -> int:
    """The U-Net's inputs are ones we can feed; returns the timestep_cond width (0 if none)."""
    extra = sorted(set(unet.inputs) - {"sample", "timestep", "encoder_hidden_states", "timestep_cond"})
    if {"text_embeds", "time_ids"} & set(extra):
        raise BundleError(f"{unet.file}: takes {extra}: a Stable Diffusion XL U-Net, which is not supported "
                          "(SD 1.x and 2.x folders are)", unet.file, "unet.inputs")
    if extra:
        raise BundleError(f"{unet.file}: takes inputs {extra} that a Stable-Diffusion U-Net does not have",
                          unet.file, "unet.inputs")
    rank = len(unet.inputs.get("timestep", ("", []))[1])
    if "timestep" in unet.inputs and rank > 1:
        raise BundleError(f"{unet.file}: input 'timestep' has rank {rank}; expected a scalar or [batch]",
                          unet.file, "unet.inputs.timestep")
    if not text and "encoder_hidden_states" in unet.inputs:
        raise BundleError(f"{unet.file}: needs text encoder states but the folder has no text_encoder/model.onnx",
                          "text_encoder/model.onnx", None)
    if "timestep_cond" not in unet.inputs:
        return 0
    shape = unet.inputs["timestep_cond"][1]
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise BundleError(f"{unet.file}: input 'timestep_cond' must be [batch, width] with a fixed width, got {shape}",
                          unet.file, "unet.inputs.timestep_cond")
    return shape[1]


def text_spec(path: Path, text_encoder) -> tuple[TextSpec, object]:
    """(TextSpec, tokenizer) from tokenizer/ (CLIP vocab.json + merges.txt, or tokenizer.json)."""
    if not (path / "tokenizer").is_dir():
        raise BundleError(f"{path}: text_encoder/ without tokenizer/", "tokenizer", None)
    try:
        tokenizer = load_tokenizer(path / "tokenizer")
    except Exception as exc:  # tokenizers raises its own exception types
        raise BundleError(f"tokenizer: cannot build the tokenizer ({exc})", "tokenizer", None) from None
    rel = "tokenizer/tokenizer_config.json"
    tok_config = read_json(path, rel) if (path / rel).is_file() else {}
    max_length = 77
    value = tok_config.get("model_max_length")
    if is_int(value) and 0 < value <= 1024:
        max_length = value
    out = text_encoder.outputs
    hidden_shape = out.get("last_hidden_state", next(iter(out.values())))[1]
    hidden = hidden_shape[2] if len(hidden_shape) > 2 and isinstance(hidden_shape[2], int) else 768
    return TextSpec(max_length, hidden, pad_id(path, tokenizer, tok_config)), tokenizer


def pad_id(path: Path, tokenizer, tok_config: dict) -> int:
    """The pad token's id: special_tokens_map.json, else tokenizer_config.json, else <|endoftext|>
    (SD 2.x's OpenCLIP tokenizer pads with "!", SD 1.x's with <|endoftext|>)."""
    rel = "tokenizer/special_tokens_map.json"
    for data in (read_json(path, rel) if (path / rel).is_file() else {}, tok_config):
        pad = data.get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str) and tokenizer.token_to_id(pad) is not None:
            return tokenizer.token_to_id(pad)
    eos = tokenizer.token_to_id("<|endoftext|>")
    return eos if eos is not None else 0


def sd_defaults(sched, text: bool, lcm: bool) -> Defaults:
    """Steps, guidance and sampler a user of this kind of model expects (module docstring)."""
    if lcm:
        return Defaults(sampler="lcm", steps=4, guidance=LCM_GUIDANCE, spacing=sched.spacing)
    few_step = sched.spacing == "trailing" and (sched.class_name or "").startswith("Euler")
    # the folder's own scheduler where we have it (the sampler table's diffusers classes), else DPM++ 2M
    sampler = sampler_for_scheduler(sched.class_name, use_karras_sigmas=sched.use_karras_sigmas) or fallback_table.SAMPLER
    if few_step:
        return Defaults(sampler=sampler, steps=4, guidance=fallback_table.GUIDANCE_UNCONDITIONAL, spacing="trailing")
    guidance = fallback_table.GUIDANCE_SD_TEXT if text else fallback_table.GUIDANCE_UNCONDITIONAL
    return Defaults(sampler=sampler, steps=25, guidance=guidance, spacing=sched.spacing)


def sd_manifest(path: Path, models: dict, *, text: TextSpec | None) -> tuple[Manifest, SDInfo]:
    """The Manifest an SD folder stands for, and what it says beyond it."""
    index = read_json(path, MODEL_INDEX_NAME)
    unet = models["unet"]
    timestep_cond_dim = check_unet(unet, text is not None)
    sched, notes = scheduler_of(path)
    if timestep_cond_dim and not sched.is_lcm:
        raise BundleError(f"{unet.file}: takes 'timestep_cond' (a latent consistency model) but {CONFIG_PATH} names "
                          f"{sched.class_name}, not LCMScheduler", CONFIG_PATH, "_class_name")
    factor, scale = vae_factor_and_scale(path, models["vae_decoder"])
    h, w, levels = latent_size(path, unet)
    sample_shape = unet.inputs["sample"][1]
    cin = sample_shape[1] if len(sample_shape) > 1 and isinstance(sample_shape[1], int) and sample_shape[1] > 0 else 4
    c = 4
    if cin not in (c, 2 * c + 1):
        raise BundleError(f"{unet.file}: input 'sample' has {cin} channels; Stable-Diffusion U-Nets take 4 "
                          "(text-to-image) or 9 (inpainting)", unet.file, "unet.inputs.sample")
    if "vae_encoder" in models:
        name = encoder_output(models["vae_encoder"])
        if name == "latent_sample":
            notes += (f"vae_encoder/model.onnx draws a random latent inside the graph (an older export): images "
                      "made from an init image vary from run to run",)
    manifest = Manifest(
        name=path.name, kind="latent", image=ImageSpec(h * factor, w * factor, 3), schedule=sched.schedule,
        prediction_type=sched.prediction_type, unet=UNetSpec(cin, c), files=sd_files(path, text is not None),
        latent=LatentSpec(c, h, w, scale),
        conditioning=Conditioning(text=text, mask=MaskSpec("inpaint") if cin == 2 * c + 1 else None),
        defaults=sd_defaults(sched, text is not None, timestep_cond_dim > 0),
        description=f"Stable-Diffusion-style ONNX folder ({index.get('_class_name', 'unknown pipeline')})",
        provenance={"source": str(path), "format": "diffusers/optimum ONNX"},
    )
    info = SDInfo(scheduler=sched, size_step=factor * 2 ** max(0, levels - 1), timestep_cond_dim=timestep_cond_dim,
                  notes=notes)
    return manifest, info


def sd_files(path: Path, text: bool) -> dict:
    files = {role: f"{role}/model.onnx" for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder")
             if (path / role / "model.onnx").is_file()}
    if text:
        files["tokenizer"] = "tokenizer"
    return files


def onnx_files(path: Path) -> dict:
    """role -> model.onnx path of the components present; unet and vae_decoder are required."""
    files = sd_files(path, False)
    for role in ("unet", "vae_decoder"):
        if role not in files:
            raise BundleError(f"{path}: Stable-Diffusion-style folder without {role}/model.onnx",
                              f"{role}/model.onnx", None)
    return files


def unet_hash(path: Path) -> str:
    """`manifest.model_hash_of` unet/model.onnx and every other file of unet/ but config.json: the
    weights of large exports live beside the graph (legacy weights.pb, optimum's model.onnx_data), so
    the graph alone would give every fine-tune of one architecture the same identity."""
    folder = path / "unet"
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in ("model.onnx", "config.json"))
    files = ["unet/model.onnx", *(f"unet/{name}" for name in others)]
    return model_hash_of({rel: sha256_file(path / rel) for rel in files}, "unet/model.onnx")


def guidance_embedding(w: float, dim: int, batch: int) -> np.ndarray:
    """LCM's guidance embedding of w = guidance - 1 (diffusers' get_guidance_scale_embedding): [B, dim]."""
    half = dim // 2  # float32 throughout, as diffusers computes it (sin of w * 1000 is precision-sensitive)
    step = np.float32(np.log(np.float32(10000.0))) / np.float32(half - 1)
    freqs = np.exp(np.arange(half, dtype=np.float32) * -step)
    emb = np.float32(w) * np.float32(1000.0) * freqs
    emb = np.concatenate([np.sin(emb), np.cos(emb)]).astype(np.float32)
    if dim % 2:
        emb = np.pad(emb, (0, 1))
    return np.repeat(emb[None], batch, axis=0)


def preview_map(channels: int):
    """A1111's linear latent -> RGB preview for 4-channel SD latents."""
    if channels != 4:
        return None
    return np.asarray(SD_PREVIEW_WEIGHT, np.float32), np.zeros(3, np.float32)
