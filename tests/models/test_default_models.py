"""The shipped default models still clear a floor on their generator-independent evaluations.

Small samples at fixed seeds through the real runtime (ONNX, CPU), scored by benchmarks/evals, so a
change that breaks a model (sampler, runtime, export or the bundle itself) fails CI. The full
tables come from benchmarks/eval_*.py; the floors here sit below the measured figures with room for
the sampling noise of a small sample.
"""
from pathlib import Path

import pytest

from benchmarks.evals import digits, inpaint, landscapes, shapes

pytestmark = pytest.mark.slow  # samples the shipped models

ROOT = Path(__file__).resolve().parents[2]

MODELS = ROOT / "assets" / "models"


def bundle(name: str) -> Path:
    path = MODELS / name
    if not (path / "studio.json").is_file():
        pytest.fail(f"default model {name} is missing from {MODELS}; rebuild: scripts/build_default_models.sh")
    return path


def assert_clears(result: dict) -> None:
    assert result["ok"], f"below the floor: {result['failures']} (scores {result['scores']})"


def test_digits_are_the_digits_asked_for():
    assert_clears(digits.floor_check(bundle("digits"), n_small=4))


def test_landscapes_follow_the_painted_map():
    assert_clears(landscapes.floor_check(bundle("landscapes"), n_small=12))


def test_shapes_follow_the_prompt():
    assert_clears(shapes.floor_check(bundle("shapes"), n_small=8))


def test_inpainting_keeps_the_known_pixels_without_a_visible_seam():
    assert_clears(inpaint.floor_check(bundle("landscapes"), n_small=4))
