"""A model's provenance says how to train it again: `rebuild_command` must give back the same config."""
import shlex

import pytest

from engine.config import load_config, preset_names, rebuild_command
from engine.train_cli import build_parser, merged, parse_setting

OVERRIDES = [
    {},
    {"training": {"batch": 64, "lr": 2e-4, "warmup": 50, "max_seconds": 3600.0, "init": "assets/models/x y"}},
    {"vae": "runs/my vae's \"folder\"", "dataset": {"count": 123, "flip": False},
     "model": {"attention": [True, False, True]}},
]


def rebuilt_config(command: str) -> tuple[dict, str]:
    argv = shlex.split(command)
    assert argv[:2] == ["diffusion-studio", "train"]
    args = build_parser().parse_args(argv[2:])
    return load_config(args.config, merged(*map(parse_setting, args.set))), args.out


@pytest.mark.parametrize("overrides", OVERRIDES)
@pytest.mark.parametrize("preset", ["digits", "landscapes", "tiny-pixel"])
def test_rebuild_command_makes_the_same_config(preset, overrides):
    if preset == "tiny-pixel" and "model" in overrides:
        overrides = {k: v for k, v in overrides.items() if k != "model"}
    cfg = load_config(preset, overrides)
    command = rebuild_command(cfg, "my run")
    again, out = rebuilt_config(command)
    assert again == cfg and out == "my run"
    assert ("--set" in command) == bool(overrides)


def test_a_config_that_is_no_preset_rebuilds_from_the_run_folders_copy():
    cfg = load_config({"name": "", "kind": "pixel"})
    assert rebuild_command(cfg, "runs/a") == "diffusion-studio train runs/a/config.toml --out runs/a"


def test_every_preset_is_its_own_rebuild():
    for name in preset_names():
        assert rebuild_command(load_config(name), "out") == f"diffusion-studio train {name} --out out"
