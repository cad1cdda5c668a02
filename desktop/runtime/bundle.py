"""Opening a model bundle: manifest, hashes, ONNX Runtime sessions, tokenizer, preview map.

`open_bundle(path, provider="auto")` accepts
- a Diffusion Studio bundle (a folder with studio.json): the manifest is validated, every file's
  sha256 is checked, and
- a Stable-Diffusion-1.x-style ONNX folder as optimum / diffusers lay it out (model_index.json,
  unet/, text_encoder/, vae_decoder/, vae_encoder/, tokenizer/, scheduler/scheduler_config.json):
  a Manifest is inferred (scheduler config or scaled_linear, scale factor 0.18215, 77 tokens, size
  from the U-Net's input shape or 512). Such folders carry no hashes, so none are checked.

Sessions are created eagerly, when the bundle opens: a damaged or mismatched ONNX file is reported
at open time (a BundleError naming the file), never half-way through a generation. Each session's
input names and dtypes are read from the session and checked against what the manifest says the
model takes; inputs are cast to the dtype the session declares (so fp16 graphs and float timesteps
work).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from diffusion.schedule import schedule_from_dict

from . import providers
from .manifest import (
    MANIFEST_NAME, MODEL_INDEX_NAME, PREDICTION_TYPES, SPACINGS, BundleError, Conditioning, Defaults, ImageSpec,
    LatentSpec, Manifest, MaskSpec, TextSpec, UNetSpec, read_manifest, sha256_file, verify_hashes,
)
from .preview import read_preview_map
from .text import TextEncoder, load_tokenizer

DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32,
}
FLOATS = ("tensor(float)", "tensor(float16)", "tensor(double)")
INTS = ("tensor(int64)", "tensor(int32)")
SD_SCALE_FACTOR = 0.18215
# A1111's "cheap approximation" of the SD 1.x VAE: scaled latent (4 ch) -> RGB in about [-1, 1].
SD_PREVIEW_WEIGHT = [[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]]


@dataclass
class OnnxModel:
    """One ONNX Runtime session plus what it declares: inputs/outputs as name -> (type, shape)."""

    role: str
    file: str  # path relative to the bundle, for messages
    session: ort.InferenceSession
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    calls: int = 0

    def __post_init__(self):
        self.inputs = {i.name: (i.type, list(i.shape)) for i in self.session.get_inputs()}
        self.outputs = {o.name: (o.type, list(o.shape)) for o in self.session.get_outputs()}

    def run(self, feeds: dict, output: str | None = None) -> np.ndarray:
        """Run with inputs cast to the declared dtypes; return `output` (or the first) as float32."""
        cast = {name: np.ascontiguousarray(value, dtype=DTYPES.get(self.inputs[name][0], None))
                for name, value in feeds.items()}
        names = list(self.outputs)
        want = output if output in self.outputs else names[0]
        self.calls += 1
        result = self.session.run([want], cast)[0]
        return result.astype(np.float32) if result.dtype != np.float32 and result.dtype.kind == "f" else result


def _shape_dim(shape: list, i: int):
    return shape[i] if len(shape) > i and isinstance(shape[i], int) and shape[i] > 0 else None


class Bundle:
    """An opened model: `manifest`, `path`, `provider`, `unet`, `vae_decoder`, `vae_encoder`,
    `text` (TextEncoder or None), `preview` ((weight [C,3], bias [3]) or None), `schedule`."""

    def __init__(self, path: Path, manifest: Manifest, provider: str, models: dict, tokenizer, preview, source: str):
        self.path = path
        self.manifest = manifest
        self.provider = provider  # ONNX Runtime's name of the provider that really loaded
        self.source = source  # "studio" or "sd-onnx"
        self.unet: OnnxModel = models["unet"]
        self.vae_decoder: OnnxModel | None = models.get("vae_decoder")
        self.vae_encoder: OnnxModel | None = models.get("vae_encoder")
        text_model = models.get("text_encoder")
        t = manifest.conditioning.text
        self.text = TextEncoder(text_model, tokenizer, t.max_length, t.pad_id) if (t and text_model) else None
        self.preview = preview
        self.schedule = schedule_from_dict(manifest.schedule)
        self.provider_note: str | None = None  # "CUDA did not load (...): running on cpu" (open_bundle sets it)

    @property
    def name(self) -> str:
        return self.manifest.name

    @cached_property
    def model_hash(self) -> str:
        """sha256 of the U-Net file: the model's identity in recipes (A1111 shows its first 10 digits)."""
        rel = self.manifest.files["unet"]
        return self.manifest.sha256.get(rel) or sha256_file(self.path / rel)

    @property
    def provider_short(self) -> str:
        return providers.short_name(self.provider)

    def __repr__(self) -> str:
        return f"Bundle({self.manifest.name!r}, {self.manifest.kind}, provider={self.provider_short})"


# --------------------------------------------------------------------------------------------
# Sessions and their inputs


def _session(path: Path, rel: str, role: str, provider: str, **kw) -> tuple[ort.InferenceSession, str]:
    """providers.create_session(path / rel, provider, **kw); a bad file becomes a BundleError naming it."""
    try:
        return providers.create_session(path / rel, provider, **kw)
    except providers.ProviderError:
        raise
    except Exception as exc:  # onnxruntime raises several unrelated classes for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{rel}: not a valid ONNX model ({first[:300]})", rel, f"files.{role}") from None


def _require(model: OnnxModel, name: str, types: tuple, what: str) -> None:
    if name not in model.inputs:
        raise BundleError(
            f"{model.file}: the ONNX model has no input '{name}' ({what}); its inputs are {sorted(model.inputs)}",
            model.file, f"{model.role}.inputs.{name}")
    got = model.inputs[name][0]
    if got not in types:
        raise BundleError(f"{model.file}: input '{name}' must be {' or '.join(types)}, got {got}",
                          model.file, f"{model.role}.inputs.{name}")


def _only(model: OnnxModel, allowed: set) -> None:
    extra = sorted(set(model.inputs) - allowed)
    if extra:
        raise BundleError(
            f"{model.file}: the ONNX model takes inputs {extra} that {MANIFEST_NAME} does not describe "
            f"(expected only {sorted(allowed)})", model.file, f"{model.role}.inputs.{extra[0]}")


def check_inputs(models: dict, m: Manifest) -> None:
    """Each session takes what the manifest says the model takes (names, dtypes, channel counts)."""
    unet = models["unet"]
    _require(unet, "sample", FLOATS, "the noisy image x_t")
    _require(unet, "timestep", INTS + FLOATS, "the timestep t")
    allowed = {"sample", "timestep"}
    if m.conditioning.text:
        _require(unet, "encoder_hidden_states", FLOATS, "the text encoder's states, since the model takes text")
        allowed.add("encoder_hidden_states")
    if m.conditioning.class_:
        _require(unet, "class_labels", INTS, "the class index, since the model takes a class")
        allowed.add("class_labels")
    _only(unet, allowed)
    cin = _shape_dim(unet.inputs["sample"][1], 1)
    if cin is not None and cin != m.unet.in_channels:
        raise BundleError(f"{unet.file}: input 'sample' has {cin} channels but {MANIFEST_NAME} says "
                          f"unet.in_channels = {m.unet.in_channels}", unet.file, "unet.inputs.sample")
    if "vae_decoder" in models:
        dec = models["vae_decoder"]
        _require(dec, "latent_sample", FLOATS, "the unscaled latent")
        _only(dec, {"latent_sample"})
    if "vae_encoder" in models:
        enc = models["vae_encoder"]
        _require(enc, "sample", FLOATS, "the image in [-1, 1]")
        _only(enc, {"sample"})
    if "text_encoder" in models:
        te = models["text_encoder"]
        _require(te, "input_ids", INTS, "the token ids")
        _only(te, {"input_ids", "attention_mask"})


