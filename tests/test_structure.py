"""The code base stays easy to change: no import circle between our modules, no function longer
than one screen, no private name imported from another module, no document cited that the
repository lacks, no long positional parameter list. Read from the source with `ast` (nothing is imported)."""
from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.source import ROOT, imported_modules, project_modules

MAX_FUNCTION_LINES = 80
MAX_POSITIONAL = 6  # parameters a caller may pass by position (self/cls not counted); the rest keyword-only


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def parent_package_imports(name: str) -> set[str]:
    """A module may import its own packages' __init__ (Python does so anyway): not a circle."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@pytest.fixture(scope="module")
def modules():
    return project_modules()


def test_no_import_circle_between_our_modules(modules):
    known = set(modules)
    graph = {name: imported_modules(name, path, tree, known) - parent_package_imports(name)
             for name, (path, tree) in modules.items()}
    assert import_cycles(graph) == []


def test_the_circle_check_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_function_longer_than_one_screen(modules):
    long = []
    for name, (path, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.name} ({lines} lines)")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_long_parameter_lists_are_keyword_only(modules):
    """A call like f(a, b, c, d, e, f, g) cannot be read without the signature: past six, by name."""
    long = []
    for name, (path, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > MAX_POSITIONAL:
                    long.append(f"{name}:{node.name} ({len(positional)} positional)")
    assert long == []


def test_no_private_name_imported_from_another_module(modules):
    private = []
    for name, (path, tree) in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                private += [f"{name} imports {alias.name} from {'.' * node.level}{node.module or ''}"
                            for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert private == []


CITATION = re.compile(r"DESIGN\.md|\.\./shared|/work/shared")


def tracked_text_files() -> list[Path]:
    """The repository's text files as git tracks them (untracked new files included, ignored ones not)."""
    suffixes = {".py", ".md", ".toml", ".txt", ".sh", ".json", ".cfg", ".desktop", ".yml", ".yaml", ".svg"}
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [ROOT / name for name in out.split("\0") if name and Path(name).suffix in suffixes
            and (ROOT / name).is_file()]


def test_no_file_cites_a_document_outside_the_repository():
    me = Path(__file__).resolve()
    cited = [f"{p.relative_to(ROOT)}:{i}" for p in tracked_text_files() if p.resolve() != me
             for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
             if CITATION.search(line)]
    assert cited == []


CONFLICT_MARKER = re.compile(r"^(<<<<<<< |>>>>>>> |=======$)")


def test_no_file_holds_a_merge_conflict_marker():
    marked = [f"{p.relative_to(ROOT)}:{i}" for p in tracked_text_files()
              for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
              if CONFLICT_MARKER.match(line)]
    assert marked == []


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_markdown_links_point_at_files_that_exist():
    broken = []
    for doc in [p for p in tracked_text_files() if p.suffix == ".md"]:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []
