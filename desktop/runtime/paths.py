"""Where things live: bundled models (read-only, in the install) and the user's folders (platformdirs).

`DIFFUSION_STUDIO_HOME`, when set, replaces the platformdirs data folder (tests and portable installs).
Nothing is ever written into the install folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from . import fileio
from .manifest import MANIFEST_NAME, MODEL_INDEX_NAME

APP = "diffusion-studio"


def bundled_models_dir() -> Path:
    """The default models that ship with the app: `assets/models` in a checkout (also an editable
    install), the package folder `desktop/default_models` in an installed wheel (docs/PACKAGING.md)."""
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent / "assets" / "models"
    return checkout if checkout.is_dir() else package / "default_models"


def user_data_dir() -> Path:
    home = os.environ.get("DIFFUSION_STUDIO_HOME")
    return Path(home) if home else Path(platformdirs.user_data_dir(APP, appauthor=False))


def user_config_dir() -> Path:
    home = os.environ.get("DIFFUSION_STUDIO_HOME")
    return Path(home) / "config" if home else Path(platformdirs.user_config_dir(APP, appauthor=False))


def user_cache_dir() -> Path:
    """Files the app can rebuild (optimised graphs): safe to delete at any time."""
    home = os.environ.get("DIFFUSION_STUDIO_HOME")
    return Path(home) / "cache" if home else Path(platformdirs.user_cache_dir(APP, appauthor=False))


def user_models_dir() -> Path:
    return user_data_dir() / "models"


def outputs_dir() -> Path:
    return user_data_dir() / "outputs"


def is_model_dir(path: Path) -> bool:
    try:
        return path.is_dir() and ((path / MANIFEST_NAME).is_file() or (path / MODEL_INDEX_NAME).is_file())
    except (OSError, ValueError):  # a name the system refuses (too long, a NUL character)
        return False


# The bundled model a new user sees first, then the others in this order (assets/models):
# landscapes makes the best first impression (mIoU 0.91 at its default sampler, issue 6).
PREFERRED_MODELS = ("landscapes", "shapes", "digits")


def list_models() -> list[Path]:
    """Every model folder in the bundled and the user's models folders (user models after bundled;
    bundled ones in PREFERRED_MODELS order, so the first is the app's default)."""
    found = []
    rank = {name: i for i, name in enumerate(PREFERRED_MODELS)}
    for root in (bundled_models_dir(), user_models_dir()):
        if root.is_dir():
            found += sorted((p for p in root.iterdir() if is_model_dir(p)),
                            key=lambda p: (rank.get(p.name, len(rank)) if root == bundled_models_dir() else 0, p.name))
    return found


def find_model(name_or_path: str | os.PathLike) -> Path:
    """A path to a model folder, or a folder name or manifest name in the bundled or user models folder.

    Raises FileNotFoundError listing the known models.
    """
    p = Path(name_or_path).expanduser()
    if _is_dir(p):
        return p
    name = str(name_or_path)
    if os.sep not in name and "/" not in name:
        for root in (bundled_models_dir(), user_models_dir()):
            if _is_dir(root / name):
                return root / name
        for folder in list_models():  # a recipe names the model by its manifest name
            if _manifest_name(folder) == name:
                return folder
    known = ", ".join(sorted(shown_name(m.name) for m in list_models())) or "none installed"
    raise FileNotFoundError(f"no model '{shown_name(name)}' (not a folder, and not in {bundled_models_dir()} or "
                            f"{user_models_dir()}; known models: {known})")


def _is_dir(path: Path) -> bool:
    """Path.is_dir, False also for names the system refuses (too long, invalid characters)."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _manifest_name(folder: Path) -> str | None:
    try:
        name = fileio.read_json(folder / MANIFEST_NAME, max_bytes=16 << 20).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


# --------------------------------------------------------------------------------------------
# Known models: bundles the user opened by path, so that their PNGs replay with --from-png alone

MAX_KNOWN = 500


def known_models_file() -> Path:
    return user_data_dir() / "known_models.json"


def known_models() -> list[Path]:
    """Folders the user opened by path that are still model folders (a damaged list reads as empty)."""
    try:
        data = fileio.read_json(known_models_file(), max_bytes=4 << 20)
    except (OSError, ValueError):
        return []
    found = [Path(p) for p in data[:MAX_KNOWN] if isinstance(p, str)] if isinstance(data, list) else []
    return [p for p in found if p.is_absolute() and is_model_dir(p)]


def remember_model(folder: str | os.PathLike) -> None:
    """Add a model folder the user named by path to the known models (newest first); best effort."""
    folder = Path(folder).resolve()
    if any(folder == root or root in folder.parents for root in (bundled_models_dir(), user_models_dir())):
        return  # installed anyway
    known = [str(folder)] + [str(p) for p in known_models() if p != folder]
    try:
        fileio.write_json(known_models_file(), known[:MAX_KNOWN])
    except OSError:
        pass  # a read-only data folder: the model still works, it is just not remembered


def installed_models() -> list[Path]:
    """Every model a recipe may name: bundled, the user's models folder, and the known models."""
    found = list_models()
    seen = {p.resolve() for p in found}
    return found + [p for p in known_models() if p.resolve() not in seen]


# --------------------------------------------------------------------------------------------
# Recipes name their model by name and hash: never by a path


class RecipeModelError(LookupError):
    """The model a recipe names is not installed; the message says what to do."""


def find_recipe_model(name: str | None, model_hash: str | None, *, exact: bool = True) -> tuple[Path, list[str]]:
    """The installed model a recipe means, and notes; RecipeModelError when there is none.

    The hash decides: the model whose U-Net hash starts with `model_hash` (A1111 writes the first 10
    digits). A name alone is used when the recipe has no hash, or when `exact` is False (another
    program's recipe: its hash is of a checkpoint file, never of our U-Net) with a note. A recipe's
    name is compared with folder and manifest names; it is never opened as a path.
    """
    models = installed_models()
    wanted = (model_hash or "").lower()
    if wanted:
        for compute in (False, True):  # our bundles record their hash; SD folders are hashed (once, cached)
            for folder in models:
                if (recorded_model_hash(folder, compute=compute) or "").startswith(wanted):
                    return folder, []
    named = [f for f in models if name and name in (f.name, _manifest_name(f))]
    shown = shown_name(name or "?")
    if named and (not wanted or not exact):
        notes = [f"model hash {wanted[:10]} is not one of the installed models; '{shown}' was found by its name"] \
            if wanted else []
        return named[0], notes
    if named:
        other = recorded_model_hash(named[0]) or "unknown"
        raise RecipeModelError(f"the recipe was made with model '{shown}' (hash {wanted[:10]}), which is not "
                               f"installed: the '{shown}' here is a different model (hash {other[:10]}); pass "
                               f"--model {shown} to use it anyway")
    known = ", ".join(sorted(shown_name(p.name) for p in models)) or "none"
    what = f"model '{shown}'" + (f" (hash {wanted[:10]})" if wanted else "")
    raise RecipeModelError(f"the recipe's {what} is not installed (installed: {known}); add it, or pass "
                           "--model NAME_OR_FOLDER")


def recorded_model_hash(folder: Path, *, compute: bool = False) -> str | None:
    """A model's hash without opening it: as its studio.json records it; for a folder without one
    (Stable-Diffusion style) None, or with `compute` its U-Net hashed once and cached in
    model_hashes.json (keyed by the U-Net files' sizes and times)."""
    try:
        data = fileio.read_json(folder / MANIFEST_NAME, max_bytes=16 << 20)
        digest = data.get("model_hash") or data["sha256"][data["files"]["unet"]]
        return digest.lower() if isinstance(digest, str) else None
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return _cached_sd_hash(folder) if compute else None


def _cached_sd_hash(folder: Path) -> str | None:
    from .sd_folder import unet_hash

    try:
        stamp = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (folder / "unet").iterdir()
                       if p.is_file())
    except OSError:
        return None
    cache_file, key = user_data_dir() / "model_hashes.json", str(folder.resolve())
    try:
        cache = fileio.read_json(cache_file, max_bytes=4 << 20)
    except (OSError, ValueError):
        cache = {}
    cache = cache if isinstance(cache, dict) else {}
    entry = cache.get(key)
    if isinstance(entry, dict) and entry.get("stamp") == [list(s) for s in stamp] and isinstance(entry.get("hash"), str):
        return entry["hash"]
    try:
        digest = unet_hash(folder)
    except OSError:
        return None
    cache[key] = {"stamp": [list(s) for s in stamp], "hash": digest}
    try:
        fileio.write_json(cache_file, dict(list(cache.items())[-MAX_KNOWN:]))
    except OSError:
        pass
    return digest


def shown_name(text: str, limit: int = 60) -> str:
    """A name from outside (a recipe, a manifest, the command line) safe to print: control characters
    (terminal escapes) replaced, at most `limit` characters."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