def _load_models(path: Path, files: dict, provider: str, *, hashes: dict | None = None, verify: bool = True,
                 allowed: list[str] | None = None) -> tuple[dict, str]:
    """Create the sessions: the U-Net picks the provider, the others use the same one.

    `hashes`: file -> sha256 (the manifest's; keys of the graph cache), `verify`: whether they were
    checked (cached graphs are then checked too), `allowed`: the providers the graphs run on."""
    models: dict[str, OnnxModel] = {}
    hashes = hashes or {}
    kw = dict(verify=verify, allowed=[providers.resolve_provider(p) for p in allowed] if allowed else None)
    session, chosen = _session(path, files["unet"], "unet", provider, sha256=hashes.get(files["unet"]), **kw)
    models["unet"] = OnnxModel("unet", files["unet"], session)
    for role in ("vae_decoder", "vae_encoder", "text_encoder"):
        if role in files:
            s, _ = _session(path, files[role], role, chosen, sha256=hashes.get(files[role]), **kw)
            models[role] = OnnxModel(role, files[role], s)
    return models, chosen


def open_bundle(path: str | os.PathLike, provider: str = "auto", verify: bool = True) -> Bundle:
    """Open a Diffusion Studio bundle or an SD-1.x-style ONNX folder; BundleError when it is unusable.

    `verify=False` skips the sha256 check (it reads every file; the UI may skip it for a bundle it
    verified before). With provider "auto", `bundle.provider_note` is the one sentence saying why a
    better provider was not used (None when none was skipped).
    """
    bundle = _open(Path(path), provider, verify)
    if provider in (None, "", "auto"):
        allowed = bundle.manifest.providers
        bundle.provider_note = providers.fallback_note(
            bundle.provider, [providers.resolve_provider(p) for p in allowed] if allowed else None)
    return bundle


def _open(path: Path, provider: str, verify: bool) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"{path}: no such model folder", None, None)
    if (path / MANIFEST_NAME).is_file():
        manifest = read_manifest(path)
        if verify:
            verify_hashes(manifest, path)
        models, chosen = _load_models(path, manifest.files, provider, hashes=manifest.sha256, verify=verify,
                                      allowed=manifest.providers)
        check_inputs(models, manifest)
        tokenizer = None
        if manifest.conditioning.text:
            rel = manifest.files["tokenizer"]
            try:
                tokenizer = load_tokenizer(path / rel)
            except Exception as exc:
                raise BundleError(f"{rel}: not a tokenizers JSON file ({exc})", rel, "files.tokenizer") from None
        preview = read_preview_map(path, manifest.files["preview"], manifest.diffused_channels) \
            if "preview" in manifest.files else None
        return Bundle(path, manifest, chosen, models, tokenizer, preview, "studio")
    if (path / MODEL_INDEX_NAME).is_file():
        return _open_sd_folder(path, provider)
    raise BundleError(f"{path}: not a model bundle (no {MANIFEST_NAME} or {MODEL_INDEX_NAME})", None, None)


# --------------------------------------------------------------------------------------------
# Stable-Diffusion-style ONNX folders


