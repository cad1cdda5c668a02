"""Where things live: bundled models (read-only, in the install) and the user's folders (platformdirs).

`DIFFUSION_STUDIO_HOME`, when set, replaces the platformdirs data folder (tests and portable installs).
Nothing is ever written into the install folder.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from .manifest import MANIFEST_NAME, MODEL_INDEX_NAME

APP = "diffusion-studio"


def bundled_models_dir() -> Path:
    """assets/models of the repository / install (the default models that ship with the app)."""
    return Path(__file__).resolve().parents[2] / "assets" / "models"


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
    return path.is_dir() and ((path / MANIFEST_NAME).is_file() or (path / MODEL_INDEX_NAME).is_file())


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
    if p.is_dir():
        return p
    name = str(name_or_path)
    if os.sep not in name and "/" not in name:
        for root in (bundled_models_dir(), user_models_dir()):
            if (root / name).is_dir():
                return root / name
        for folder in list_models():  # a recipe names the model by its manifest name
            if _manifest_name(folder) == name:
                return folder
    known = ", ".join(sorted(m.name for m in list_models())) or "none installed"
    raise FileNotFoundError(f"no model '{name}' (not a folder, and not in {bundled_models_dir()} or "
                            f"{user_models_dir()}; known models: {known})")


def _manifest_name(folder: Path) -> str | None:
    try:
        return json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return None
