"""The generation pipeline (docs/ARCHITECTURE.md, "The generation pipeline"): request -> conditioning -> x_T -> sampler over the U-Net -> images.

    x_T ~ N(0, I) per image from seed + i  ->  diffusion.samplers.sample(...)  ->  decode  ->  uint8 RGB

- Classifier-free guidance is one batched U-Net call per step (`diffusion.guidance.cfg_denoiser`):
  the unconditional half is the empty prompt (or the negative prompt, which replaces it), the null
  class, or the all-zero one-hot. A model with nothing to drop (unconditional, inpaint-only, a class
  model without a class, a semantic model without labels) runs one unguided call per step.
- Random numbers (`diffusion.noise.BatchRNG`, one generator per image, image i uses seed + i):
  stream 0 draws x_T, stream 1 the sampler's noise, stream 2 the inpainting hook's, stream 3
  img2img's. So an image depends on its own seed only, never on the batch size.
- img2img (`init_image` + `strength` < 1): as diffusers' img2img pipelines, the sampler runs the
  last min(int(strength * steps), steps) steps of its grid (at least one; an LCM takes its own
  strength rule), starting from the init latent noised to the first of them
  (`diffusion.grid.Grid.truncate` / `Grid.start`); σ-based samplers start at that σ.
- Inpainting (`mask` with `init_image`; mask 1 = generate, 0 = keep): models whose manifest says
  mask kind "inpaint" get the channels [x_t, mask, masked (encoded)] (docs/ARCHITECTURE.md; without
  an init image: mask 1 and the encoded all-zero image, as in training); every
  model gets `diffusion.inpaint.inpaint_hook`; and the final uint8 image is blended in pixel space,
  round(m * generated + (1 - m) * init), so pixels with m = 0 equal the init image exactly (latent
  models too). Before that, `seamless` (the default) Poisson-blends the generated region into the
  kept pixels (gradients kept, no colour jump at the border). Masks are quantised to 1/65535 (what
  a 16-bit PNG recipe stores) so a recipe reproduces the image exactly.
- Previews: a pixel model's predicted x̂_0 is the preview; a latent model's x̂_0 goes through the
  bundle's preview (the linear latent -> RGB map, or a tiny learned decoder), upsampled bilinearly
  to the image size (desktop/runtime/preview.py); the VAE decoder runs once, at the end. When
  inpainting, the preview shows the init image where the
  mask keeps it (blended like the final composite).
- Forks (`fork` = {"parent": the parent's request dict, "step": k}): one pass of the root's sampler
  over the root's grid, each step driven by the segment of the chain that owns it (its conditioning,
  guidance, noise and inpainting hook; desktop/runtime/fork.py, docs/FORKS.md), so a fork replays
  exactly from its recipe and a fork that changes nothing equals its parent.
- `cancel()` is checked before every network call (text encoder, VAE encoder, every U-Net call,
  every VAE decode); a cancelled generation raises `diffusion.Cancelled` and returns nothing.

Choices: a prompt given to a model without text conditioning is ignored, with a note in
`GenerationResult.warnings` (the app keeps the prompt box filled when switching models); a class,
labels or mask the model cannot use is a `RequestError`. height/width default to the model's size;
other sizes need a U-Net exported with dynamic spatial axes and a multiple of the VAE's factor.
"""
from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, Callable

import numpy as np
from PIL import Image

from diffusion.checks import is_int, is_number
from diffusion.condition import mask_to_size, masked_image, one_hot_labels
from diffusion.guidance import cfg_denoiser
from diffusion.inpaint import inpaint_hook, poisson_blend
from diffusion.noise import BatchRNG
from diffusion.samplers import SAMPLERS, Cancelled, sample, sampler_grid, sampler_spec, samplers_for_model
from diffusion.spacing import SPACINGS

from .bundle import FLOATS as FLOAT_TYPES
from .bundle import Bundle
from .fork import ForkError, StepSwitch, check_structure, fork_chain, shared
from .image_size import check_size
from .manifest import MAX_IMAGE_SIDE
from .preview import latent_preview, to_uint8
from .sd_folder import guidance_embedding

__all__ = ["GenerationRequest", "GenerationResult", "RequestError", "StepInfo", "generate", "Cancelled"]


MAX_SIZE_SCALE = 4  # a side at most 4x the model's own (a 16x16 model is not asked for 2048x2048)


class RequestError(ValueError):
    """A request the model cannot run; the message says which field and what was expected."""


# --------------------------------------------------------------------------------------------
# Arrays <-> base64 PNG (how requests store their images in JSON)


def array_to_b64png(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a)).save(buf, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def b64png_to_array(s: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(s))) as im:
        return np.array(im)


def _mask_to_json(m: np.ndarray) -> dict:
    return {"png16": array_to_b64png(np.round(np.asarray(m, np.float64) * 65535).astype(np.uint16))}


