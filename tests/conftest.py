import os

import desktop  # noqa: F401, E402 (ORT_DISABLE_TELEMETRY=1 before any test loads ONNX Runtime)

# Qt runs headless in tests; a real window is the app's business, not the test suite's.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never touch the network: any accidental hub access fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
from hypothesis import HealthCheck, settings

# `make test-fast` (-m "not slow"): modules slow as a whole are not imported, and a run that imports
# PyTorch fails naming who did (tests/helpers/fast_target.py).
from tests.helpers.fast_target import (  # noqa: F401 (pytest finds the hooks here by name)
    pytest_collectreport, pytest_ignore_collect, pytest_runtest_logfinish, pytest_sessionfinish,
    pytest_terminal_summary)

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

