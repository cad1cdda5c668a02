"""The recipe of an image, in its PNG text chunks.

Two chunks:
- `parameters` (tEXt), the AUTOMATIC1111 format other tools read:
      prompt
      Negative prompt: ...
      Steps: 20, Sampler: DDIM, CFG scale: 3.0, Seed: 42, Size: 64x64, Model hash: 0123456789, Model: digits
- `diffusion-studio` (zTXt): JSON {"format": "diffusion-studio-recipe", "version": 1, "request": the
  resolved GenerationRequest of *this* image (its own seed, batch_size 1; init image, mask and label
  map inline as base64 PNGs), "model": {"name", "hash"}, "provider", "precision", "versions"}.

`read_recipe(path)` prefers our chunk and falls back to parsing `parameters`. `save_png` writes
atomically and never overwrites: `stem.png`, else `stem-1.png`, `stem-2.png`, ...
"""
from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import math
import os
import platform
import re
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from diffusion.checks import is_int, is_number

from . import a1111, fileio
from .fork import MAX_FORK_DEPTH
from .manifest import MAX_IMAGE_SIDE
from .pipeline import GenerationRequest, GenerationResult
from .pngtext import PngTextError, png_size, read_png_text

CHUNK = "diffusion-studio"
A1111_CHUNK = "parameters"
RECIPE_FORMAT = "diffusion-studio-recipe"


class RecipeError(ValueError):
    """A PNG without a readable recipe."""