def _labels_to_json(a: np.ndarray) -> dict:
    a = np.asarray(a)
    return {"png": array_to_b64png(a.astype(np.uint8 if a.max(initial=0) < 256 else np.uint16))}


# --------------------------------------------------------------------------------------------
# Request, step info, result


@dataclass
class GenerationRequest:
    """What to generate. None means "the model's default" (sampler, steps, guidance, spacing, size).

    `init_image`: HxWx3 (or HxW) uint8 array or an image path; `strength` in (0, 1] for img2img.
    `mask`: HxW float in [0, 1] (1 = generate, 0 = keep), uint8 (0..255) or a path; needs init_image.
    `labels`: HxW int label map (index into the model's labels), or a path (palette PNG, or colours).
    `model`: the model's name, informational (recipes carry it; generate ignores it).
    `seamless`: inpainting only: Poisson-blend the generated region into the kept pixels
    (`diffusion.inpaint.poisson_blend`) before the final composite, so the mask's border leaves no seam.
    `fork`: {"parent": the parent's request as a dict (its own `fork` included), "step": k}: follow the
    parent for its first k steps, then go on with this request (docs/FORKS.md).
    """

    prompt: str = ""
    negative_prompt: str = ""
    class_name: str | None = None
    class_index: int | None = None
    init_image: Any = None
    strength: float = 1.0
    mask: Any = None
    labels: Any = None
    sampler: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    batch_size: int = 1
    height: int | None = None
    width: int | None = None
    spacing: str | None = None
    model: str | None = None
    seamless: bool = True
    fork: dict | None = None

    def to_dict(self) -> dict:
        """JSON-ready: arrays become base64 PNGs ({"png": ...}, masks {"png16": ...}), paths stay strings."""
        d: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, os.PathLike):
                v = os.fspath(v)
            if isinstance(v, np.ndarray):
                if f.name == "mask":
                    v = _mask_to_json(_as_mask_array(v))
                elif f.name == "labels":
                    v = _labels_to_json(v)
                else:
                    v = {"png": array_to_b64png(v)}
            elif isinstance(v, np.generic):
                v = v.item()
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GenerationRequest:
        known = {f.name for f in fields(cls)}
        kw = {}
        for k, v in d.items():
            if k not in known:
                continue  # newer recipes may carry more
            if isinstance(v, dict) and "png16" in v:
                v = b64png_to_array(v["png16"]).astype(np.float64) / 65535.0
            elif isinstance(v, dict) and "png" in v:
                v = b64png_to_array(v["png"])
                if k == "labels":
                    v = v.astype(np.int64)
            kw[k] = v
        return cls(**kw)


@dataclass
class StepInfo:
    """One sampler step as the caller of `generate` sees it. The preview is rendered on first use:
    a caller that shows only some steps (the app, a few a second) pays only for those."""
    step: int  # steps done, 1..steps
    steps: int
    t: int  # the timestep just evaluated
    x_t: np.ndarray  # [B, C, h, w] float32, the sampler's state after this step
    render: Callable[[], list] = field(repr=False)  # -> the preview, computed afresh

    @cached_property
    def preview(self) -> list:
        """One HxWx3 uint8 array per image: x̂_0 through the bundle's preview (rendered once)."""
        return self.render()


@dataclass
class GenerationResult:
    images: list  # HxWx3 uint8 arrays
    request: GenerationRequest  # resolved: every default filled in, images loaded as arrays
    seeds: list
    provider: str
    timings: dict  # seconds: encode, sample, decode, total
    model_name: str
    model_hash: str
    precision: str = "fp32"
    unet_calls: int = 0
    warnings: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Inputs


