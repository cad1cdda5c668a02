"""The app's own per-user files (history, settings) and their atomic JSON writes.

Per-user files live under platformdirs' data and config dirs (docs/ARCHITECTURE.md, "Conventions"), as
`desktop.runtime.paths` defines them (so the command line and the app agree; DIFFUSION_STUDIO_HOME
moves them all, which the tests use). Paths are resolved at call time; nothing is written into the
install folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from desktop.runtime import paths
from desktop.runtime import fileio


def history_file() -> Path:
    """The app's history (a JSON list; the runtime's history.jsonl is the command line's log)."""
    return paths.user_data_dir() / "history.json"


def settings_file() -> Path:
    return paths.user_config_dir() / "settings.json"


def write_json_atomic(path: Path, data) -> None:
    """Write JSON to `path` whole (`desktop.runtime.fileio`: old or new file, never half)."""
    fileio.write_json(path, data, indent=1)


def read_json(path: Path, default):
    """Read JSON; a file that cannot be parsed is kept beside as `.corrupt` (nothing lost) and
    `default` returned. Leftover temporaries of a crashed write are removed first."""
    path = Path(path)
    fileio.clean_leftovers(path.parent, path.name)
    if not path.exists():
        return default
    try:
        return fileio.read_json(path)
    except OSError:
        return default  # unreadable (permissions, a folder): leave it alone
    except ValueError:
        try:
            os.replace(path, path.with_suffix(path.suffix + ".corrupt"))
        except OSError:
            pass
        return default
