"""Opening a model bundle: manifest, hashes, ONNX Runtime sessions, tokenizer, preview map.

`open_bundle(path, provider="auto")` accepts
- a Diffusion Studio bundle (a folder with studio.json): the manifest is validated, every file's
  sha256 is checked, and
- a Stable-Diffusion-family ONNX folder as optimum (old and new) and diffusers' legacy export lay it
  out (model_index.json, unet/, text_encoder/, vae_decoder/, vae_encoder/, tokenizer/,
  scheduler/scheduler_config.json): `sd_folder.py` infers the Manifest from the configs and the
  sessions. Such folders carry no hashes, so none are checked.

Sessions are created eagerly, when the bundle opens: a damaged or mismatched ONNX file is reported
at open time (a BundleError naming the file), never half-way through a generation. Each session's
input names and dtypes are read from the session and checked against what the manifest says the
model takes; inputs are cast to the dtype the session declares (so fp16 graphs and float timesteps
work), and a scalar (0-d) input gets a scalar: a [B] array whose entries are all equal (the
samplers' timestep) is passed as its one value.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from diffusion.schedule import schedule_from_dict

from . import device, memory, providers
from . import sd_folder
from .bundle_checks import (
    check_external_data, check_fixed_dims, check_model_hash, check_not_a_stripped_bundle, fixed_dim,
    probe_class_embeddings,
)
from .manifest import (
    MANIFEST_NAME, MODEL_INDEX_NAME, BundleError, Manifest, model_hash_of, onnx_external_data, read_manifest,
    sha256_file, verify_hashes,
)
from .onnxinfo import OnnxFormatError, downsampling_count
from .preview import read_preview
from .text import TextEncoder, load_tokenizer

DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32,
}
FLOATS = ("tensor(float)", "tensor(float16)", "tensor(double)")
# A session called once per image or per batch (every role but the U-Net) gives its CPU memory arena
# back after each run: at 512x512 the VAE decoder's arena otherwise keeps 1-2 GiB for the rest of
# the process (measured: 2.44 GiB held after two decodes, 0.43 with shrinkage, same speed). The
# U-Net, called every step, keeps its arena.
SHRINK_AFTER_RUN = ort.RunOptions()
SHRINK_AFTER_RUN.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
INTS = ("tensor(int64)", "tensor(int32)")


@dataclass
class OnnxModel:
    """One ONNX Runtime session plus what it declares: inputs/outputs as name -> (type, shape)."""

    role: str
    file: str  # path relative to the bundle, for messages
    session: ort.InferenceSession
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    calls: int = 0
    path: Path | None = None  # the ONNX file (CUDA graphs build a second session from it)
    runner: device.DeviceRunner | None = None  # IOBinding on a GPU (device.py); None: session.run

    def __post_init__(self):
        self.inputs = {i.name: (i.type, list(i.shape)) for i in self.session.get_inputs()}
        self.outputs = {o.name: (o.type, list(o.shape)) for o in self.session.get_outputs()}
        where = device.device_of(self.session)
        if where is not None and self.runner is None:
            self.runner = device.DeviceRunner(self, where, cuda_graph=self.role == "unet" and self.path is not None)

    def feed(self, name: str, value) -> np.ndarray:
        """`value` in the dtype and rank input `name` declares ([B] of one value -> 0-d for a scalar input)."""
        kind, shape = self.inputs[name]
        a = np.asarray(value, dtype=DTYPES.get(kind, None))
        if len(shape) == 0 and a.ndim == 1:
            if a.size < 1 or (a != a[0]).any():
                raise ValueError(f"{self.file}: input '{name}' is a scalar, so every batch item needs the same value")
            return np.asarray(a[0])
        return np.ascontiguousarray(a)

    def run(self, feeds: dict, output: str | None = None) -> np.ndarray:
        """Run with inputs cast to the declared dtypes; return `output` (or the first) as float32."""
        names = list(self.outputs)
        want = output if output in self.outputs else names[0]
        self.calls += 1
        if self.runner is not None:
            result = self.runner.run(feeds, want)
        else:
            options = None if self.role == "unet" else SHRINK_AFTER_RUN
            result = self.session.run([want], {name: self.feed(name, value) for name, value in feeds.items()},
                                      options)[0]
        return result.astype(np.float32) if result.dtype != np.float32 and result.dtype.kind == "f" else result


class Bundle:
    """An opened model: `manifest`, `path`, `provider`, `unet`, `vae_decoder`, `vae_encoder`,
    `text` (TextEncoder or None), `preview` ((weight [C,3], bias [3]), a PreviewNetwork, or None), `schedule`;
    `sd` (sd_folder.SDInfo: scheduler config, size step, LCM guidance embedding) for SD folders;
    `notes`: sentences the user should see about this model (e.g. a random VAE encoder)."""

    def __init__(self, path: Path, manifest: Manifest, provider: str, models: dict, *, tokenizer, preview,
                 source: str, sd=None):
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
        self.sd = sd
        self.notes: list[str] = list(sd.notes) if sd is not None else []
        self.encoder_output = sd_folder.encoder_output(self.vae_encoder) if self.vae_encoder else None

    @cached_property
    def size_divisor(self) -> int:
        """x_t pixels per side the U-Net halves down to: the manifest's unet.size_divisor, else counted
        in the graph (onnxinfo.downsampling_count), else 1 (multiples of the VAE factor, as before)."""
        if self.manifest.unet.size_divisor is not None:
            return self.manifest.unet.size_divisor
        try:
            return 2 ** min(10, downsampling_count(self.path / self.manifest.files["unet"]))
        except (OnnxFormatError, OSError):
            return 1

    @property
    def is_lcm(self) -> bool:
        """A latent consistency model: only these take the LCM sampler (and others may not)."""
        if self.sd is not None and (self.sd.timestep_cond_dim or self.sd.scheduler.is_lcm):
            return True
        return self.manifest.defaults.sampler == "lcm"

    def encode_latent(self, pixels: np.ndarray) -> np.ndarray:
        """The VAE encoder's latent for images in [-1, 1] (unscaled): the posterior mean where the graph
        gives it (latent_mean, or the first half of optimum's latent_parameters = [mean, log-variance])."""
        z = self.vae_encoder.run({"sample": pixels}, output=self.encoder_output)
        if self.encoder_output == "latent_parameters":
            z = z[:, : z.shape[1] // 2]
        return np.ascontiguousarray(z)

    @property
    def name(self) -> str:
        return self.manifest.name

    @cached_property
    def model_hash(self) -> str:
        """The model's identity in recipes (A1111 shows its first 10 digits): `manifest.model_hash_of`
        the U-Net file and its external-data files (SD folders: `sd_folder.unet_hash`)."""
        m = self.manifest
        rel = m.files["unet"]
        if self.sd is not None:
            return sd_folder.unet_hash(self.path)
        files = [rel, *onnx_external_data(self.path, rel)]
        return model_hash_of({r: m.sha256.get(r) or sha256_file(self.path / r) for r in files}, rel)

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


def check_inputs(models: dict, m: Manifest, unet_extra: set = frozenset()) -> None:
    """Each session takes what the manifest says the model takes (names, dtypes, channel counts);
    `unet_extra`: further U-Net inputs the caller feeds (an LCM's timestep_cond)."""
    unet = models["unet"]
    _require(unet, "sample", FLOATS, "the noisy image x_t")
    _require(unet, "timestep", INTS + FLOATS, "the timestep t")
    allowed = {"sample", "timestep", *unet_extra}
    if m.conditioning.text:
        _require(unet, "encoder_hidden_states", FLOATS, "the text encoder's states, since the model takes text")
        allowed.add("encoder_hidden_states")
    if m.conditioning.class_:
        _require(unet, "class_labels", INTS, "the class index, since the model takes a class")
        allowed.add("class_labels")
    _only(unet, allowed)
    cin = fixed_dim(unet.inputs["sample"][1], 1)
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
        sd_folder.encoder_output(enc)
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
    models["unet"] = OnnxModel("unet", files["unet"], session, path=path / files["unet"])
    for role in ("vae_decoder", "vae_encoder", "text_encoder"):
        if role in files:
            s, _ = _session(path, files[role], role, chosen, sha256=hashes.get(files[role]), **kw)
            models[role] = OnnxModel(role, files[role], s, path=path / files[role])
    return models, chosen


def open_bundle(path: str | os.PathLike, provider: str = "auto", verify: bool = True) -> Bundle:
    """Open a Diffusion Studio bundle or an SD-1.x-style ONNX folder; BundleError when it is unusable.

    `verify=False` skips the sha256 check (it reads every file; the UI may skip it for a bundle it
    verified before). With provider "auto", `bundle.provider_note` is the one sentence saying why a
    better provider was not used (None when none was skipped).
    """
    bundle = _open(Path(path), provider, verify)
    if bundle.provider == providers.CUDA and not _fits_on_gpu(bundle, forced=provider not in (None, "", "auto")):
        bundle = _open(Path(path), provider, verify)  # CUDA is now marked as failed: the next provider
    if provider in (None, "", "auto"):
        allowed = bundle.manifest.providers
        bundle.provider_note = providers.fallback_note(
            bundle.provider, [providers.resolve_provider(p) for p in allowed] if allowed else None)
    return bundle


def _fits_on_gpu(bundle: Bundle, forced: bool) -> bool:
    """Whether one guided image at the model's size fits in the GPU memory left once the weights are
    loaded (memory.estimate); if not, CUDA is marked failed with the sentence that says so, or a
    forced CUDA raises ProviderError."""
    m = bundle.manifest
    est = memory.estimate(bundle, 1, m.image.height, m.image.width, guided=True)
    free = memory.available_bytes(providers.CUDA)
    if free is None or est.needed <= free:
        return True
    reason = f"has too little free memory for this model ({memory.gib(free)} free, {est.describe()})"
    if forced:
        raise providers.ProviderError(f"the GPU {reason}; use --provider cpu")
    providers.mark_failed(providers.CUDA, reason)
    return False


def _open(path: Path, provider: str, verify: bool) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"{path}: no such model folder", None, None)
    if (path / MANIFEST_NAME).is_file():
        manifest = read_manifest(path)
        if verify:
            verify_hashes(manifest, path)
        external = check_external_data(path, manifest)
        check_model_hash(manifest, external["unet"])
        models, chosen = _load_models(path, manifest.files, provider, hashes=manifest.sha256, verify=verify,
                                      allowed=manifest.providers)
        check_inputs(models, manifest)
        check_fixed_dims(models, manifest)
        probe_class_embeddings(models["unet"], manifest)
        tokenizer = None
        if manifest.conditioning.text:
            rel = manifest.files["tokenizer"]
            try:
                tokenizer = load_tokenizer(path / rel)
            except Exception as exc:
                raise BundleError(f"{rel}: not a tokenizers JSON file ({exc})", rel, "files.tokenizer") from None
        preview = read_preview(path, manifest.files["preview"], manifest.diffused_channels) \
            if "preview" in manifest.files else None
        return Bundle(path, manifest, chosen, models, tokenizer=tokenizer, preview=preview, source="studio")
    if (path / MODEL_INDEX_NAME).is_file():
        check_not_a_stripped_bundle(path, sd_folder.read_json(path, MODEL_INDEX_NAME))
        return _open_sd_folder(path, provider)
    raise BundleError(f"{path}: not a model bundle (no {MANIFEST_NAME} or {MODEL_INDEX_NAME})", None, None)


# --------------------------------------------------------------------------------------------
# Stable-Diffusion-style ONNX folders (what they mean: sd_folder.py)


def _open_sd_folder(path: Path, provider: str) -> Bundle:
    sd_folder.read_json(path, MODEL_INDEX_NAME)  # must at least parse
    files = sd_folder.onnx_files(path)
    models, chosen = _load_models(path, files, provider)
    text = tokenizer = None
    if "text_encoder" in models:
        _require(models["text_encoder"], "input_ids", INTS, "the token ids")
        text, tokenizer = sd_folder.text_spec(path, models["text_encoder"])
    manifest, info = sd_folder.sd_manifest(path, models, text=text)
    check_inputs(models, manifest, unet_extra={"timestep_cond"} if info.timestep_cond_dim else set())
    return Bundle(path, manifest, chosen, models, tokenizer=tokenizer,
                  preview=sd_folder.preview_map(manifest.latent.channels), source="sd-onnx", sd=info)