def _load_image(value, what: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image input as an array: a path is opened (header first: a file of another size than
    `size` = (height, width), or one too large to decode, is refused before its pixels are read).
    16-bit images keep their range (init images scaled to 8 bits, not clipped to white); a mask
    drawn in the alpha channel (uniform colour, varying opacity) is read from its alpha."""
    if not isinstance(value, (str, os.PathLike)):
        return np.asarray(value)
    try:
        with Image.open(value) as im:
            if size is not None and (im.height, im.width) != tuple(size):
                raise RequestError(f"{what} is {im.width}x{im.height} but the output is {size[1]}x{size[0]} "
                                   "(width x height); resize it first")
            return _pixels(im, what)
    except Image.DecompressionBombError as exc:
        raise RequestError(f"{what}: '{value}' is too large to use ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, RequestError):
            raise
        raise RequestError(f"{what}: cannot read image '{value}' ({exc})") from None


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I")


def _pixels(im: Image.Image, what: str) -> np.ndarray:
    """The decoded array of an opened image, as `_load_image` describes."""
    if what == "labels" and im.mode in ("P", "L", *SIXTEEN_BIT):
        return np.array(im)
    if what == "mask":
        if im.mode in SIXTEEN_BIT:
            return np.array(im)
        if "A" in im.getbands() or (im.mode == "P" and "transparency" in im.info):
            rgba = np.array(im.convert("RGBA"))
            if (rgba[..., :3] == rgba[:1, :1, :3]).all():  # one colour everywhere: the mask is the opacity
                return rgba[..., 3]
        return np.array(im.convert("L"))
    if im.mode in SIXTEEN_BIT:  # a 16-bit picture: 0..65535 -> 0..255 (convert("RGB") clips it to white)
        grey = np.round(np.array(im, np.float64) / 257.0).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    return np.array(im.convert("RGB"))


def _as_mask_array(m: np.ndarray) -> np.ndarray:
    """A mask as float64 in [0, 1] on the 1/65535 grid (uint8 /255, uint16 /65535, floats as given)."""
    m = np.asarray(m)
    if m.ndim == 3 and m.shape[2] in (1, 3, 4):
        m = m[..., 0]
    if m.dtype == np.uint8:
        m = m / 255.0
    elif m.dtype == np.uint16 or (m.dtype.kind in "iu" and m.max(initial=0) > 255):
        m = m / 65535.0
    elif m.dtype == bool:
        m = m.astype(np.float64)
    m = np.asarray(m, np.float64)
    if m.ndim != 2:
        raise RequestError(f"mask must be a 2-D HxW array, got shape {m.shape}")
    if not np.isfinite(m).all() or m.min(initial=0) < 0 or m.max(initial=0) > 1:
        raise RequestError("mask values must be in [0, 1] (1 = generate, 0 = keep)")
    return np.round(m * 65535) / 65535


def _as_rgb(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise RequestError(f"{what} must be an HxWx3 image, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise RequestError(f"{what} must be uint8 (0..255), got dtype {a.dtype}")
    return np.ascontiguousarray(a[..., :3])


def _labels_from(value, bundle: Bundle, size: tuple[int, int] | None = None) -> np.ndarray:
    a = _load_image(value, "labels", size)
    labels = bundle.manifest.conditioning.mask.labels
    if a.ndim == 3:  # colours -> indices by the manifest's label colours
        rgb = a[..., :3].astype(np.int64)
        out = np.full(rgb.shape[:2], -1, np.int64)
        for i, lab in enumerate(labels):
            out[(rgb == np.asarray(lab.color)).all(axis=2)] = i
        if (out < 0).any():
            y, x = np.argwhere(out < 0)[0]
            raise RequestError(f"labels: colour {tuple(int(v) for v in rgb[y, x])} at ({x}, {y}) is not one of the "
                               f"model's label colours {[lab.color for lab in labels]}")
        return out
    if a.dtype.kind not in "iu":
        raise RequestError(f"labels must be an integer label map, got dtype {a.dtype}")
    return a.astype(np.int64)


def _from_uint8(rgb: np.ndarray, channels: int) -> np.ndarray:
    """HxWx3 uint8 -> [1, C, H, W] float32 in [-1, 1] (grey by PIL's 'L' conversion for C = 1)."""
    if channels == 1:
        rgb = np.array(Image.fromarray(rgb).convert("L"))[..., None]
    return (np.transpose(rgb, (2, 0, 1))[None].astype(np.float32) / 127.5 - 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------
# Resolving a request against a model


def resolve_request(bundle: Bundle, request: GenerationRequest) -> tuple[GenerationRequest, list]:
    """Fill in defaults, load images, check everything against the model; (resolved, warnings)."""
    r = replace(request)
    r.model = bundle.manifest.name
    warnings: list[str] = []
    _resolve_settings(bundle, r)
    _resolve_size(bundle, r)
    if (r.prompt or r.negative_prompt) and not bundle.manifest.conditioning.text:
        warnings.append("this model takes no text: the prompt was ignored")
        r.prompt, r.negative_prompt = "", ""
    _resolve_class(bundle, r)
    _resolve_pictures(bundle, r)
    return r, warnings


def _resolve_settings(bundle: Bundle, r: GenerationRequest) -> None:
    """Sampler, spacing, steps, guidance, seed, batch size, seamless: the model's defaults filled in, checked."""
    m = bundle.manifest
    d = m.defaults
    r.sampler = r.sampler or d.sampler
    r.steps = d.steps if r.steps is None else r.steps
    r.guidance = d.guidance if r.guidance is None else r.guidance
    r.spacing = r.spacing or d.spacing
    if r.sampler not in SAMPLERS:
        raise RequestError(f"sampler must be one of {', '.join(SAMPLERS)}, got {r.sampler!r}")
    if r.sampler not in samplers_for_model(lcm=bundle.is_lcm):
        raise RequestError(f"the {sampler_spec(r.sampler).label} sampler is for latent consistency models only, "
                           f"and {m.name} is not one; choose another sampler")
    if r.spacing not in SPACINGS:
        raise RequestError(f"spacing must be one of {', '.join(SPACINGS)}, got {r.spacing!r}")
    T = m.schedule["num_train_timesteps"]
    if not is_int(r.steps) or not 1 <= r.steps <= T:
        raise RequestError(f"steps must be an integer from 1 to {T}, got {r.steps!r}")
    if not is_number(r.guidance) or not 0 <= r.guidance <= 100:
        raise RequestError(f"guidance must be a number from 0 to 100, got {r.guidance!r}")
    if not is_int(r.seed) or not 0 <= r.seed < 2**63:
        raise RequestError(f"seed must be a non-negative integer, got {r.seed!r}")
    if isinstance(r.batch_size, (int, np.integer)) and r.seed + r.batch_size > 2**63:  # every image's seed replays
        raise RequestError(f"seed + batch size must be at most 2^63 (image i uses seed + i), got seed {r.seed} "
                           f"with {r.batch_size} images")
    if not is_int(r.batch_size) or not 1 <= r.batch_size <= 64:
        raise RequestError(f"batch_size must be an integer from 1 to 64, got {r.batch_size!r}")
    if not isinstance(r.seamless, (bool, np.bool_)):
        raise RequestError(f"seamless must be true or false, got {r.seamless!r}")
    r.steps, r.seed, r.batch_size, r.guidance = int(r.steps), int(r.seed), int(r.batch_size), float(r.guidance)


def _resolve_size(bundle: Bundle, r: GenerationRequest) -> None:
    """height and width: the model's size by default; multiples of the VAE factor, at most
    MAX_SIZE_SCALE x the model's own size, then what image_size.size_options allows and what
    memory.check_fits says fits in this machine's memory (checked before anything is allocated)."""
    m = bundle.manifest
    factor = m.vae_factor
    r.height = m.image.height if r.height is None else r.height
    r.width = m.image.width if r.width is None else r.width
    for name, own in (("height", m.image.height), ("width", m.image.width)):
        v = getattr(r, name)
        if not is_int(v) or v < factor or v % factor:
            raise RequestError(f"{name} must be a positive multiple of {factor}, got {v!r}")
        largest = min(MAX_IMAGE_SIDE, MAX_SIZE_SCALE * own)
        if v > largest:  # refused before anything is allocated
            raise RequestError(f"{name} {v} is too large for this model: at most {largest} "
                               f"({MAX_SIZE_SCALE}x the {own} pixels it was made for)")
    guided = r.guidance != 1.0 and bool(m.conditioning.text or m.conditioning.class_ or m.conditioning.mask)
    try:
        check_size(bundle, r.height, r.width, batch=r.batch_size, guided=guided)
    except ValueError as exc:
        raise RequestError(str(exc)) from None


def _resolve_class(bundle: Bundle, r: GenerationRequest) -> None:
    """class_name and class_index agree, and name one of the model's classes (or both stay None)."""
    c = bundle.manifest.conditioning
    if r.class_name is None and r.class_index is None:
        return
    if not c.class_:
        raise RequestError(f"this model takes no class (got class {r.class_name or r.class_index!r})")
    names = c.class_.names
    if r.class_name is not None:
        if r.class_name not in names:
            raise RequestError(f"class {r.class_name!r} is not one of this model's classes: {', '.join(names)}")
        index = names.index(r.class_name)
        if r.class_index is not None and r.class_index != index:
            raise RequestError(f"class_name {r.class_name!r} is class {index}, but class_index says {r.class_index}")
        r.class_index = index
    elif not is_int(r.class_index) \
            or not 0 <= r.class_index < len(names):
        raise RequestError(f"class_index must be from 0 to {len(names) - 1}, got {r.class_index!r}")
    r.class_index = int(r.class_index)
    r.class_name = names[r.class_index]


def _resolve_pictures(bundle: Bundle, r: GenerationRequest) -> None:
    """init_image, strength, mask and labels loaded as arrays and checked against the output size."""
    m = bundle.manifest
    size = (r.height, r.width)
    if r.init_image is not None:
        r.init_image = _as_rgb(_load_image(r.init_image, "init_image", size), "init_image")
        if r.init_image.shape[:2] != size:
            raise RequestError(f"init_image is {r.init_image.shape[1]}x{r.init_image.shape[0]} but the output is "
                               f"{r.width}x{r.height} (width x height); resize it first")
        if m.latent and bundle.vae_encoder is None:
            raise RequestError("this latent model has no VAE encoder (vae_encoder), so it cannot start from an image")
    if not is_number(r.strength) or not 0 < r.strength <= 1:
        raise RequestError(f"strength must be a number in (0, 1], got {r.strength!r}")
    r.strength = float(r.strength)
    if r.mask is not None:
        if r.init_image is None:
            raise RequestError("a mask needs an init_image (the picture whose unmasked part is kept)")
        r.mask = _as_mask_array(_load_image(r.mask, "mask", size))
        if r.mask.shape != size:
            raise RequestError(f"mask is {r.mask.shape[1]}x{r.mask.shape[0]} but the image is {r.width}x{r.height} "
                               "(width x height)")
    if r.labels is not None:
        _resolve_labels(bundle, r)


def _resolve_labels(bundle: Bundle, r: GenerationRequest) -> None:
    c = bundle.manifest.conditioning
    if not (c.mask and c.mask.kind == "semantic"):
        raise RequestError("this model takes no label map (it is not a semantic-map model)")
    r.labels = _labels_from(r.labels, bundle, (r.height, r.width))
    if r.labels.shape != (r.height, r.width):
        raise RequestError(f"labels are {r.labels.shape[1] if r.labels.ndim > 1 else '?'}x{r.labels.shape[0]} "
                           f"but the image is {r.width}x{r.height} (width x height)")
    K = len(c.mask.labels)
    if r.labels.min() < 0 or r.labels.max() >= K:
        raise RequestError(f"labels must be label indices from 0 to {K - 1}, got {r.labels.min()}..{r.labels.max()}")


# --------------------------------------------------------------------------------------------
# Generation, in stages: resolve -> encode inputs -> encode conditioning -> prepare the start ->
# denoise -> decode -> composite. Each stage is a function of what the ones before it made.


@dataclass
class EncodedInputs:
    """The request's pictures, ready for the model (what `encode_inputs` makes)."""

    pixels: np.ndarray | None  # the init image, [1, C, H, W] float32 in [-1, 1]
    known_x0: np.ndarray | None  # the init image in the diffused space (scaled latent for latent models)
    mask: np.ndarray | None  # [H, W] float32, 1 = generate, 0 = keep
    mask_small: np.ndarray | None  # the mask at the U-Net's size


@dataclass
class Conditioning:
    """The U-Net's extra inputs for one image: `cond` and its unconditional counterpart `uncond`.

    Keys are U-Net inputs ("encoder_hidden_states", "class_labels") and "concat" (the channels
    appended after x_t). `droppable`: the request gives something guidance can drop (a prompt, a
    class, a label map); without it there is nothing to guide and the U-Net runs once per step.
    """

    cond: dict
    uncond: dict
    droppable: bool


@dataclass
class Start:
    """Where the sampler starts (what `prepare_start` makes)."""

    x_T: np.ndarray  # [B, C, h, w] float32
    grid: Any  # the sampler's diffusion.grid.Grid (its img2img part for img2img)
    known: np.ndarray | None  # the encoded init image per batch item, float64 (img2img's start, the inpaint hook)
    hook: Callable | None  # the inpainting hook, run after every step


def unet_model(bundle: Bundle) -> Callable:
    """The U-Net session as `model(x, t, **cond)`; cond's "concat" is appended after x's channels.

    A fractional timestep (diffusers' Euler on linspace spacing) reaches a U-Net whose timestep input
    is a float as it is; one that takes integers (our bundles, some exports) gets the nearest whole
    timestep (docs/ARCHITECTURE.md, "Conventions every package shares")."""
    takes_float = bundle.unet.inputs["timestep"][0] in FLOAT_TYPES

    def model(x, t, concat=None, **cond):
        sample_in = x if concat is None else np.concatenate([x, np.asarray(concat, x.dtype)], axis=1)
        t = np.asarray(t)
        if t.dtype.kind != "f":
            t = t.astype(np.int64)
        elif not takes_float:
            t = np.rint(t).astype(np.int64)
        feeds = {"sample": sample_in, "timestep": t, **cond}
        return bundle.unet.run(feeds, output="out_sample")
    return model


def _check_cancel(cancel, step: int, steps: int) -> None:
    if cancel is not None and cancel():
        raise Cancelled(step, steps)


def _diffused_size(bundle: Bundle, r: GenerationRequest) -> tuple[int, int]:
    factor = bundle.manifest.vae_factor
    return r.height // factor, r.width // factor


def encode_image(bundle: Bundle, pixels: np.ndarray, *, cancel=None, steps: int = 0) -> np.ndarray:
    """Pixels [B, C, H, W] in [-1, 1] -> the diffused space: E(x).mean * scale_factor, or x for pixel models."""
    m = bundle.manifest
    if not m.latent:
        return pixels
    _check_cancel(cancel, 0, steps)
    return bundle.encode_latent(pixels) * m.latent.scale_factor


def encode_inputs(bundle: Bundle, r: GenerationRequest, *, cancel=None) -> EncodedInputs:
    """The init image in pixels and in the diffused space, the mask at full and at the U-Net's size."""
    pixels = known_x0 = None
    if r.init_image is not None:
        pixels = _from_uint8(r.init_image, bundle.manifest.image.channels)
        known_x0 = encode_image(bundle, pixels, cancel=cancel, steps=r.steps)
    mask = mask_small = None
    if r.mask is not None:
        mask = r.mask.astype(np.float32)
        mask_small = mask_to_size(mask, *_diffused_size(bundle, r))
    return EncodedInputs(pixels=pixels, known_x0=known_x0, mask=mask, mask_small=mask_small)


def _inpaint_channels(bundle: Bundle, r: GenerationRequest, inputs: EncodedInputs, *, cancel=None) -> list:
    """[mask, masked image (encoded)] at the U-Net's size, as in training (docs/ARCHITECTURE.md)."""
    m = bundle.manifest
    if r.init_image is None:  # nothing to keep: generate everywhere; the masked image is all zeros
        m_full = np.ones((r.height, r.width), np.float32)
        kept = np.zeros((1, m.image.channels, r.height, r.width), np.float32)
    else:
        m_full = inputs.mask if inputs.mask is not None else np.ones(r.init_image.shape[:2], np.float32)
        kept = masked_image(inputs.pixels, m_full)
    # through the VAE encoder for latent models (an all-zero image is not an all-zero latent)
    kept = encode_image(bundle, kept, cancel=cancel, steps=r.steps)
    return [mask_to_size(m_full, *_diffused_size(bundle, r)), kept.astype(np.float32)]


def encode_conditioning(bundle: Bundle, r: GenerationRequest, inputs: EncodedInputs, *,
                        cancel=None) -> Conditioning:
    """cond and uncond for one image, from a resolved request: the one place conditioning is assembled.

    Unconditional: the negative prompt (empty by default), the null class, the all-zero one-hot;
    inpainting channels are the same in both halves (never dropped).
    """
    spec = bundle.manifest.conditioning
    cond: dict[str, np.ndarray] = {}
    uncond: dict[str, np.ndarray] = {}
    droppable = False
    if spec.text:
        _check_cancel(cancel, 0, r.steps)
        states = bundle.text.encode([r.negative_prompt, r.prompt])
        uncond["encoder_hidden_states"], cond["encoder_hidden_states"] = states[:1], states[1:]
        droppable = True
    if spec.class_:
        null = spec.class_.null_index
        uncond["class_labels"] = np.full(1, null, np.int64)
        cond["class_labels"] = np.full(1, null if r.class_index is None else r.class_index, np.int64)
        droppable = droppable or r.class_index is not None
    concat_c, concat_u = [], []
    if spec.mask and spec.mask.kind == "inpaint":
        channels = _inpaint_channels(bundle, r, inputs, cancel=cancel)
        concat_c += channels
        concat_u += channels
    if spec.mask and spec.mask.kind == "semantic":
        K = len(spec.mask.labels)
        h, w = _diffused_size(bundle, r)
        zeros = np.zeros((1, K, h, w), np.float32)
        concat_c.append(one_hot_labels(r.labels, K, h, w) if r.labels is not None else zeros)
        concat_u.append(zeros)
        droppable = droppable or r.labels is not None
    if concat_c:
        cond["concat"] = np.concatenate(concat_c, axis=1)
        uncond["concat"] = np.concatenate(concat_u, axis=1)
    if bundle.sd is not None and bundle.sd.timestep_cond_dim:  # an LCM: guidance is an input, one call per step
        cond["timestep_cond"] = guidance_embedding(r.guidance - 1.0, bundle.sd.timestep_cond_dim, 1)
        droppable = False
    return Conditioning(cond=cond, uncond=uncond, droppable=droppable)


def guided_denoiser(bundle: Bundle, conditioning: Conditioning, *, guidance: float, batch: int) -> Callable:
    """denoiser(x, t): classifier-free guided (one batched U-Net call) when there is something to drop
    and guidance != 1, else the plain conditional U-Net."""
    model = unet_model(bundle)
    if conditioning.droppable and guidance != 1.0:
        return cfg_denoiser(model, conditioning.cond, conditioning.uncond, guidance)
    fixed = {k: np.repeat(v, batch, axis=0) for k, v in conditioning.cond.items()}

    def denoiser(x, t):
        return model(x, t, **fixed)
    return denoiser


def prepare_start(bundle: Bundle, r: GenerationRequest, inputs: EncodedInputs, seeds: list, *,
                  x_T: np.ndarray | None = None, noise: np.ndarray | None = None) -> Start:
    """The sampler's grid, built once, and its start: x_T ~ N(0, I) (stream 0), or for img2img the init
    image noised to the grid's first level (stream 3); and the inpainting hook (stream 2).

    `x_T` (the standard normal start, before the grid's scaling: diffusers' `latents=`) and `noise`
    (img2img's) given as [B, C, h, w] replace the draws; the parity tests pass the reference
    pipelines' arrays. An SD inpainting U-Net (9 channels) gets no hook: it sees the kept region
    through its channels and, as in diffusers, is not blended each step (the final composite still
    keeps every black pixel exactly)."""
    m = bundle.manifest
    shape = (m.diffused_channels, *_diffused_size(bundle, r))
    img2img = inputs.known_x0 is not None and r.strength < 1.0
    try:
        grid = sampler_grid(r.sampler, bundle.schedule, steps=r.steps, spacing=r.spacing, steps_offset=m.steps_offset,
                            set_alpha_to_one=m.set_alpha_to_one, strength=r.strength if img2img else 1.0)
    except ValueError as exc:  # e.g. more steps than an LCM's distillation grid has
        raise RequestError(f"sampler {r.sampler}: {exc}") from None
    known = None
    if inputs.known_x0 is not None and (r.strength < 1.0 or inputs.mask_small is not None):
        known = np.repeat(inputs.known_x0, len(seeds), axis=0).astype(np.float64)
    if img2img:
        drawn = BatchRNG(seeds, stream=3).randn(shape) if noise is None else np.asarray(noise, np.float32)
        x_T = grid.start(drawn, known).astype(np.float32)
    else:
        drawn = BatchRNG(seeds, stream=0).randn(shape) if x_T is None else np.asarray(x_T, np.float32)
        x_T = grid.start(drawn).astype(np.float32)
    hook = None
    sd_inpainting = bundle.sd is not None and m.conditioning.mask is not None
    if inputs.known_x0 is not None and inputs.mask_small is not None and not sd_inpainting:
        hook = inpaint_hook(bundle.schedule, known, inputs.mask_small, BatchRNG(seeds, stream=2))
    return Start(x_T=x_T, grid=grid, known=known, hook=hook)


def inpaint_composite(r: GenerationRequest, inputs: EncodedInputs) -> Callable | None:
    """uint8 image -> round(m * generated + (1 - m) * init), the kept pixels exact; None without a mask.

    The one inpainting composite, for the previews and for the final image.
    """
    if inputs.mask is None:
        return None
    keep = r.init_image.astype(np.float64)
    m_pix = inputs.mask.astype(np.float64)[..., None]

    def composite(im: np.ndarray) -> np.ndarray:
        return np.clip(np.round(m_pix * im + (1 - m_pix) * keep), 0, 255).astype(np.uint8)
    return composite


def preview_callback(bundle: Bundle, on_step: Callable[[StepInfo], None], composite: Callable | None) -> Callable:
    """The sampler's callback: a StepInfo whose preview renders x̂_0 as uint8 images on demand (a latent
    model's through the bundle's preview decoder or linear map)."""
    m = bundle.manifest

    def callback(info: dict) -> None:
        x0 = info["x0"]  # the sampler's own copy: it is not touched again

        def render() -> list:
            rgb = latent_preview(x0, bundle.preview, m.vae_factor) if m.latent else x0
            previews = list(to_uint8(rgb))
            if composite is not None:  # the kept pixels as they will be, the prediction inside the mask
                previews = [composite(p) for p in previews]
            return previews
        on_step(StepInfo(step=info["step"], steps=info["steps"], t=info["t"], x_t=info["x"], render=render))
    return callback


def denoise(bundle: Bundle, r: GenerationRequest, denoiser: Callable, start: Start, seeds: list, *,
            callback: Callable | None = None, cancel=None, rng=None) -> np.ndarray:
    """The sampler loop from x_T to x_0 (`rng`, by default stream 1 of the seeds, for the sampler's noise).

    Pixel models clip the predicted x0 to [-1, 1] (Manifest.clip_x0 says why; SD folders: their
    scheduler config's clip_sample, which sd_folder puts in the manifest). Without a callback the sampler makes no per-step float32 copies.
    """
    return sample(r.sampler, denoiser, start.x_T, start.grid, prediction_type=bundle.manifest.prediction_type,
                  rng=BatchRNG(seeds, stream=1) if rng is None else rng, callback=callback, cancel=cancel,
                  hook=start.hook, clip_x0=bundle.manifest.clip_x0)


@dataclass
class Run:
    """What the sampler loop needs besides the request: its denoiser, start, noise and, for a fork,
    the step switch whose callback counts the steps."""

    denoiser: Callable
    start: Start
    rng: Any = None                 # None: stream 1 of the seeds
    switch: StepSwitch | None = None


def prepare_run(bundle: Bundle, r: GenerationRequest, inputs: EncodedInputs, seeds: list, *, cancel=None) -> Run:
    """The conditioning, the guided denoiser and the start of a run (of a fork: `fork_run`)."""
    if r.fork is not None:
        return fork_run(bundle, r, inputs, seeds, cancel=cancel)
    conditioning = encode_conditioning(bundle, r, inputs, cancel=cancel)
    denoiser = guided_denoiser(bundle, conditioning, guidance=r.guidance, batch=r.batch_size)
    return Run(denoiser, prepare_start(bundle, r, inputs, seeds))


def fork_run(bundle: Bundle, r: GenerationRequest, inputs: EncodedInputs, seeds: list, *, cancel=None) -> Run:
    """A fork's run: the root's start and grid; per segment of the chain its denoiser, its inpainting
    hook and its noise (segments of equal seeds share their generators), switched step by step."""
    try:
        segments = fork_chain(r, GenerationRequest.from_dict)
    except ForkError as exc:
        raise RequestError(str(exc)) from None
    requests = [resolve_request(bundle, s.request)[0] for s in segments[:-1]] + [r]
    seed_lists = [[q.seed] * len(seeds) for q in requests[:-1]] + [list(seeds)]
    encoded = [encode_inputs(bundle, q, cancel=cancel) for q in requests[:-1]] + [inputs]
    start = prepare_start(bundle, requests[0], encoded[0], seed_lists[0])
    try:
        for q, segment in zip(requests[1:], segments[1:]):
            check_structure(requests[0], q, start.grid.steps, segment.start)
    except ForkError as exc:
        raise RequestError(str(exc)) from None
    switch = StepSwitch([s.start for s in segments])
    denoisers = [guided_denoiser(bundle, encode_conditioning(bundle, q, e, cancel=cancel), guidance=q.guidance,
                                 batch=len(seeds)) for q, e in zip(requests, encoded)]
    hook_noise = shared(lambda s: BatchRNG(list(s), stream=2), seed_lists)
    hooks = [None if e.known_x0 is None or e.mask_small is None else
             inpaint_hook(bundle.schedule, np.repeat(e.known_x0, len(seeds), axis=0).astype(np.float64), e.mask_small, n)
             for e, n in zip(encoded, hook_noise)]
    return Run(switch.denoiser(denoisers), replace(start, hook=switch.hook(hooks)),
               switch.rng(shared(lambda s: BatchRNG(list(s), stream=1), seed_lists)), switch)


# Providers whose VAE decode gives every image the same bits at any batch size (ONNX Runtime's CPU
# kernels reduce in an order that does not depend on the batch; tests/runtime/test_batch_decode.py
# checks it on the shipped models). Others (cuDNN picks its algorithms per shape) decode one image
# at a time.
BATCH_DECODE_PROVIDERS = ("CPUExecutionProvider",)
DECODE_BATCH_PIXELS = 256 * 256  # images per VAE call: as many as fit in one 256x256 image's pixels


def decode(bundle: Bundle, x: np.ndarray, *, cancel=None, steps: int = 0) -> list:
    """x_0 -> uint8 HxWx3 images. Latent models decode in as few VAE calls as the provider allows
    without an image depending on the batch (BATCH_DECODE_PROVIDERS; at most DECODE_BATCH_PIXELS
    pixels per call, so memory stays that of one large image), checking `cancel` before each call."""
    m = bundle.manifest
    if m.latent:
        chunk = 1
        if bundle.provider in BATCH_DECODE_PROVIDERS:
            chunk = max(1, DECODE_BATCH_PIXELS // (x.shape[2] * x.shape[3] * m.vae_factor ** 2))
        decoded = []
        for i in range(0, len(x), chunk):
            _check_cancel(cancel, steps, steps)
            decoded.append(bundle.vae_decoder.run({"latent_sample": x[i:i + chunk] / m.latent.scale_factor},
                                                  output="sample"))
        x = np.concatenate(decoded)
    return list(to_uint8(x))


def composite_images(images: list, r: GenerationRequest, inputs: EncodedInputs, composite: Callable | None) -> list:
    """Inpainting's final images: Poisson-blended first when `seamless`, then the composite."""
    if composite is None:
        return images
    keep = r.init_image.astype(np.float64)
    return [composite(poisson_blend(im, keep, inputs.mask) if r.seamless else im) for im in images]


def generate(bundle: Bundle, request: GenerationRequest, on_step: Callable[[StepInfo], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> GenerationResult:
    """Run one request; see the module docstring. Raises RequestError, diffusion.Cancelled, NonFiniteError."""
    t_start = time.perf_counter()
    r, warnings = resolve_request(bundle, request)
    seeds = [r.seed + i for i in range(r.batch_size)]
    calls_before = bundle.unet.calls
    inputs = encode_inputs(bundle, r, cancel=cancel)
    run = prepare_run(bundle, r, inputs, seeds, cancel=cancel)
    t_encoded = time.perf_counter()
    composite = inpaint_composite(r, inputs)
    callback = preview_callback(bundle, on_step, composite) if on_step is not None else None
    if run.switch is not None:
        callback = run.switch.callback(callback)   # counts the steps, to switch segments
    x = denoise(bundle, r, run.denoiser, run.start, seeds, callback=callback, cancel=cancel, rng=run.rng)
    t_sampled = time.perf_counter()
    images = composite_images(decode(bundle, x, cancel=cancel, steps=run.start.grid.steps), r, inputs, composite)
    t_done = time.perf_counter()
    m = bundle.manifest
    return GenerationResult(
        images=images, request=r, seeds=seeds, provider=bundle.provider,
        timings={"encode": t_encoded - t_start, "sample": t_sampled - t_encoded, "decode": t_done - t_sampled,
                 "total": t_done - t_start},
        model_name=m.name, model_hash=bundle.model_hash, precision=m.precision,
        unet_calls=bundle.unet.calls - calls_before, warnings=warnings,
    )
