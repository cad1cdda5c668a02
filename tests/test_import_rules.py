"""The import rules (docs/ARCHITECTURE.md), checked in a fresh interpreter per package.

desktop/ never pulls in torch, diffusers, transformers or engine; desktop/runtime/ never pulls in
Qt; diffusion/ pulls in nothing but numpy and the standard library.
"""
import json
import subprocess
import sys
from pathlib import Path


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


def test_desktop_never_imports_torch_or_engine():
    modules, loaded = imported_by("desktop")
    assert "desktop.cli" in modules
    forbidden = {"torch", "diffusers", "transformers", "accelerate", "engine", "export"}
    assert not loaded & forbidden, f"desktop imports {sorted(loaded & forbidden)}"


def test_runtime_never_imports_qt():
    modules, loaded = imported_by("desktop.runtime")
    forbidden = {"PySide6", "shiboken6", "torch", "engine", "diffusers", "transformers"}
    assert not loaded & forbidden, f"desktop.runtime imports {sorted(loaded & forbidden)}"


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
