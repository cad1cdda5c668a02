"""`diffusion-studio export SOURCE OUT_DIR` from a saved model folder."""
from __future__ import annotations

import json

import pytest

from desktop.cli import main as studio_main
from desktop.runtime.bundle import open_bundle

pytestmark = pytest.mark.slow  # exports ONNX bundles


def test_export_command_writes_a_bundle_and_refuses_to_clobber(tmp_path, pixel_class_model, capsys):
    from engine.loaded import save_model

    src = save_model(pixel_class_model, tmp_path / "model")
    out = tmp_path / "bundle"
    assert studio_main(["export", str(src), str(out), "--name", "Digits", "--description", "tiny test"]) == 0
    bundle = open_bundle(out, provider="cpu")
    assert bundle.manifest.name == "Digits" and bundle.manifest.description == "tiny test"
    assert bundle.manifest.conditioning.class_.names == ("zero", "one")
    assert bundle.manifest.provenance["source"] == str(src.absolute())
    before = (out / "studio.json").read_text()
    assert studio_main(["export", str(src), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "studio.json").read_text() == before
    assert studio_main(["export", str(src), str(out), "--overwrite", "--fp16"]) == 0
    assert json.loads((out / "studio.json").read_text())["precision"] == "fp16"


def test_export_command_reports_a_bad_source(tmp_path, capsys):
    assert studio_main(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_export_command_takes_a_plain_diffusers_folder(tmp_path):
    from tests.helpers.tiny_models import tiny_unet2d
    from diffusers import DDPMScheduler

    src = tmp_path / "diffusers-model"
    tiny_unet2d(3, 3, 8).save_pretrained(str(src / "unet"))
    DDPMScheduler(num_train_timesteps=500, beta_schedule="squaredcos_cap_v2").save_pretrained(str(src / "scheduler"))
    out = tmp_path / "bundle"
    assert studio_main(["export", str(src), str(out)]) == 0
    m = open_bundle(out, provider="cpu").manifest
    assert m.kind == "pixel" and (m.image.height, m.image.channels) == (8, 3)
    assert m.schedule["name"] == "cosine" and m.schedule["num_train_timesteps"] == 500
