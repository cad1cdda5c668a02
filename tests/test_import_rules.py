"""The import rules (docs/ARCHITECTURE.md): third-party packages checked in a fresh interpreter per
package, our own layers read from the source (lazy imports inside functions included).

desktop/ never pulls in torch, diffusers, transformers or engine; desktop/runtime/ never pulls in
Qt; diffusion/ pulls in nothing but numpy and the standard library. Our layers, lowest first:
diffusion < desktop.runtime < engine < export, and desktop.ui on desktop.runtime; engine reaches into
the runtime only for `desktop.runtime.fileio` (the one way files are written), export for the
runtime modules that read and run what it writes, and `desktop.runtime.memory` (what the machine has).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.source import imported_modules, project_modules


ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import importlib, json, pkgutil, sys
package = sys.argv[1]
base = set(sys.modules)
names = [package]
pkg = importlib.import_module(package)
for info in pkgutil.walk_packages(pkg.__path__, package + "."):
    names.append(info.name)
for name in names:
    importlib.import_module(name)
loaded = sorted({m.split(".")[0] for m in set(sys.modules) - base})
print(json.dumps({"modules": names, "loaded": loaded}))
"""


def imported_by(package: str) -> tuple[list[str], set[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, package], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, f"importing {package} failed:\n{out.stderr}"
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["modules"], set(data["loaded"])


@pytest.mark.slow
def test_desktop_never_imports_torch_or_engine():
    modules, loaded = imported_by("desktop")
    assert "desktop.cli" in modules
    forbidden = {"torch", "diffusers", "transformers", "accelerate", "engine", "export"}
    assert not loaded & forbidden, f"desktop imports {sorted(loaded & forbidden)}"


@pytest.mark.slow
def test_runtime_never_imports_qt():
    modules, loaded = imported_by("desktop.runtime")
    forbidden = {"PySide6", "shiboken6", "torch", "engine", "diffusers", "transformers"}
    assert not loaded & forbidden, f"desktop.runtime imports {sorted(loaded & forbidden)}"


@pytest.mark.slow
def test_diffusion_imports_only_numpy_and_stdlib():
    modules, loaded = imported_by("diffusion")
    assert len(modules) > 1, "diffusion/ has no modules"
    stdlib = set(sys.stdlib_module_names) | {"_distutils_hack"}
    ours = {"diffusion"}
    third_party = {m for m in loaded - stdlib - ours if not m.startswith("_")}
    assert third_party <= {"numpy"}, f"diffusion imports {sorted(third_party - {'numpy'})}"


def test_probe_catches_a_forbidden_import(tmp_path, monkeypatch):
    """The probe itself works: a package that imports json shows json as loaded."""
    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import xml.dom.minidom\n")
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "probe_pkg"], cwd=tmp_path, capture_output=True, text=True
    )
    assert "xml" in json.loads(out.stdout.strip().splitlines()[-1])["loaded"]


# Which of our modules each layer may import (a module may always import its own layer, and the
# `desktop` package's __init__, which only turns ONNX Runtime's telemetry off). The first matching
# prefix wins, so `desktop.runtime` is listed before `desktop`.
LAYERS = {
    "diffusion": {"diffusion"},
    "desktop.runtime": {"diffusion", "desktop.runtime"},
    "desktop.ui": {"diffusion", "desktop.runtime", "desktop.ui"},
    "desktop": {"diffusion", "desktop"},  # desktop/cli.py, __main__: subcommands by name, lazily
    "engine": {"diffusion", "engine", "desktop.runtime.fileio"},
    "export": {"diffusion", "engine", "export", "desktop.runtime.fileio", "desktop.runtime.manifest",
               "desktop.runtime.bundle", "desktop.runtime.pipeline", "desktop.runtime.preview",
               "desktop.runtime.providers", "desktop.runtime.memory"},
}


def layer_of(module: str) -> str:
    return next(layer for layer in LAYERS if module == layer or module.startswith(layer + "."))


def allowed(importer: str, imported: str) -> bool:
    if imported in ("desktop", "desktop.runtime"):  # package __init__s: no code of their own but the telemetry switch
        return True
    return any(imported == a or imported.startswith(a + ".") for a in LAYERS[layer_of(importer)])


def layer_violations(modules) -> list[str]:
    known = set(modules)
    return sorted(f"{name} imports {target}" for name, (path, tree) in modules.items()
                  for target in imported_modules(name, path, tree, known) if not allowed(name, target))


def test_our_layers_import_only_what_the_rules_allow():
    assert layer_violations(project_modules()) == []


@pytest.mark.parametrize("importer, imported, ok", [
    ("engine.loop", "desktop.runtime.fileio", True),
    ("engine.loop", "desktop.runtime.bundle", False),
    ("export.cli", "desktop.runtime.bundle", True),
    ("export.cli", "desktop.ui.model", False),
    ("desktop.runtime.pipeline", "desktop.ui.model", False),
    ("desktop.runtime.pipeline", "engine.train", False),
    ("desktop.ui.model", "desktop.runtime.pipeline", True),
    ("diffusion.samplers", "desktop.runtime.fileio", False),
    ("diffusion.samplers", "diffusion.grid", True),
])
def test_the_layer_rule_itself(importer, imported, ok):
    assert allowed(importer, imported) is ok
