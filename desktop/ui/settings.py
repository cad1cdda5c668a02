"""User settings: one JSON file under the config dir (`dirs.settings_file()`), written atomically.

Kept as JSON rather than QSettings so the file is readable, testable and lives where every other
per-user file lives. The window layout is stored as base64 of Qt's saveGeometry/saveState.
"""
from __future__ import annotations

from pathlib import Path

from desktop.runtime import paths
from diffusion.checks import is_int, is_number

from . import dirs

PROVIDERS = ("auto", "cpu", "cuda", "tensorrt", "directml", "coreml", "rocm", "openvino")
MAX_RECENT_PROMPTS = 20

DEFAULTS = {
    "output_dir": "",          # "" = paths.outputs_dir()
    "provider": "auto",
    "preview_every": 1,        # refresh the live preview every N steps
    "recent_prompts": [],
    "window_geometry": "",
    "window_state": "",
    "last_model": "",
    "overlay_opacity": 0.5,
    "show_noisy": False,
    "theme": "system",         # "system" | "light" | "dark" (theme.py)
    "live_painting": False,    # regenerate on its own while painting (live.py)
    "model_names": {},         # model folder -> the name the user gave it (library.py)
}


MAX_TEXT = 100_000  # characters of one text setting (window state is base64, a few KB)


def _text(value, limit: int = MAX_TEXT) -> bool:
    return isinstance(value, str) and len(value) <= limit and "\0" not in value


def valid(key: str, value) -> bool:
    """Whether a stored value can be used for setting `key` (settings.json is read, not trusted:
    issue 13 had 'overlay_opacity': "x" stop the app from starting, on every launch)."""
    if key == "provider":
        return value in PROVIDERS
    if key == "theme":
        return value in ("system", "light", "dark")
    if key == "preview_every":
        return is_int(value) and 1 <= value <= 10_000
    if key == "overlay_opacity":
        return is_number(value) and 0.0 <= value <= 1.0
    if key == "recent_prompts":
        return isinstance(value, list) and len(value) <= 1000 and all(_text(p, 10_000) for p in value)
    if key == "model_names":
        return isinstance(value, dict) and len(value) <= 10_000 and all(_text(k) and _text(v, 1000)
                                                                         for k, v in value.items())
    if isinstance(DEFAULTS[key], bool):
        return isinstance(value, bool)
    return _text(value)


class Settings:
    """A dict-like view of settings.json with defaults; `save()` writes it atomically."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else dirs.settings_file()
        stored = dirs.read_json(self.path, {})
        self.values = dict(DEFAULTS)
        if isinstance(stored, dict):  # a value of the wrong type or out of range keeps its default
            self.values.update({k: v for k, v in stored.items() if k in DEFAULTS and valid(k, v)})

    def __getitem__(self, key):
        return self.values[key]

    def __setitem__(self, key, value):
        if key not in DEFAULTS:
            raise KeyError(f"unknown setting {key!r}; known: {', '.join(DEFAULTS)}")
        self.values[key] = value

    def output_dir(self) -> Path:
        return Path(self.values["output_dir"]) if self.values["output_dir"] else paths.outputs_dir()

    def add_recent_prompt(self, prompt: str) -> None:
        prompt = prompt.strip()
        if not prompt:
            return
        recent = [p for p in self.values["recent_prompts"] if p != prompt]
        self.values["recent_prompts"] = [prompt, *recent][:MAX_RECENT_PROMPTS]

    def save(self) -> None:
        dirs.write_json_atomic(self.path, self.values)
