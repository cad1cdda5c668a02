"""The fast target's rules (tests/helpers/fast_target.py), run on a small suite in a fresh pytest:
a module slow as a whole is not imported by `-m "not slow"` (and is by a full run), and a fast run
that imports PyTorch (here a stand-in module named transformers) fails and names the test."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # three fresh pytest processes

SUITE = {
    "conftest.py": "from tests.helpers.fast_target import (pytest_collectreport, pytest_ignore_collect,\n"
                   "    pytest_runtest_logfinish, pytest_sessionfinish, pytest_terminal_summary)\n",
    "test_all_slow.py": "import pytest\n\npytestmark = pytest.mark.slow\nraise RuntimeError('imported a slow module')\n",
    "test_mixed.py": "import pytest\n\n\ndef test_fast():\n    pass\n\n\n@pytest.mark.slow\ndef test_slow():\n    pass\n",
}
HEAVY = "import sys, types\n\n\ndef test_loads_transformers():\n    sys.modules['transformers'] = types.ModuleType('transformers')\n"


def run_suite(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytestqt",
                           "-W", "ignore::pytest.PytestUnknownMarkWarning", *args],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_the_fast_run_skips_slow_modules_and_fails_on_pytorch(tmp_path):
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    fast = run_suite(tmp_path, "-m", "not slow")
    assert fast.returncode == 0 and "1 passed, 1 deselected" in fast.stdout, fast.stdout + fast.stderr
    assert "imported a slow module" not in fast.stdout

    full = run_suite(tmp_path)
    assert full.returncode != 0 and "imported a slow module" in full.stdout  # the full run does import it

    (tmp_path / "test_heavy.py").write_text(HEAVY)
    heavy = run_suite(tmp_path, "-m", "not slow")
    assert heavy.returncode == pytest.ExitCode.TESTS_FAILED and "2 passed" in heavy.stdout, heavy.stdout
    assert "FAST TARGET: test_heavy.py::test_loads_transformers imported transformers" in heavy.stdout
