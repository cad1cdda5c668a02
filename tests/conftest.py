import ast
import os
import sys

import desktop  # noqa: F401, E402 (ORT_DISABLE_TELEMETRY=1 before any test loads ONNX Runtime)

# Qt runs headless in tests; a real window is the app's business, not the test suite's.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never touch the network: any accidental hub access fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: no test may fail because the machine is busy (the too_slow health check times input
# generation) or slow (deadline); a test's own @settings still applies on top of this profile.
settings.register_profile("diffusion-studio", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("diffusion-studio")


@pytest.fixture(autouse=True, scope="session")
def _user_files_in_a_temporary_home(tmp_path_factory):
    """Models, outputs, history and settings go to a temporary folder, never the real user's."""
    if "DIFFUSION_STUDIO_HOME" not in os.environ:
        os.environ["DIFFUSION_STUDIO_HOME"] = str(tmp_path_factory.mktemp("studio-home"))
    yield


def pytest_collection_modifyitems(config, items):
    """Every test that drives the app through pytest-qt's `qtbot` is slow (`make test-fast` skips it);
    other slow tests carry the marker themselves (training, export, the shipped models)."""
    for item in items:
        if "qtbot" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


# `make test-fast` is the numpy / ONNX Runtime level of the suite: no test it runs needs PyTorch, and
# it does not even import the test modules that are slow as a whole (`pytestmark = pytest.mark.slow`),
# which `-m "not slow"` would import only to deselect every test in them. A fast run that imports
# one of these anyway fails, naming the first test module or test that did.
FAST = "not slow"
TORCH_SCALE = ("torch", "diffusers", "transformers")
_first_heavy_import = {}


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
        if name not in _first_heavy_import and name in sys.modules:
            _first_heavy_import[name] = nodeid


def pytest_collectreport(report):
    _note_heavy_imports(report.nodeid)


def pytest_runtest_logfinish(nodeid, location):
    _note_heavy_imports(nodeid)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if fast_run(config) and _first_heavy_import:
        for name, nodeid in _first_heavy_import.items():
            terminalreporter.write_line(f"FAST TARGET: {nodeid} imported {name}; a test that needs it is slow "
                                        f"(tests/conftest.py)", red=True)


def pytest_sessionfinish(session, exitstatus):
    if fast_run(session.config) and _first_heavy_import and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
