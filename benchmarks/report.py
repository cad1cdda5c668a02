"""Where a benchmark ran, for the header of its printed report: the machine and the git commit.

Standard library only, so numpy-only benchmarks need no torch; callers add their own extras
(library versions, thread counts, the GPU) through `machine(*extras)`.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(*extras: str) -> str:
    """E.g. "Linux x86_64, AMD EPYC 7B13, 2 cores, Python 3.11.7", then the non-empty extras, ", "-joined."""
    parts = [f"{platform.system()} {platform.machine()}", cpu_name(), f"{os.cpu_count()} cores",
             f"Python {platform.python_version()}", *extras]
    return ", ".join(p for p in parts if p)


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=10)


def commit() -> str:
    """The short HEAD hash, with "+dirty" when tracked files are modified; "uncommitted" when git fails."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return "uncommitted"
        dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"
    return head.stdout.strip() + ("+dirty" if dirty else "")