def _json(path: Path, rel: str) -> dict:
    try:
        data = json.loads((path / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{rel}: cannot read JSON ({exc})", rel, None) from None
    if not isinstance(data, dict):
        raise BundleError(f"{rel}: expected a JSON object", rel, None)
    return data


def _sd_schedule(path: Path) -> tuple[dict, str, str]:
    """(schedule dict, prediction_type, spacing) from scheduler/scheduler_config.json, or SD 1.x's."""
    rel = "scheduler/scheduler_config.json"
    cfg = _json(path, rel) if (path / rel).is_file() else {}
    names = {"scaled_linear": "scaled_linear", "linear": "linear", "squaredcos_cap_v2": "cosine"}
    beta_schedule = cfg.get("beta_schedule", "scaled_linear")
    if beta_schedule not in names:
        raise BundleError(f"{rel}: beta_schedule '{beta_schedule}' is not supported (use one of {sorted(names)})",
                          rel, "beta_schedule")
    schedule = {
        "name": names[beta_schedule], "num_train_timesteps": int(cfg.get("num_train_timesteps", 1000)),
        "beta_start": float(cfg.get("beta_start", 0.00085)), "beta_end": float(cfg.get("beta_end", 0.012)),
        "cosine_s": 0.008,
    }
    prediction_type = cfg.get("prediction_type", "epsilon")
    spacing = cfg.get("timestep_spacing", "leading")
    if spacing not in SPACINGS:
        spacing = "leading"
    return schedule, prediction_type, spacing


def _sd_pad_id(path: Path, tokenizer, tokenizer_config: dict | None = None) -> int:
    """The pad token's id: special_tokens_map.json, else tokenizer_config.json (given if already read)."""
    for rel in ("tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json"):
        if rel == "tokenizer/tokenizer_config.json" and tokenizer_config is not None:
            data = tokenizer_config
        elif (path / rel).is_file():
            data = _json(path, rel)
        else:
            continue
        pad = data.get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        if isinstance(pad, str) and tokenizer.token_to_id(pad) is not None:
            return tokenizer.token_to_id(pad)
    eos = tokenizer.token_to_id("<|endoftext|>")
    return eos if eos is not None else 0


def _open_sd_folder(path: Path, provider: str) -> Bundle:
    index = _json(path, MODEL_INDEX_NAME)  # must at least parse
    files = {}
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        if (path / role / "model.onnx").is_file():
            files[role] = f"{role}/model.onnx"
    for role in ("unet", "vae_decoder"):
        if role not in files:
            raise BundleError(f"{path}: Stable-Diffusion-style folder without {role}/model.onnx", f"{role}/model.onnx", None)
    models, chosen = _load_models(path, files, provider)
    sample_shape = models["unet"].inputs.get("sample", ("", []))[1]
    cin = _shape_dim(sample_shape, 1) or 4
    h = _shape_dim(sample_shape, 2) or 64
    w = _shape_dim(sample_shape, 3) or 64
    c = 4
    mask = MaskSpec("inpaint") if cin == 2 * c + 1 else None
    text = tokenizer = None
    if "text_encoder" in files:
        tok_dir = path / "tokenizer"
        if not tok_dir.is_dir():
            raise BundleError(f"{path}: text_encoder/ without tokenizer/", "tokenizer", None)
        try:
            tokenizer = load_tokenizer(tok_dir)
        except Exception as exc:
            raise BundleError(f"tokenizer: cannot build the tokenizer ({exc})", "tokenizer", None) from None
        files["tokenizer"] = "tokenizer"
        max_length = 77
        tok_config = None
        if (path / "tokenizer/tokenizer_config.json").is_file():
            tok_config = _json(path, "tokenizer/tokenizer_config.json")
            value = tok_config.get("model_max_length")
            if isinstance(value, int) and 0 < value <= 4096:
                max_length = value
        out = models["text_encoder"].outputs
        hidden_shape = out.get("last_hidden_state", next(iter(out.values())))[1]
        text = TextSpec(max_length, _shape_dim(hidden_shape, 2) or 768, _sd_pad_id(path, tokenizer, tok_config))
    schedule, prediction_type, spacing = _sd_schedule(path)
    manifest = Manifest(
        name=path.name, kind="latent", image=ImageSpec(h * 8, w * 8, 3), schedule=schedule,
        prediction_type=prediction_type if prediction_type in PREDICTION_TYPES else "epsilon",
        unet=UNetSpec(cin, c), files=files, latent=LatentSpec(c, h, w, SD_SCALE_FACTOR),
        conditioning=Conditioning(text=text, mask=mask),
        defaults=Defaults(sampler="dpmpp_2m", steps=25, guidance=7.5 if text else 1.0, spacing=spacing),
        description=f"Stable-Diffusion-style ONNX folder ({index.get('_class_name', 'unknown pipeline')})",
        provenance={"source": str(path), "format": "diffusers/optimum ONNX"},
    )
    check_inputs(models, manifest)
    preview = (np.asarray(SD_PREVIEW_WEIGHT, np.float32), np.zeros(3, np.float32)) if c == 4 else None
    return Bundle(path, manifest, chosen, models, tokenizer, preview, "sd-onnx")
