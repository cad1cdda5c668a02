"""The code base stays easy to change: no import circle between our modules, no function longer
than one screen, no private name imported from another module, no document cited that the
repository lacks, no long positional parameter list, no call that passes more arguments by position
than the function takes (or a keyword it lacks). Read from the source with `ast` (nothing is imported)."""
from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.source import ROOT, dotted, imported_modules, local_names, project_modules, script_modules, walk

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
        for node in walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.name} ({lines} lines)")
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_long_parameter_lists_are_keyword_only(modules):
    """A call like f(a, b, c, d, e, f, g) cannot be read without the signature: past six, by name."""
    long = []
    for name, (path, tree) in modules.items():
        for node in walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > MAX_POSITIONAL:
                    long.append(f"{name}:{node.name} ({len(positional)} positional)")
    assert long == []


# Decorators that keep the signature of the function they wrap (any other one: the call is not checked).
PLAIN_DECORATORS = {"lru_cache", "functools.lru_cache", "cache", "functools.cache", "contextmanager",
                    "contextlib.contextmanager", "torch.no_grad"}


@dataclass(frozen=True)
class Signature:
    positional: int | None  # at most this many arguments by position (None: it takes *args)
    keywords: frozenset[str] | None  # the names it takes by keyword (None: it takes **kwargs)


def signature(fn: ast.FunctionDef | ast.AsyncFunctionDef, *, method: bool) -> Signature | None:
    decorators = {ast.unparse(d.func if isinstance(d, ast.Call) else d) for d in fn.decorator_list}
    if decorators - PLAIN_DECORATORS:
        return None
    args = (fn.args.posonlyargs + fn.args.args)[1 if method else 0:]
    by_position_only = {a.arg for a in fn.args.posonlyargs}
    return Signature(positional=None if fn.args.vararg else len(args),
                     keywords=None if fn.args.kwarg else frozenset(
                         a.arg for a in args + fn.args.kwonlyargs if a.arg not in by_position_only))


def signatures(modules) -> dict[str, Signature]:
    """Our module-level functions, and our undecorated classes with their own __init__, by dotted name."""
    out = {}
    for name, (path, tree) in modules.items():
        for node in tree.body:
            sig = None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sig = signature(node, method=False)
            elif isinstance(node, ast.ClassDef) and not node.decorator_list:
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
                sig = init and signature(init, method=True)
            if sig:
                out[f"{name}.{node.name}"] = sig
    return out


def resolve_call(parts: list[str], names: dict[str, str], modules, local, sigs) -> str | None:
    """The dotted name of our function that `a.b.f(...)` calls, following imports and re-exports
    (`from .mem import check_fits` in a package __init__); None if it is not statically ours."""
    if parts[0] not in names:
        return None
    full = names[parts[0]].split(".") + parts[1:]
    for _ in range(8):  # re-export chains are short; a loop is not followed forever
        module = next((".".join(full[:i]) for i in range(len(full) - 1, 0, -1) if ".".join(full[:i]) in modules), None)
        if module is None:
            return None
        rest = full[len(module.split(".")):]
        qualified = f"{module}.{rest[0]}"
        if len(rest) == 1 and qualified in sigs:
            return qualified
        target = local[module].get(rest[0])
        if target is None or target == qualified:
            return None
        full = target.split(".") + rest[1:]
    return None


def call_mismatches(modules) -> list[str]:
    """Calls of our functions (by name, through an import alias or a re-export) that pass more
    arguments by position than the function takes, or a keyword it does not have."""
    sigs = signatures(modules)
    local = {name: local_names(name, path, tree) for name, (path, tree) in modules.items()}
    out = []
    for name, (path, tree) in modules.items():
        for node in walk(tree):
            parts = dotted(node.func) if isinstance(node, ast.Call) else None
            target = parts and resolve_call(parts, local[name], modules, local, sigs)
            if not target:
                continue
            sig = sigs[target]
            given = len(node.args)
            if sig.positional is not None and given > sig.positional and not any(
                    isinstance(a, ast.Starred) for a in node.args):
                out.append(f"{name}:{node.lineno} passes {given} arguments by position to {target}, "
                           f"which takes {sig.positional}")
            unknown = sorted(k.arg for k in node.keywords if k.arg is not None
                             and sig.keywords is not None and k.arg not in sig.keywords)
            if unknown:
                out.append(f"{name}:{node.lineno} passes {', '.join(unknown)} to {target}, which has no such parameter")
    return out


def test_calls_match_the_signatures_of_our_functions(modules):
    """A positional call to a parameter that became keyword-only fails only at run time (the app
    once called memory.check_fits by position after its parameters became keyword-only: this check,
    run on main at e7aded0, names desktop.ui.model:292). The benchmarks and scripts, which no test
    runs, are checked as callers too."""
    assert call_mismatches({**modules, **script_modules()}) == []


def synthetic(sources: dict[str, str]):
    out = {}
    for name, text in sources.items():
        path = Path(*name.split(".")) / "__init__.py" if name == "pkg" else Path(*name.split(".")).with_suffix(".py")
        out[name] = (path, ast.parse(text))
    return out


def test_the_call_check_finds_positional_calls_and_unknown_keywords():
    modules = synthetic({
        "pkg": "from .mem import check_fits\n",
        "pkg.mem": ("def check_fits(size, *, guided, budget=None): ...\n"
                    "def anything(*args, **options): ...\n"
                    "def only(a, /, b): ...\n"
                    "class Box:\n    def __init__(self, a, *, b=0): ...\n"),
        "pkg.app": ("import pkg.mem\n"
                    "from pkg import mem\n"
                    "from . import mem as m2\n"
                    "def run(args):\n"
                    "    from pkg.mem import check_fits as fits\n"
                    "    mem.check_fits(1, True, 2)\n"  # line 6: by position past `size`
                    "    fits(1, guided=True, budget=2)\n"
                    "    pkg.mem.check_fits(1, guided=True, budgt=2)\n"  # line 8: a keyword it lacks
                    "    m2.anything(1, 2, 3, x=1)\n"
                    "    mem.Box(1, 2)\n"  # line 10: the constructor, self not counted
                    "    pkg.check_fits(1, 2, guided=False)\n"  # line 11: through the package's re-export
                    "    mem.check_fits(*args)\n"  # unknown count: not checked
                    "    mem.only(1, a=2)\n"),  # line 13: `a` is positional-only
    })
    assert call_mismatches(modules) == [
        "pkg.app:6 passes 3 arguments by position to pkg.mem.check_fits, which takes 1",
        "pkg.app:8 passes budgt to pkg.mem.check_fits, which has no such parameter",
        "pkg.app:10 passes 2 arguments by position to pkg.mem.Box, which takes 1",
        "pkg.app:11 passes 2 arguments by position to pkg.mem.check_fits, which takes 1",
        "pkg.app:13 passes a to pkg.mem.only, which has no such parameter",
    ]


def test_no_private_name_imported_from_another_module(modules):
    private = []
    for name, (path, tree) in modules.items():
        for node in walk(tree):
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
