"""diffusion.scheduler_config: the one reader of scheduler_config.json, against diffusers' own classes."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffusion.scheduler_config import STABLE_DIFFUSION, SchedulerConfig, parse_scheduler_config, read_scheduler_config

KEYS = ["_class_name", "beta_schedule", "beta_start", "beta_end", "num_train_timesteps", "prediction_type",
        "timestep_spacing", "steps_offset", "clip_sample", "clip_sample_range", "thresholding", "set_alpha_to_one",
        "trained_betas", "rescale_betas_zero_snr", "use_karras_sigmas", "original_inference_steps",
        "timestep_scaling"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                   st.sampled_from(["linear", "scaled_linear", "squaredcos_cap_v2", "epsilon", "v_prediction",
                                    "leading", "trailing", "linspace", "DDIMScheduler", "LCMScheduler", "x"]),
                   st.lists(st.floats(0, 1), max_size=3), st.dictionaries(st.text(max_size=3), st.integers()))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), VALUES))
def test_any_config_parses_or_says_why(cfg):
    try:
        parsed = parse_scheduler_config(cfg, "scheduler/scheduler_config.json")
    except ValueError as exc:
        assert str(exc).startswith("scheduler/scheduler_config.json: ")
        return
    assert isinstance(parsed, SchedulerConfig)
    assert parsed.spacing in ("leading", "trailing", "linspace") and 0 <= parsed.steps_offset


@pytest.mark.slow  # PyTorch: diffusers' scheduler classes are the oracle
@pytest.mark.parametrize("cls", ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
                                 "DPMSolverMultistepScheduler", "LCMScheduler", "UniPCMultistepScheduler"])
@pytest.mark.parametrize("cfg", [{}, STABLE_DIFFUSION, {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}])
def test_missing_keys_take_the_named_class_defaults(cls, cfg):
    """What diffusers' SchedulerClass.from_config(file) ends up with is what we read."""
    diffusers = pytest.importorskip("diffusers")
    cfg = {**cfg, "_class_name": cls}
    theirs = getattr(diffusers, cls).from_config(cfg).config
    ours = parse_scheduler_config(cfg)
    assert ours.spacing == theirs.timestep_spacing
    assert ours.steps_offset == theirs.steps_offset
    assert ours.prediction_type == theirs.prediction_type
    assert ours.schedule["beta_start"] == theirs.beta_start and ours.schedule["beta_end"] == theirs.beta_end
    assert {"scaled_linear": "scaled_linear", "linear": "linear"}[theirs.beta_schedule] == ours.schedule["name"]
    assert ours.clip_sample == bool(theirs.get("clip_sample", False))
    if "set_alpha_to_one" in theirs:
        assert ours.set_alpha_to_one == theirs.set_alpha_to_one


def test_unreadable_files_are_one_sentence(tmp_path):
    bad = tmp_path / "scheduler_config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_scheduler_config(bad, "scheduler/scheduler_config.json")
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_scheduler_config(bad)
    bad.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(ValueError):
        read_scheduler_config(bad)
