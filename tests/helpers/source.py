"""Our modules read from the source with `ast` (nothing imported): their names, trees and the
modules of ours each one imports. Used by tests/test_structure.py and tests/test_import_rules.py."""
from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("diffusion", "engine", "export", "desktop")


def module_name(path: Path, *, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.lru_cache(maxsize=None)  # parsed once per test session (read, never changed, by the tests)
def project_modules(root: Path = ROOT) -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            out[module_name(path, root=root)] = (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return out


def imported_modules(name: str, path: Path, tree: ast.Module, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere (module level or inside functions, lazily)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:  # `from .x import f` names module x, not f
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out
