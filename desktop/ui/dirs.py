"""Where the app keeps a user's files, and atomic writes.

Per-user files live under platformdirs' data and config dirs (DESIGN.md §5), as
`desktop.runtime.paths` defines them (so the command line and the app agree; DIFFUSION_STUDIO_HOME
moves them all, which the tests use). Paths are resolved at call time; nothing is written into the
install folder.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from desktop.runtime import paths


def data_dir() -> Path:
    return paths.user_data_dir()


def config_dir() -> Path:
    return paths.user_config_dir()


def models_dir() -> Path:
    return paths.user_models_dir()


def outputs_dir() -> Path:
    return paths.outputs_dir()


def history_file() -> Path:
    """The app's history (a JSON list; the runtime's history.jsonl is the command line's log)."""
    return data_dir() / "history.json"


def settings_file() -> Path:
    return config_dir() / "settings.json"


def bundled_models_dir() -> Path:
    return paths.bundled_models_dir()


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to `path` via a temporary file in the same folder and os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_json(path: Path, default):
    """Read JSON; a corrupt file is kept beside as `.corrupt` (nothing lost) and `default` returned."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            os.replace(path, path.with_suffix(path.suffix + ".corrupt"))
        except OSError:
            pass
        return default
