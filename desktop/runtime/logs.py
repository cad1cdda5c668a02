"""The app's log file: what it did and every error it showed, for a bug report.

`log_dir()` is platformdirs' user log folder (`~/.local/state/diffusion-studio/log` on Linux,
`~/Library/Logs/diffusion-studio` on macOS, `%LOCALAPPDATA%\\diffusion-studio\\Logs` on Windows), or
`$DIFFUSION_STUDIO_HOME/logs` when that is set. `start_log()` sends the `diffusion_studio` logger's
records to `diffusion-studio.log` there, rotated at 1 MB with 3 old files kept. A folder that
cannot be written means no log file, never a failure to start. Nothing is ever sent anywhere.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import platform
import sys
from pathlib import Path

import platformdirs

from .paths import APP

LOGGER = "diffusion_studio"
FILE_NAME = "diffusion-studio.log"
MAX_BYTES = 1_000_000
BACKUPS = 3

__all__ = ["FILE_NAME", "LOGGER", "log_dir", "log_unhandled", "logger", "start_log"]


def log_dir() -> Path:
    home = os.environ.get("DIFFUSION_STUDIO_HOME")
    return Path(home) / "logs" if home else Path(platformdirs.user_log_dir(APP, appauthor=False))


def logger() -> logging.Logger:
    """The logger every part of the app writes to (a child: `logger().getChild("worker")`)."""
    return logging.getLogger(LOGGER)


def start_log(*, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> Path | None:
    """Attach the rotating log file (once per process) and write a start line; its path, or None
    when the folder cannot be made or written."""
    log = logger()
    for handler in log.handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    path = log_dir() / FILE_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8", delay=False)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("start: Diffusion Studio %s, Python %s, %s %s", _version(), platform.python_version(),
             platform.system(), platform.machine())
    return path


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("diffusion-studio")
    except Exception:  # noqa: BLE001 - a checkout without metadata
        return "(checkout)"


def log_unhandled(exc_type, exc, tb) -> None:
    """sys.excepthook for the app: the traceback goes to the log, then to stderr as before."""
    logger().error("unhandled exception", exc_info=(exc_type, exc, tb))
    sys.__excepthook__(exc_type, exc, tb)
