"""`export --int8` on a bundle: calibration on recorded sampler inputs, the QDQ U-Net, the manifest,
and the gate (a failing gate writes nothing)."""
import json

import numpy as np
import onnx
import pytest

from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import read_manifest
from desktop.runtime.pipeline import GenerationRequest, generate
from export import quantize
from export.parity import ExportError

pytestmark = pytest.mark.slow


@pytest.fixture
def text_bundle(tmp_path, latent_text_model):
    """A real diffusers U-Net (convolutions, cross-attention) exported by our exporter."""
    from export.bundle_writer import export_bundle

    return export_bundle(latent_text_model, tmp_path / "float", check=False, log=lambda s: None, preview_samples=4)


def test_a_unet_with_nothing_to_quantise_is_refused(tmp_path):
    from tests.helpers.tiny_bundles import make_bundle

    tiny = make_bundle(tmp_path / "tiny", "latent", "text", size=16)  # one convolution: stays float
    with pytest.raises(ExportError, match="nothing|no convolution"):
        quantize.quantize_bundle(tiny, tmp_path / "int8", use_evaluations=False, log=lambda s: None,
                                 calibration=1, check=1)
    assert not (tmp_path / "int8").exists()


def test_the_command_reports_a_failed_quantisation_as_exit_1(tmp_path, capsys):
    from desktop.cli import main as studio_main
    from tests.helpers.tiny_bundles import make_bundle

    tiny = make_bundle(tmp_path / "tiny", "latent", "text", size=16)  # one convolution: stays float
    assert studio_main(["export", str(tiny), str(tmp_path / "int8"), "--int8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diffusion-studio export: the U-Net has no convolution"), err
    assert not (tmp_path / "int8").exists()


def test_calibration_records_the_guided_batch_of_real_generations(text_bundle):
    m = read_manifest(text_bundle)
    requests = quantize.calibration_requests(m, 2, seed=5)
    assert [r["prompt"] for r in requests] == list(quantize.GENERIC_PROMPTS[:2])
    assert [r["class_index"] for r in requests] == [0, 1]
    feeds = quantize.record_unet_inputs(text_bundle, requests)
    steps = m.defaults.steps
    assert len(feeds) == 2 * steps  # one U-Net call per step and generation
    assert all(f["sample"].shape[0] == 2 for f in feeds)  # guidance: unconditional + conditional
    assert {"sample", "timestep", "encoder_hidden_states", "class_labels"} <= set(feeds[0])
    assert len({int(f["timestep"][0]) for f in feeds}) == steps  # the sampler's own timesteps


def test_int8_bundle(text_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", 64.0)  # random weights: the mechanics, not the quality
    out = quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, log=lambda s: None,
                                   calibration=2, check=2)
    m = read_manifest(out)
    assert m.precision == "int8" and m.providers == ("cpu",)
    assert json.loads((out / "studio.json").read_text())["format_version"] == 2
    report = m.provenance["export"]["int8"]
    assert report["calibration_calls"] > 0 and report["mean_abs_diff_255"] <= quantize.MEAN_TOLERANCE
    ops = {n.op_type for n in onnx.load(str(out / m.files["unet"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    request = GenerationRequest(prompt="a red circle", seed=3, steps=3, class_name="dog")
    a = generate(open_bundle(text_bundle, provider="cpu"), request).images[0]
    b = generate(open_bundle(out, provider="cpu"), request).images[0]
    assert np.abs(a.astype(int) - b.astype(int)).mean() <= quantize.MEAN_TOLERANCE


def test_a_failing_gate_writes_nothing(text_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", 64.0)  # random weights: let the pixel check pass
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    def gate(bundle_dir):
        assert read_manifest(bundle_dir).precision == "int8"  # the gate judges the int8 bundle
        return "its made-up evaluation falls below the floor (score 0.1 < 0.5)"

    with pytest.raises(ExportError, match="not good enough: its made-up evaluation falls below the floor"):
        quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, gate=gate,
                                 log=lambda s: None, calibration=1, check=1)
    assert not (tmp_path / "int8").exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary folder left either


def test_too_large_a_change_is_refused(text_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", -1.0)
    with pytest.raises(ExportError, match="changes the images by"):
        quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, log=lambda s: None,
                                 calibration=1, check=1)
    assert not (tmp_path / "int8").exists()


def test_evaluation_gate_finds_our_evaluations():
    gate = quantize.evaluation_gate(quantize.evaluations_of({"data": "digits", "evaluation": {"digits": {}}}))
    assert gate is not None and gate.names == ["digits"]
    assert quantize.evaluation_gate(["my-own-data"]) is None
