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

import functools
import itertools
import json
import os
import platform
import re
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from . import fileio
from .pipeline import GenerationRequest, GenerationResult

CHUNK = "diffusion-studio"
A1111_CHUNK = "parameters"
RECIPE_FORMAT = "diffusion-studio-recipe"
SAMPLER_NAMES = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM++ 2M", "dpmpp_2m_sde": "DPM++ 2M SDE"}
SAMPLERS_BY_NAME = {"ddpm": "ddpm", "ddim": "ddim", "dpm++ 2m": "dpmpp_2m", "dpm++ 2m karras": "dpmpp_2m",
                    "dpmpp_2m": "dpmpp_2m", "dpm++ 2m sde": "dpmpp_2m_sde", "dpm++ 2m sde karras": "dpmpp_2m_sde",
                    "dpmpp_2m_sde": "dpmpp_2m_sde"}


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
    r = recipe["request"]
    parts = [f"Steps: {r['steps']}", f"Sampler: {SAMPLER_NAMES.get(r['sampler'], r['sampler'])}",
             f"CFG scale: {r['guidance']}", f"Seed: {r['seed']}", f"Size: {r['width']}x{r['height']}",
             f"Model hash: {recipe['model']['hash'][:10]}", f"Model: {recipe['model']['name']}"]
    if r.get("class_name") is not None:
        parts.append(f"Class: {_quote(r['class_name'])}")
    if r.get("init_image") is not None and r.get("strength", 1.0) < 1.0:
        parts.append(f"Denoising strength: {r['strength']}")
    lines = [r.get("prompt") or ""]
    if r.get("negative_prompt"):
        lines.append(f"Negative prompt: {r['negative_prompt']}")
    lines.append(", ".join(parts))
    return "\n".join(lines)


def _quote(s: str) -> str:
    return json.dumps(s) if ("," in s or ":" in s or '"' in s) else s


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
    """Save every image of a result with its own recipe; stem defaults to "<model>-<seed>".

    Raises SaveError (saying which were saved) when the disk is full or the folder read-only part way.
    """
    paths = []
    for i, image in enumerate(result.images):
        s = stem or f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', result.model_name)}-{result.seeds[i]}"
        try:
            paths.append(save_png(image, make_recipe(result, i), out_dir, s))
        except OSError as exc:
            raise SaveError(paths, len(result.images), Path(out_dir), exc) from None
    return paths


def read_recipe_dict(png_path: str | os.PathLike) -> dict:
    """Our JSON recipe of a PNG, or one built from its A1111 `parameters` text."""
    try:
        with Image.open(png_path) as im:
            im.load()
            text = dict(getattr(im, "text", {}) or {})
    except OSError as exc:
        raise RecipeError(f"{png_path}: cannot read the image ({exc})") from None
    if CHUNK in text:
        try:
            recipe = json.loads(text[CHUNK])
        except ValueError as exc:
            raise RecipeError(f"{png_path}: the '{CHUNK}' chunk is not valid JSON ({exc})") from None
        if recipe.get("format") != RECIPE_FORMAT or not isinstance(recipe.get("request"), dict):
            raise RecipeError(f"{png_path}: the '{CHUNK}' chunk is not a recipe")
        return recipe
    if A1111_CHUNK in text:
        request, model = parse_a1111(text[A1111_CHUNK])
        return {"format": RECIPE_FORMAT, "version": 1, "request": request, "model": model}
    raise RecipeError(f"{png_path}: no recipe in this PNG (no '{CHUNK}' or '{A1111_CHUNK}' text chunk)")


def read_recipe(png_path: str | os.PathLike) -> GenerationRequest:
    """The GenerationRequest that made a PNG (its `model` field names the model)."""
    recipe = read_recipe_dict(png_path)
    request = GenerationRequest.from_dict(recipe["request"])
    if request.model is None and recipe.get("model", {}).get("name"):
        request.model = recipe["model"]["name"]
    return request


_PARAM = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_a1111(text: str) -> tuple[dict, dict]:
    """A1111 `parameters` text -> (request dict, {"name", "hash"}); unknown keys are ignored."""
    lines = text.strip("\n").split("\n")
    params_line = ""
    if lines and re.match(r"^\s*Steps:", lines[-1]):
        params_line = lines.pop()
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative_lines if in_negative else prompt_lines).append(line)
    request: dict = {"prompt": "\n".join(prompt_lines).strip(), "negative_prompt": "\n".join(negative_lines).strip()}
    model = {"name": None, "hash": None}
    for key, value in _PARAM.findall(params_line):
        value = value.strip()
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        key = key.strip()
        try:
            if key == "Steps":
                request["steps"] = int(value)
            elif key == "Sampler":
                request["sampler"] = SAMPLERS_BY_NAME.get(value.lower())  # None: the model's default
            elif key == "CFG scale":
                request["guidance"] = float(value)
            elif key == "Seed":
                request["seed"] = int(value)
            elif key == "Size":
                w, h = value.lower().split("x")
                request["width"], request["height"] = int(w), int(h)
            elif key == "Model hash":
                model["hash"] = value
            elif key == "Model":
                model["name"] = value
                request["model"] = value
            elif key == "Class":
                request["class_name"] = value
            elif key == "Denoising strength":
                request["strength"] = float(value)
        except ValueError:
            continue  # a value we cannot read is left to the defaults
    return request, model
