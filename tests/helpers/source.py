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


@functools.lru_cache(maxsize=None)  # the trees above are parsed once, so each is walked once
def walk(tree: ast.AST) -> tuple[ast.AST, ...]:
    """Every node of `tree` (ast.walk's order), shared by the checks that read the same modules."""
    return tuple(ast.walk(tree))


@functools.lru_cache(maxsize=None)
def script_modules(root: Path = ROOT) -> dict[str, tuple[Path, ast.Module]]:
    """benchmarks/ and scripts/: our code that calls our modules but that no test runs."""
    return {module_name(path, root=root): (path, ast.parse(path.read_text(encoding="utf-8"), str(path)))
            for folder in ("benchmarks", "scripts") for path in sorted((root / folder).rglob("*.py"))}


def import_base(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` in module `name` (at `path`) reads from."""
    if not node.level:
        return node.module or ""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    return ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, tree: ast.Module, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere (module level or inside functions, lazily)."""
    out = set()
    for node in walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = import_base(name, path, node)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:  # `from .x import f` names module x, not f
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def local_names(name: str, path: Path, tree: ast.Module) -> dict[str, str]:
    """What each name bound by an import or a module-level def/class in module `name` refers to, as a
    dotted path ("pkg.mod" or "pkg.mod.func"). Imports inside functions count for the whole module
    (our lazy imports); a later binding of the same name wins, as it would at run time."""
    out = {}
    for node in walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    out[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    out[head] = head
        elif isinstance(node, ast.ImportFrom):
            base = import_base(name, path, node)
            out.update({alias.asname or alias.name: f"{base}.{alias.name}" for alias in node.names})
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = f"{name}.{node.name}"
    return out


def dotted(expr: ast.expr) -> list[str] | None:
    """`a.b.c` as ["a", "b", "c"]; None for anything but names and attributes."""
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return [expr.id] + parts[::-1]
