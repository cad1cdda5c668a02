"""The fast target's rules, as pytest hooks (tests/conftest.py imports them).

`make test-fast` (-m "not slow") is the numpy / ONNX Runtime level of the suite: no test it runs
needs PyTorch. It does not even import the test modules that are slow as a whole (`pytestmark =
pytest.mark.slow`), which `-m "not slow"` would import only to deselect every test in them; and a
fast run that imports torch, diffusers or transformers anyway fails, naming the first test module or
test after which it was loaded."""
from __future__ import annotations

import ast
import sys

import pytest

FAST = "not slow"
TORCH_SCALE = ("torch", "diffusers", "transformers")
FIRST_IMPORTS: dict[str, str] = {}  # module -> the collector or test after which it was first seen


def slow_as_a_whole(path) -> bool:
    """Whether the test module at `path` sets `pytestmark = pytest.mark.slow` (alone or in a list)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except SyntaxError:
        return False  # collected, so that pytest reports the error
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            marks = node.value.elts if isinstance(node.value, (ast.List, ast.Tuple)) else [node.value]
            return any(ast.unparse(mark) == "pytest.mark.slow" for mark in marks)
    return False


def fast_run(config) -> bool:
    return config.getoption("markexpr") == FAST


def pytest_ignore_collect(collection_path, config):
    if fast_run(config) and collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        return slow_as_a_whole(collection_path) or None
    return None


def _note_heavy_imports(nodeid):
    for name in TORCH_SCALE:
        if name not in FIRST_IMPORTS and name in sys.modules:
            FIRST_IMPORTS[name] = nodeid


def pytest_collectreport(report):
    _note_heavy_imports(report.nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _note_heavy_imports(nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if fast_run(config) and FIRST_IMPORTS:
        for name, nodeid in FIRST_IMPORTS.items():
            terminalreporter.write_line(f"FAST TARGET: {nodeid} imported {name}; a test that needs it is slow "
                                        f"(tests/helpers/fast_target.py)", red=True)


def pytest_sessionfinish(session, exitstatus):
    if fast_run(session.config) and FIRST_IMPORTS and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
