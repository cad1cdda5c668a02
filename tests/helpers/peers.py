"""The peers virtualenv (.venv-peers, `make .venv-peers`): reference tools that cannot live in our venv
(optimum's ONNX Runtime pipelines with their transformers 4.x, diffusers' legacy ONNX pipelines,
CPU onnxruntime). Tests run scripts there in a subprocess and exchange arrays through .npz files.

`make test` (and so CI) builds the venv first, so these tests run there; a plain `pytest` without it
skips them with the command to run, except under CI=true, where a missing venv fails.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
           "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


def peers_python() -> Path:
    """The peers venv's python; skip (fail under CI) when it has not been built."""
    if PEERS_PYTHON.exists():
        return PEERS_PYTHON
    message = "the peers virtualenv is missing: run `make .venv-peers` (make test builds it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def run_in_peers(script: Path, *args, timeout: float = 900) -> str:
    """Run `script` with the peers venv's python (repository root on sys.path, offline); its stdout."""
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(peers_python()), str(script), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=timeout)
    if done.returncode:
        pytest.fail(f"{script.name} failed in the peers venv (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout
