"""The model bundle format: `studio.json` (docs/ARCHITECTURE.md, "The bundle manifest").

This module is the single definition of the format. Export writes bundles with `write_manifest`;
the runtime reads them with `read_manifest`. Both go through `validate_manifest`, so a bundle that
was written is a bundle that opens.

Choices written down here (the contract left them open):
- `files` maps a role to a path relative to the bundle. The roles `unet`, `vae_decoder`,
  `vae_encoder`, `text_encoder`, `tokenizer`, `preview` have meaning; any other role (for example
  an ONNX external-data file) is allowed and is hashed and path-checked like the rest.
- Required files: `unet` always; `vae_decoder` for latent models; `text_encoder` and `tokenizer` for
  text models; `vae_encoder` for latent inpainting models.
- `unet.in_channels` must equal the diffused channels (image channels for pixel models, latent
  channels for latent models) plus the condition channels (inpaint: 1 + C; semantic: K labels);
  `unet.out_channels` must equal the diffused channels.
- `defaults`, `provenance`, `description` and `precision` may be left out; defaults are filled in.
- Scheduler settings beside `schedule` and `prediction_type` (what diffusers' scheduler_config.json
  says, so an exported Stable Diffusion model samples as diffusers samples it): `clip_x0`
  (clip_sample), `steps_offset` (default 0), `set_alpha_to_one` (DDIM's end; default true);
  `defaults.spacing` is timestep_spacing. A bundle written before these fields opens as before.
- `unet.size_divisor` (optional): 2^(down-sampling blocks) of the U-Net, in x_t pixels; image sides
  are multiples of it times the VAE factor. Bundles without it: `image_size.py` derives it.
- `write_manifest` also writes `model_index.json` (the ecosystem layout marker) unless told not to.
- `providers` (optional, format version 2): the execution providers the graphs were optimised for
  and run on (`export --optimize`, int8); null = any. A bundle that has it says format_version 2,
  so a runtime from before it refuses the bundle with "update" instead of failing on a fused
  operator its provider lacks. `precision` "int8": quantised U-Net (QDQ), written by `export --int8`.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from diffusion import defaults as fallback_table
from diffusion.checks import is_int, is_number
from diffusion.forward import PREDICTION_TYPES
from diffusion.samplers import SAMPLERS
from diffusion.schedule import SCHEDULES
from diffusion.spacing import SPACINGS

from .fileio import read_json, write_json

FORMAT = "diffusion-studio-bundle"
FORMAT_VERSION = 2  # the newest this program reads; 1 unless the bundle names its providers or is int8
MANIFEST_NAME = "studio.json"
MODEL_INDEX_NAME = "model_index.json"

KINDS = ("pixel", "latent")
# PREDICTION_TYPES, SAMPLERS, SPACINGS (imported above) and SCHEDULE_NAMES are diffusion/'s names
# (numpy only, so export can still write a manifest without the runtime).
SCHEDULE_NAMES = SCHEDULES
PRECISIONS = ("fp32", "fp16", "int8")
EXECUTION_PROVIDERS = ("cpu", "cuda", "directml", "coreml", "tensorrt", "rocm", "openvino")  # the names users type
MASK_KINDS = ("inpaint", "semantic")
# Sanity bounds, checked before anything is allocated: far beyond any real model, far below what
# would exhaust memory (issue 13: num_train_timesteps 1e8 took 26 s and 4.8 GB in `info`).
MAX_IMAGE_SIDE = 8192          # pixels per side (image, latent)
MAX_CHANNELS = 4096            # image/latent/U-Net channels
MAX_TIMESTEPS = 100_000        # schedule.num_train_timesteps (SD: 1000)
MAX_TOKENS = 4096              # conditioning.text.max_length (CLIP: 77)
MAX_HIDDEN = 65536             # conditioning.text.hidden_size
MAX_CLASSES = 100_000
MAX_LABELS = 1024
MAX_NAME = 200                 # characters of a name (model, class, label)
MAX_DESCRIPTION = 2000
MAX_FILES = 1000
MAX_SIZE_DIVISOR = 1024        # unet.size_divisor (SD: 8 latent pixels)
MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few KB; evaluations and provenance keep it far below this
KNOWN_ROLES = ("unet", "vae_decoder", "vae_encoder", "text_encoder", "tokenizer", "preview")


class BundleError(ValueError):
    """A bundle that cannot be used; `file` and `field` say where (either may be None)."""

    def __init__(self, message: str, file: str | None = None, field: str | None = None):
        # one printable line whatever a bundle's keys hold (a key "\n" in sha256 broke the line)
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))
        self.file = file
        self.field = field


def _field_error(field_name: str, expected: str, got: Any, file: str = MANIFEST_NAME) -> BundleError:
    return BundleError(f"{file}: field '{field_name}' must be {expected}, got {got!r}", file, field_name)


# --------------------------------------------------------------------------------------------
# The dataclasses


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    channels: int


@dataclass(frozen=True)
class LatentSpec:
    channels: int
    height: int
    width: int
    scale_factor: float


@dataclass(frozen=True)
class TextSpec:
    max_length: int
    hidden_size: int
    pad_id: int = 0


@dataclass(frozen=True)
class ClassSpec:
    names: tuple[str, ...]

    @property
    def null_index(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Label:
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class MaskSpec:
    kind: str  # "inpaint" | "semantic"
    labels: tuple[Label, ...] = ()


@dataclass(frozen=True)
class Conditioning:
    text: TextSpec | None = None
    class_: ClassSpec | None = None
    mask: MaskSpec | None = None


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int
    out_channels: int
    size_divisor: int | None = None  # latent (x_t) pixels per side the U-Net halves down to; None: not recorded


@dataclass(frozen=True)
class Defaults:
    """The model's own sampling settings (a manifest without them gets diffusion.defaults')."""
    sampler: str = fallback_table.SAMPLER
    steps: int = fallback_table.STEPS
    guidance: float = fallback_table.GUIDANCE_UNCONDITIONAL
    spacing: str = fallback_table.SPACING


@dataclass(frozen=True)
class Manifest:
    name: str
    kind: str
    image: ImageSpec
    schedule: dict
    prediction_type: str
    unet: UNetSpec
    files: dict  # role -> relative path (posix separators)
    latent: LatentSpec | None = None
    conditioning: Conditioning = field(default_factory=Conditioning)
    defaults: Defaults = field(default_factory=Defaults)
    description: str = ""
    precision: str = "fp32"
    provenance: dict = field(default_factory=dict)
    sha256: dict = field(default_factory=dict)  # relative path -> hex digest
    format_version: int = 1
    providers: tuple[str, ...] | None = None  # the execution providers the graphs run on; None: any
    model_hash: str | None = None  # `model_hash_of` the U-Net and its external data, as written
    x0_clipping: bool | None = None  # studio.json "clip_x0"; None (older bundles): by kind, see clip_x0
    steps_offset: int = 0  # added to leading/linspace timesteps (diffusers' steps_offset; SD sets 1)
    set_alpha_to_one: bool = True  # DDIM's last step ends at ᾱ = 1 (else at ᾱ_0; SD's configs say false)

    @property
    def diffused_channels(self) -> int:
        """C of x_t: latent channels for latent models, image channels for pixel models."""
        return self.latent.channels if self.latent else self.image.channels

    @property
    def vae_factor(self) -> int:
        """Image pixels per x_t pixel along each side: image height / latent height, 1 for pixel models."""
        return self.image.height // self.latent.height if self.latent else 1

    @property
    def clip_x0(self) -> bool:
        """Whether samplers clamp the predicted x̂_0 to [-1, 1] (diffusers' clip_sample): pixel models only.

        A pixel model's x_0 lives in [-1, 1]; without the clamp an epsilon model at a timestep whose
        ᾱ_t is ~0 (cosine schedule, "trailing" spacing) divides its error by sqrt(ᾱ_t) and the image
        saturates. Latent values are not bounded to [-1, 1], so latent models are never clipped.
        studio.json records it as "clip_x0" (export writes it, so a third party samples the model
        right); a bundle without the field gets the rule by kind.
        """
        if self.x0_clipping is not None:
            return self.x0_clipping
        return self.latent is None  # a pixel model (validation ties kind "pixel" to latent None)

    @property
    def version_needed(self) -> int:
        """The format version this manifest is written with: 2 once it names providers or is int8."""
        return max(self.format_version, 2 if self.providers is not None or self.precision == "int8" else 1)

    def to_dict(self) -> dict:
        """The JSON document, in the field order of docs/ARCHITECTURE.md."""
        c = self.conditioning
        mask = None
        if c.mask is not None:
            mask = {"kind": c.mask.kind}
            if c.mask.kind == "semantic":
                mask["labels"] = [{"name": l.name, "color": list(l.color)} for l in c.mask.labels]
        return {
            "format": FORMAT,
            "format_version": self.version_needed,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
            "image": asdict(self.image),
            "latent": asdict(self.latent) if self.latent else None,
            "schedule": dict(self.schedule),
            "prediction_type": self.prediction_type,
            "clip_x0": self.clip_x0,
            "steps_offset": self.steps_offset,
            "set_alpha_to_one": self.set_alpha_to_one,
            "conditioning": {
                "text": asdict(c.text) if c.text else None,
                "class": {"names": list(c.class_.names)} if c.class_ else None,
                "mask": mask,
            },
            "files": dict(self.files),
            "unet": {k: v for k, v in asdict(self.unet).items() if v is not None},
            "defaults": asdict(self.defaults),
            "precision": self.precision,
            "providers": list(self.providers) if self.providers is not None else None,
            "provenance": dict(self.provenance),
            "sha256": dict(self.sha256),
            **({"model_hash": self.model_hash} if self.model_hash else {}),
        }


# --------------------------------------------------------------------------------------------
# Validation


def _get(d: dict, key: str, prefix: str, required: bool = True, default: Any = None) -> Any:
    if key not in d:
        if required:
            raise BundleError(f"{MANIFEST_NAME}: required field '{prefix}{key}' is missing", MANIFEST_NAME, prefix + key)
        return default
    return d[key]


def _obj(value: Any, name: str) -> dict:
    if not isinstance(value, dict):
        raise _field_error(name, "an object", value)
    return value


def _pos_int(value: Any, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if not is_int(value) or value < minimum or \
            (maximum is not None and value > maximum):
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        if maximum is not None:
            what = f"an integer from {minimum} to {maximum}"
        raise _field_error(name, what, _short(value))
    return value


def _short(value: Any) -> Any:
    """A value for a message: long ones cut to 60 characters of their repr."""
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


def _number(value: Any, name: str, lo: float | None = None, hi: float | None = None, open_lo: bool = False) -> float:
    ok = is_number(value) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        if lo is not None and hi is not None:
            what = f"a number in {'(' if open_lo else '['}{lo}, {hi}]"
        elif lo is not None:
            what = f"a number {'>' if open_lo else '>='} {lo}"
        else:
            what = "a finite number"
        raise _field_error(name, what, value)
    return float(value)


def _choice(value: Any, name: str, choices: tuple) -> str:
    if value not in choices:
        raise _field_error(name, "one of " + ", ".join(repr(c) for c in choices), value)
    return value


def _string(value: Any, name: str, nonempty: bool = True, maximum: int = MAX_NAME) -> str:
    """Printable text (no control characters: a name is printed in terminals and shown in the app)."""
    ok = isinstance(value, str) and len(value) <= maximum and all(ch.isprintable() for ch in value)
    if not ok or (nonempty and not value.strip()):
        what = f"{'non-empty ' if nonempty else ''}printable text of at most {maximum} characters"
        raise _field_error(name, what, _short(value))
    return value


def check_relative_path(rel: Any, field_name: str, bundle_dir: Path | None) -> str:
    """A file name that stays inside the bundle: relative, no `..`, no symlink leading outside."""
    if not isinstance(rel, str) or not rel:
        raise _field_error(field_name, "a relative file name inside the bundle", rel)
    if PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive \
            or rel.startswith(("/", "\\")):
        raise _field_error(field_name, "a relative file name inside the bundle, not an absolute path", rel)
    parts = rel.replace("\\", "/").split("/")
    if ".." in parts:
        raise _field_error(field_name, "a file name inside the bundle, without '..'", rel)
    if bundle_dir is not None:
        root = Path(bundle_dir).resolve()
        target = (root / rel).resolve()
        if root != target and root not in target.parents:
            raise _field_error(field_name, "a file inside the bundle (it links to outside it)", rel)
    return rel


def _validate_schedule(s: Any) -> dict:
    s = _obj(s, "schedule")
    name = _choice(_get(s, "name", "schedule."), "schedule.name", SCHEDULE_NAMES)
    out = {"name": name, "num_train_timesteps": _pos_int(_get(s, "num_train_timesteps", "schedule."),
                                                         "schedule.num_train_timesteps", 2, MAX_TIMESTEPS)}
    for key, default in (("beta_start", 1e-4), ("beta_end", 0.02)):
        out[key] = _number(s.get(key, default), f"schedule.{key}", 0.0, 1.0, open_lo=True)
    if out["beta_end"] < out["beta_start"]:
        raise _field_error("schedule.beta_end", f"at least beta_start ({out['beta_start']})", out["beta_end"])
    out["cosine_s"] = _number(s.get("cosine_s", 0.008), "schedule.cosine_s", 0.0, 1.0)
    return out


def _validate_conditioning(c: Any) -> Conditioning:
    if c is None:
        return Conditioning()
    c = _obj(c, "conditioning")
    text = cls = mask = None
    if c.get("text") is not None:
        t = _obj(c["text"], "conditioning.text")
        text = TextSpec(
            max_length=_pos_int(_get(t, "max_length", "conditioning.text."), "conditioning.text.max_length",
                                maximum=MAX_TOKENS),
            hidden_size=_pos_int(_get(t, "hidden_size", "conditioning.text."), "conditioning.text.hidden_size",
                                 maximum=MAX_HIDDEN),
            pad_id=_pos_int(t.get("pad_id", 0), "conditioning.text.pad_id", 0),
        )
    if c.get("class") is not None:
        k = _obj(c["class"], "conditioning.class")
        names = _get(k, "names", "conditioning.class.")
        if not isinstance(names, list) or not 0 < len(names) <= MAX_CLASSES:
            raise _field_error("conditioning.class.names", f"a list of 1 to {MAX_CLASSES} names", _short(names))
        for i, n in enumerate(names):
            _string(n, f"conditioning.class.names[{i}]")
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise _field_error("conditioning.class.names", "a list of distinct names", f"repeated {dup}")
        cls = ClassSpec(tuple(names))
    if c.get("mask") is not None:
        m = _obj(c["mask"], "conditioning.mask")
        kind = _choice(_get(m, "kind", "conditioning.mask."), "conditioning.mask.kind", MASK_KINDS)
        labels: list[Label] = []
        if kind == "semantic":
            raw = _get(m, "labels", "conditioning.mask.")
            if not isinstance(raw, list) or not 0 < len(raw) <= MAX_LABELS:
                raise _field_error("conditioning.mask.labels", f"a list of 1 to {MAX_LABELS} {{name, color}}",
                                   _short(raw))
            for i, lab in enumerate(raw):
                where = f"conditioning.mask.labels[{i}]"
                lab = _obj(lab, where)
                name = _string(_get(lab, "name", where + "."), where + ".name")
                color = lab.get("color")
                if (not isinstance(color, list) or len(color) != 3
                        or not all(is_int(v) and 0 <= v <= 255 for v in color)):
                    raise _field_error(where + ".color", "[r, g, b] with integers 0..255", color)
                labels.append(Label(name, tuple(color)))
        mask = MaskSpec(kind, tuple(labels))
    return Conditioning(text, cls, mask)


def validate_manifest(data: Any, bundle_dir: str | os.PathLike | None = None) -> Manifest:
    """Check a parsed studio.json and build the Manifest; raise BundleError naming the field.

    With `bundle_dir`, also check that every listed file exists inside the bundle. Hashes are not
    checked here (that reads every file): see `verify_hashes`. Fields are checked in the order below,
    so the first bad one is the one named.
    """
    d = _obj(data, "(top level)")
    version = _validate_format(d)
    name = _string(_get(d, "name", ""), "name")
    description = _string(d.get("description") or "", "description", nonempty=False, maximum=MAX_DESCRIPTION)
    kind = _choice(_get(d, "kind", ""), "kind", KINDS)
    image = _validate_image(d)
    latent = _validate_latent(d, kind, image)
    schedule = _validate_schedule(_get(d, "schedule", ""))
    prediction_type = _choice(_get(d, "prediction_type", ""), "prediction_type", PREDICTION_TYPES)
    conditioning = _validate_conditioning(d.get("conditioning"))
    unet = _validate_unet(d, latent.channels if latent else image.channels, conditioning)
    files = _validate_files(d, kind, conditioning, bundle_dir)
    defaults = _validate_defaults(d, schedule, conditioning)
    precision = _choice(d.get("precision", "fp32"), "precision", PRECISIONS)
    providers = _validate_providers(d.get("providers"))
    clip_x0, steps_offset, set_alpha_to_one = _validate_scheduler_settings(d, schedule)
    provenance = _obj(d.get("provenance") or {}, "provenance")
    sha, model_hash = _validate_hashes(d)
    return Manifest(
        name=name, kind=kind, image=image, schedule=schedule, prediction_type=prediction_type, unet=unet,
        files=files, latent=latent, conditioning=conditioning, defaults=defaults, description=description,
        precision=precision, provenance=dict(provenance), sha256=sha, format_version=version, providers=providers,
        model_hash=model_hash, x0_clipping=clip_x0, steps_offset=steps_offset, set_alpha_to_one=set_alpha_to_one,
    )


def _validate_scheduler_settings(d: dict, schedule: dict) -> tuple[bool | None, int, bool]:
    """`clip_x0` (optional), `steps_offset` (default 0) and `set_alpha_to_one` (default true)."""
    clip_x0 = d.get("clip_x0")
    if clip_x0 is not None and not isinstance(clip_x0, bool):
        raise _field_error("clip_x0", "true or false", clip_x0)
    steps_offset = _pos_int(d.get("steps_offset", 0), "steps_offset", 0, schedule["num_train_timesteps"] - 1)
    set_alpha_to_one = d.get("set_alpha_to_one", True)
    if not isinstance(set_alpha_to_one, bool):
        raise _field_error("set_alpha_to_one", "true or false", set_alpha_to_one)
    return clip_x0, steps_offset, set_alpha_to_one


def _validate_format(d: dict) -> int:
    """`format` is ours and `format_version` one this program reads; the version."""
    if d.get("format") != FORMAT:
        raise _field_error("format", repr(FORMAT), d.get("format"))
    version = d.get("format_version")
    if not is_int(version):
        raise _field_error("format_version", "an integer", version)
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{MANIFEST_NAME}: field 'format_version' is {version}, newer than this program reads ({FORMAT_VERSION}); "
            "update Diffusion Studio", MANIFEST_NAME, "format_version")
    if version < 1:
        raise _field_error("format_version", f"between 1 and {FORMAT_VERSION}", version)
    return version


def _validate_image(d: dict) -> ImageSpec:
    im = _obj(_get(d, "image", ""), "image")
    image = ImageSpec(
        height=_pos_int(_get(im, "height", "image."), "image.height", maximum=MAX_IMAGE_SIDE),
        width=_pos_int(_get(im, "width", "image."), "image.width", maximum=MAX_IMAGE_SIDE),
        channels=_pos_int(_get(im, "channels", "image."), "image.channels", maximum=MAX_CHANNELS),
    )
    if image.channels not in (1, 3):
        raise _field_error("image.channels", "1 or 3", image.channels)
    return image


def _validate_latent(d: dict, kind: str, image: ImageSpec) -> LatentSpec | None:
    """A latent model's `latent` (the image divided by one factor, RGB images); null for pixel models."""
    if kind != "latent":
        if d.get("latent") is not None:
            raise _field_error("latent", "null for a pixel model", d.get("latent"))
        return None
    la = _obj(_get(d, "latent", ""), "latent")
    latent = LatentSpec(
        channels=_pos_int(_get(la, "channels", "latent."), "latent.channels", maximum=MAX_CHANNELS),
        height=_pos_int(_get(la, "height", "latent."), "latent.height", maximum=MAX_IMAGE_SIDE),
        width=_pos_int(_get(la, "width", "latent."), "latent.width", maximum=MAX_IMAGE_SIDE),
        scale_factor=_number(_get(la, "scale_factor", "latent."), "latent.scale_factor", 0.0, open_lo=True),
    )
    if image.height % latent.height or image.width % latent.width or \
            image.height // latent.height != image.width // latent.width:
        raise _field_error("latent.height", f"a divisor of image.height ({image.height}) with the same factor "
                           f"for the width ({image.width})", f"{latent.height}x{latent.width}")
    if image.channels != 3:
        raise _field_error("image.channels", "3 for latent models (the VAE decodes RGB)", image.channels)
    return latent


def _validate_unet(d: dict, c: int, conditioning: Conditioning) -> UNetSpec:
    """`unet` channels: the c diffused channels plus the condition channels in, c out."""
    un = _obj(_get(d, "unet", ""), "unet")
    divisor = un.get("size_divisor")
    if divisor is not None and (_pos_int(divisor, "unet.size_divisor", maximum=MAX_SIZE_DIVISOR) & (divisor - 1)):
        raise _field_error("unet.size_divisor", "a power of two (2^(down-sampling blocks))", divisor)
    unet = UNetSpec(
        in_channels=_pos_int(_get(un, "in_channels", "unet."), "unet.in_channels", maximum=MAX_CHANNELS),
        out_channels=_pos_int(_get(un, "out_channels", "unet."), "unet.out_channels", maximum=MAX_CHANNELS),
        size_divisor=divisor,
    )
    extra = 0
    if conditioning.mask is not None:
        extra = 1 + c if conditioning.mask.kind == "inpaint" else len(conditioning.mask.labels)
    if unet.in_channels != c + extra:
        how = f"{c} diffused" + (f" + {extra} condition" if extra else "")
        raise _field_error("unet.in_channels", f"{c + extra} ({how} channels)", unet.in_channels)
    if unet.out_channels != c:
        raise _field_error("unet.out_channels", f"{c} (the diffused channels)", unet.out_channels)
    return unet


def _validate_files(d: dict, kind: str, conditioning: Conditioning, bundle_dir) -> dict[str, str]:
    """`files`: relative paths inside the bundle, every role the model needs, each present (with bundle_dir)."""
    files_raw = _obj(_get(d, "files", ""), "files")
    if len(files_raw) > MAX_FILES:
        raise _field_error("files", f"at most {MAX_FILES} files", len(files_raw))
    files: dict[str, str] = {}
    for role, rel in files_raw.items():
        files[role] = check_relative_path(rel, f"files.{role}", bundle_dir)
    required = ["unet"]
    if kind == "latent":
        required.append("vae_decoder")
    if conditioning.text:
        required += ["text_encoder", "tokenizer"]
    if kind == "latent" and conditioning.mask is not None and conditioning.mask.kind == "inpaint":
        required.append("vae_encoder")
    for role in required:
        if role not in files:
            raise BundleError(f"{MANIFEST_NAME}: required field 'files.{role}' is missing "
                              f"(a {kind} model{' with text' if role in ('text_encoder', 'tokenizer') else ''} needs it)",
                              MANIFEST_NAME, f"files.{role}")
    if bundle_dir is not None:
        for role, rel in files.items():
            if not _is_file(Path(bundle_dir) / rel):
                raise BundleError(f"{rel}: file listed in {MANIFEST_NAME} (files.{role}) is missing from the bundle",
                                  rel, f"files.{role}")
    return files


def _is_file(path: Path) -> bool:
    """Path.is_file, with a name the file system refuses (too long, say) counted as no file."""
    try:
        return path.is_file()
    except OSError:
        return False


def _validate_defaults(d: dict, schedule: dict, conditioning: Conditioning) -> Defaults:
    """`defaults`, each missing entry from diffusion.defaults' fallback table."""
    de = _obj(d.get("defaults") or {}, "defaults")
    conditional = bool(conditioning.text or conditioning.class_ or (conditioning.mask and conditioning.mask.kind == "semantic"))
    fallback = Defaults(**fallback_table.fallback_defaults(conditional=conditional,
                                                           num_train_timesteps=schedule["num_train_timesteps"]))
    defaults = Defaults(
        sampler=_choice(de.get("sampler", fallback.sampler), "defaults.sampler", SAMPLERS),
        steps=_pos_int(de.get("steps", fallback.steps), "defaults.steps"),
        guidance=_number(de.get("guidance", fallback.guidance), "defaults.guidance", 0.0, 100.0),
        spacing=_choice(de.get("spacing", fallback.spacing), "defaults.spacing", SPACINGS),
    )
    if defaults.steps > schedule["num_train_timesteps"]:
        raise _field_error("defaults.steps", f"at most num_train_timesteps ({schedule['num_train_timesteps']})", defaults.steps)
    return defaults


def _validate_providers(providers: Any) -> tuple | None:
    """`providers`: null, or distinct execution-provider names the bundle's graphs were made for."""
    if providers is not None and (not isinstance(providers, list) or not providers
                                  or not all(isinstance(p, str) and p in EXECUTION_PROVIDERS for p in providers)
                                  or len(set(providers)) != len(providers)):
        raise _field_error("providers", "null or a list of distinct provider names from "
                           + ", ".join(EXECUTION_PROVIDERS), providers)
    return tuple(providers) if providers is not None else None


def _validate_hashes(d: dict) -> tuple[dict, str | None]:
    """`sha256` (relative path -> hex digest, lower-cased) and `model_hash`."""
    sha = _obj(d.get("sha256") or {}, "sha256")
    if len(sha) > MAX_FILES:
        raise _field_error("sha256", f"at most {MAX_FILES} entries", len(sha))
    model_hash = d.get("model_hash")
    if model_hash is not None and not _is_digest(model_hash):
        raise _field_error("model_hash", "64 hexadecimal digits", _short(model_hash))
    for rel, digest in sha.items():
        check_relative_path(rel, f"sha256.{rel}", None)
        if not _is_digest(digest):
            raise _field_error(f"sha256.{rel}", "64 hexadecimal digits", _short(digest))
    return {k: v.lower() for k, v in sha.items()}, (model_hash.lower() if model_hash else None)


def _is_digest(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value.lower())


# --------------------------------------------------------------------------------------------
# Files


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_hashes(manifest: Manifest, bundle_dir: str | os.PathLike) -> None:
    """Every listed file has a sha256 entry, and every file with an entry matches it; BundleError
    naming the file otherwise."""
    for role, rel in manifest.files.items():
        if rel not in manifest.sha256:
            raise BundleError(f"{MANIFEST_NAME}: field 'sha256.{rel}' is missing (every file in 'files' needs a hash)",
                              MANIFEST_NAME, f"sha256.{rel}")
    for rel, expected in manifest.sha256.items():
        path = Path(bundle_dir) / rel
        if not path.is_file():
            raise BundleError(f"{rel}: file hashed in {MANIFEST_NAME} is missing from the bundle", rel, f"sha256.{rel}")
        got = sha256_file(path)
        if got != expected:
            raise BundleError(
                f"{rel}: contents do not match the sha256 in {MANIFEST_NAME} (expected {expected[:12]}..., "
                f"got {got[:12]}...); the file is damaged or was changed after export", rel, f"sha256.{rel}")


def model_hash_of(digests: dict[str, str], unet: str) -> str:
    """A model's identity in recipes: the sha256 of its U-Net file (`unet`, a key of `digests`) when
    that file holds all its weights; when the U-Net keeps weights in external-data files (the
    other keys), the sha256 of the lines "<digest>  <path>" of all of them, sorted by path, so a
    change to any weight changes the identity."""
    if set(digests) == {unet}:
        return digests[unet]
    lines = "".join(f"{digests[rel]}  {rel}\n" for rel in sorted(digests))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def onnx_external_data(bundle_dir: str | os.PathLike, rel: str, field_name: str | None = None) -> list[str]:
    """The external-data files the ONNX file `rel` makes ONNX Runtime read, as paths relative to the
    bundle; BundleError for a location outside the bundle or a file that is not ONNX."""
    from .onnxinfo import OnnxFormatError, external_data_files

    try:
        locations = external_data_files(Path(bundle_dir) / rel)
    except (OnnxFormatError, OSError) as exc:
        raise BundleError(f"{rel}: not a valid ONNX model ({exc})", rel, field_name) from None
    folder = PurePosixPath(rel).parent
    out = []
    for location in locations:
        joined = (folder / location.replace("\\", "/")).as_posix()
        check_relative_path(joined, f"{rel} external data", Path(bundle_dir))
        out.append(PurePosixPath(os.path.normpath(joined)).as_posix())
    return out


def read_manifest(bundle_dir: str | os.PathLike) -> Manifest:
    """Parse and validate `bundle_dir/studio.json` (hashes are checked by `verify_hashes`)."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path}: not a model bundle ({MANIFEST_NAME} is missing)", MANIFEST_NAME, None)
    try:
        data = read_json(path, max_bytes=MAX_MANIFEST_BYTES, what=MANIFEST_NAME)
    except OSError as exc:
        raise BundleError(f"{MANIFEST_NAME}: cannot be read ({exc.strerror or exc})", MANIFEST_NAME, None) from None
    except ValueError as exc:
        raise BundleError(str(exc), MANIFEST_NAME, None) from None
    return validate_manifest(data, bundle_dir)


def write_manifest(bundle_dir: str | os.PathLike, manifest: Manifest, model_index: bool = True) -> Manifest:
    """Hash every file of the bundle folder, record the model hash, validate, and write studio.json
    atomically; return the hashed Manifest. Also writes model_index.json (see `model_index_dict`)
    unless `model_index=False`. (Every file is hashed, so a file that is not the bundle's, e.g. one
    a user put there, is recognised as such.)
    """
    bundle_dir = Path(bundle_dir)
    for role, rel in manifest.files.items():
        check_relative_path(rel, f"files.{role}", bundle_dir)
        if not (bundle_dir / rel).is_file():
            raise BundleError(f"{rel}: file listed in files.{role} does not exist in {bundle_dir}", rel, f"files.{role}")
    every = {p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()}
    every -= {MANIFEST_NAME, MODEL_INDEX_NAME}
    sha = {rel: sha256_file(bundle_dir / rel) for rel in sorted(every | set(manifest.files.values()))}
    unet = manifest.files["unet"]
    external = onnx_external_data(bundle_dir, unet)
    hashed = replace(manifest, sha256=sha, model_hash=model_hash_of({r: sha[r] for r in [unet, *external]}, unet))
    data = hashed.to_dict()
    validated = validate_manifest(data, bundle_dir)  # what we write is what we read
    write_json(bundle_dir / MANIFEST_NAME, data)
    if model_index:
        write_model_index(bundle_dir, validated)
    return validated


def model_index_dict(manifest: Manifest) -> dict:
    """model_index.json in the diffusers ONNX pipeline layout: one entry per ONNX component."""
    index: dict[str, Any] = {
        "_class_name": "DiffusionStudioPipeline",
        "_diffusion_studio_manifest": MANIFEST_NAME,
        "_diffusion_studio_format_version": manifest.version_needed,
    }
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        if role in manifest.files:
            index[role] = ["diffusers", "OnnxRuntimeModel"]
    if "tokenizer" in manifest.files:
        index["tokenizer"] = ["tokenizers", "Tokenizer"]
    return index


def write_model_index(bundle_dir: str | os.PathLike, manifest: Manifest) -> None:
    write_json(Path(bundle_dir) / MODEL_INDEX_NAME, model_index_dict(manifest))


def manifest_from_dict(data: dict) -> Manifest:
    """Build a Manifest from a dict without touching the disk (for writers building one up)."""
    return validate_manifest(data, None)