def versions() -> dict:
    """Versions of this app, ONNX Runtime, numpy and Python (looked up once per process)."""
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict:
    import onnxruntime
    try:
        from importlib.metadata import version
        ours = version("diffusion-studio")
    except Exception:
        ours = "unknown"
    return {"diffusion-studio": ours, "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def make_recipe(result: GenerationResult, index: int) -> dict:
    """The recipe of image `index` of a result: the request with that image's seed and batch size 1."""
    from dataclasses import replace
    request = replace(result.request, seed=result.seeds[index], batch_size=1, model=result.model_name)
    return {"format": RECIPE_FORMAT, "version": 1, "request": request.to_dict(),
            "model": {"name": result.model_name, "hash": result.model_hash},
            "provider": result.provider, "precision": result.precision, "versions": versions()}


def a1111_text(recipe: dict) -> str:
    """The A1111 `parameters` text of one of our recipes (see `desktop.runtime.a1111`)."""
    return a1111.write(recipe)


def output_stem(model_name: str, seed: int) -> str:
    """The name (without ".png") the app and `generate` give an image: "<model>-<seed>", the model's
    name with every run of characters other than letters, digits, "-" and "_" made one "-" (at most
    40 characters; "image" when nothing is left). `save_png` adds "-1", "-2", ... when it is taken."""
    name = re.sub(r"[^\w-]+", "-", str(model_name).strip()).strip("-")[:40].strip("-") or "image"
    return f"{name}-{seed}"


def save_png(image: np.ndarray, recipe: dict | None, out_dir: str | os.PathLike, stem: str) -> Path:
    """Write `image` (HxWx3 uint8) with the recipe's chunks to the first free `stem[-n].png`; its path.

    Written whole and never over an existing file (`fileio.publish_new`); a full or read-only disk
    raises OSError and leaves no file behind.
    """
    out_dir = fileio.make_dir(out_dir)
    if out_dir not in _cleaned:  # temporaries a killed writer left, once per folder and process
        fileio.clean_leftovers(out_dir)
        _cleaned.add(out_dir)
    names = (out_dir / (f"{stem}.png" if n == 0 else f"{stem}-{n}.png") for n in itertools.count())
    return fileio.publish_new(png_writer(image, recipe), names)


def write_png(path: str | os.PathLike, image: np.ndarray, recipe: dict | None) -> Path:
    """Write `image` with the recipe's chunks to `path`, replacing it (Save as…), whole or not at all."""
    return fileio.write_file(path, png_writer(image, recipe))


def png_writer(image: np.ndarray, recipe: dict | None):
    """A function that writes `image` as a PNG with the recipe's two text chunks to a binary file."""
    info = PngImagePlugin.PngInfo()
    if recipe is not None:
        info.add_text(A1111_CHUNK, a1111_text(recipe))
        info.add_text(CHUNK, json.dumps(recipe, separators=(",", ":")), zip=True)
    picture = Image.fromarray(np.ascontiguousarray(image))
    return lambda f: picture.save(f, format="PNG", pnginfo=info)


_cleaned: set[Path] = set()


class SaveError(OSError):
    """Some images of a result could not be written; `saved` lists those that were."""

    def __init__(self, saved: list[Path], total: int, out_dir: Path, cause: OSError):
        reason = cause.strerror or str(cause)
        super().__init__(cause.errno, f"saved {len(saved)} of {total} image(s) to {out_dir}; image "
                                      f"{len(saved) + 1} could not be written ({reason})")
        self.saved, self.total, self.out_dir = saved, total, out_dir

    def __str__(self) -> str:
        return self.strerror


def save_result(result: GenerationResult, out_dir: str | os.PathLike, stem: str | None = None) -> list[Path]:
    """Save every image of a result with its own recipe; stem defaults to `output_stem(model, seed)`.

    Raises SaveError (saying which were saved) when the disk is full or the folder read-only part way.
    """
    paths = []
    for i, image in enumerate(result.images):
        s = stem or output_stem(result.model_name, result.seeds[i])
        try:
            paths.append(save_png(image, make_recipe(result, i), out_dir, s))
        except OSError as exc:
            raise SaveError(paths, len(result.images), Path(out_dir), exc) from None
    return paths


def read_recipe_dict(png_path: str | os.PathLike) -> dict:
    """The recipe a PNG carries, checked: our JSON chunk, or one built from its A1111 `parameters`.

    {"format", "version", "request": fields GenerationRequest.from_dict takes (checked types;
    images only inline), "model": {"name", "hash"}, "notes": what cannot be applied, in plain
    words, "source": "diffusion-studio" or "a1111"}. The pixels are never decoded. RecipeError (one
    sentence naming the file and the field) for anything else.
    """
    where = Path(png_path).name
    try:
        text = read_png_text(png_path)
    except PngTextError as exc:
        raise RecipeError(str(exc)) from None
    if CHUNK in text:
        try:
            recipe = fileio.loads_json(text[CHUNK], f"{where}: the '{CHUNK}' chunk")
        except ValueError as exc:
            raise RecipeError(str(exc)) from None
        return check_recipe(recipe, where)
    if A1111_CHUNK in text:
        request, model, notes = a1111.to_request(a1111.parse(text[A1111_CHUNK]))
        if model["name"]:
            request["model"] = model["name"]
        notes.insert(0, "another program's seed gives a different picture here (another noise generator)")
        return {"format": RECIPE_FORMAT, "version": 1, "request": check_request(request, where), "model": model,
                "notes": notes, "source": "a1111"}
    raise RecipeError(f"{where}: no recipe in this PNG (no '{CHUNK}' or '{A1111_CHUNK}' text chunk)")


def read_recipe(png_path: str | os.PathLike) -> GenerationRequest:
    """The GenerationRequest that made a PNG (its `model` field names the model)."""
    recipe = read_recipe_dict(png_path)
    request = GenerationRequest.from_dict(recipe["request"])
    if request.model is None and recipe["model"]["name"]:
        request.model = recipe["model"]["name"]
    return request


# --------------------------------------------------------------------------------------------
# Checking a recipe (untrusted: it came in a file)

_TEXT, _NUMBER, _INT, _BOOL = "text", "a number", "an integer", "true or false"
REQUEST_FIELDS = {  # field -> (what it must be, None allowed)
    "prompt": (_TEXT, False), "negative_prompt": (_TEXT, False), "class_name": (_TEXT, True),
    "class_index": (_INT, True), "strength": (_NUMBER, False), "sampler": (_TEXT, True), "steps": (_INT, True),
    "guidance": (_NUMBER, True), "seed": (_INT, False), "batch_size": (_INT, False), "height": (_INT, True),
    "width": (_INT, True), "spacing": (_TEXT, True), "model": (_TEXT, True), "seamless": (_BOOL, False),
}
IMAGE_FIELDS = {"init_image": "png", "mask": "png16", "labels": "png"}
MAX_PROMPT = 100_000  # characters: far more than any text encoder reads
RANGES = {"height": (1, MAX_IMAGE_SIDE), "width": (1, MAX_IMAGE_SIDE), "batch_size": (1, 64), "steps": (1, 100_000),
          "seed": (0, 2**63 - 1)}  # checked before anything is allocated (a recipe of 100000x100000)


def _is(value, what: str) -> bool:
    if what == _TEXT:
        return isinstance(value, str) and len(value) <= MAX_PROMPT
    if what == _BOOL:
        return isinstance(value, bool)
    if not is_number(value):
        return False
    return isinstance(value, int) and abs(value) < 2**63 if what == _INT else math.isfinite(value)


def check_recipe(recipe, where: str) -> dict:
    """Our JSON recipe with every field checked (see `read_recipe_dict`)."""
    if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT:
        raise RecipeError(f"{where}: the '{CHUNK}' chunk is not a recipe")
    if not isinstance(recipe.get("request"), dict):
        raise RecipeError(f"{where}: recipe field 'request' must be an object, got {_shown(recipe.get('request'))}")
    model = recipe.get("model") if recipe.get("model") is not None else {}
    if not isinstance(model, dict):
        raise RecipeError(f"{where}: recipe field 'model' must be an object, got {_shown(model)}")
    for key in ("name", "hash"):
        if model.get(key) is not None and not (isinstance(model[key], str) and len(model[key]) <= 256):
            raise RecipeError(f"{where}: recipe field 'model.{key}' must be text, got {_shown(model[key])}")
    model_hash = model.get("hash")
    if model_hash is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", model_hash):
        raise RecipeError(f"{where}: recipe field 'model.hash' must be hexadecimal digits, got {_shown(model_hash)}")
    return {**recipe, "request": check_request(recipe["request"], where),
            "model": {"name": model.get("name"), "hash": model_hash.lower() if model_hash else None},
            "notes": [], "source": "diffusion-studio"}


def check_request(request: dict, where: str, *, decode_images: bool = True, depth: int = 0) -> dict:
    """The request fields of a recipe, each of the type GenerationRequest expects; images only as
    inline PNGs (a recipe never names a file to read), of a sane size, that decode (checked
    without decoding when `decode_images` is False: only their form)."""
    for key, value in request.items():
        if key in REQUEST_FIELDS:
            what, nullable = REQUEST_FIELDS[key]
            if not ((value is None and nullable) or _is(value, what)):
                raise RecipeError(f"{where}: recipe field '{key}' must be {what}"
                                  f"{' or null' if nullable else ''}, got {_shown(value)}")
            lo, hi = RANGES.get(key, (None, None))
            if value is not None and lo is not None and not lo <= value <= hi:
                raise RecipeError(f"{where}: recipe field '{key}' must be from {lo} to {hi}, got {_shown(value)}")
        elif key in IMAGE_FIELDS and value is not None:
            _check_image(key, value, request, where, decode=decode_images)
        elif key == "fork" and value is not None:
            _check_fork(value, where, decode_images=decode_images, depth=depth)
    return request


def _check_fork(fork, where: str, *, decode_images: bool, depth: int) -> None:
    """A fork's parent is a request too, checked the same way (its images inline only), to the depth
    the runtime replays (desktop/runtime/fork.py)."""
    if not (isinstance(fork, dict) and isinstance(fork.get("parent"), dict)):
        raise RecipeError(f"{where}: recipe field 'fork' must be {{\"parent\": request, \"step\": k}}, got {_shown(fork)}")
    if depth >= MAX_FORK_DEPTH:
        raise RecipeError(f"{where}: recipe field 'fork' is more than {MAX_FORK_DEPTH} forks deep")
    step = fork.get("step")
    if not is_int(step) or not 1 <= step < 100_000:
        raise RecipeError(f"{where}: recipe field 'fork.step' must be a whole number of steps, got {_shown(step)}")
    check_request(fork["parent"], f"{where} (fork parent {depth + 1})", decode_images=decode_images, depth=depth + 1)


def _check_image(key: str, value, request: dict, where: str, *, decode: bool = True) -> None:
    if isinstance(value, str):
        raise RecipeError(f"{where}: recipe field '{key}' names a file ({_shown(value)}); a recipe carries its "
                          "images inside it and never makes this program read another file")
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), str)
            and next(iter(value)) in ("png", "png16")):
        raise RecipeError(f"{where}: recipe field '{key}' must be an inline image {{\"png\": base64}}, "
                          f"got {_shown(value)}")
    if not decode:
        return
    try:
        data = base64.b64decode(next(iter(value.values())), validate=True)
        width, height = png_size(io.BytesIO(data))
    except (ValueError, PngTextError) as exc:
        raise RecipeError(f"{where}: recipe field '{key}' is not a valid inline PNG ({exc})") from None
    expected = (request.get("width"), request.get("height"))
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE) or \
            (None not in expected and (width, height) != expected):
        raise RecipeError(f"{where}: recipe field '{key}' is a {width}x{height} image, but the recipe's size is "
                          f"{expected[0]}x{expected[1]}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a damaged PNG
        raise RecipeError(f"{where}: recipe field '{key}' is not a valid inline PNG ({exc})") from None


def _shown(value) -> str:
    """A value for a message: its repr, at most 60 characters, control characters escaped."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
