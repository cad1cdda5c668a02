import numpy as np
import pytest

from benchmarks.evals import common


def test_standard_table_and_parsing():
    labels = [s.label for s in common.SAMPLER_SETTINGS]
    assert labels == ["DDPM-1000", "DDIM-50", "DPM-Solver++ 20", "DPM-Solver++ 10"]
    assert common.parse_samplers("standard") == common.SAMPLER_SETTINGS
    got = common.parse_samplers("ddim:25, dpmpp_2m:8")
    assert [(s.sampler, s.steps) for s in got] == [("ddim", 25), ("dpmpp_2m", 8)]
    with pytest.raises(ValueError, match="NAME:STEPS"):
        common.parse_samplers("euler:10")
    with pytest.raises(ValueError, match="NAME:STEPS"):
        common.parse_samplers("ddim")


def test_floor_result():
    r = common.floor_result({"a": 0.9, "b": 3.0}, {"a": 0.8, "b": ("max", 2.0)})
    assert not r["ok"] and len(r["failures"]) == 1 and r["failures"][0].startswith("b")
    assert common.floor_result({"a": float("nan")}, {"a": 0.5})["ok"] is False


def test_as_rgb_uint8():
    assert common.as_rgb_uint8(np.zeros((4, 5), np.uint8)).shape == (4, 5, 3)
    assert common.as_rgb_uint8(np.zeros((4, 5, 4), np.uint8)).shape == (4, 5, 3)


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        common.open_model(tmp_path / "nope")


def test_table_formatting():
    text = common.format_table(["a", "b"], [["x", 0.5], ["yy", float("nan")]])
    assert "0.500" in text and "nan" in text


def test_requests_bind_to_the_runtime_fields(monkeypatch):
    """generate_images builds real GenerationRequests (field names checked against the runtime)
    and collects images per seed; a fake generate stands in for the ONNX model."""
    from desktop.runtime import pipeline

    seen = []

    def fake_generate(bundle, request):
        seen.append(request)
        return type("R", (), {"images": [np.full((8, 8, 3), request.seed + i, np.uint8)
                                         for i in range(request.batch_size)]})()

    monkeypatch.setattr(pipeline, "generate", fake_generate)
    setting = common.SAMPLER_SETTINGS[1]
    images, seconds = common.generate_images(None, setting, 5, 7, batch_size=3, class_name="4", prompt="a red heart",
                                             labels=np.zeros((8, 8), np.int64),
                                             **common.inpaint_fields(np.zeros((8, 8, 3), np.uint8), np.ones((8, 8))))
    assert images.shape == (7, 8, 8, 3) and seconds >= 0
    assert [int(im[0, 0, 0]) for im in images] == list(range(5, 12))
    assert [r.batch_size for r in seen] == [3, 3, 1] and [r.seed for r in seen] == [5, 8, 11]
    assert all(r.sampler == "ddim" and r.steps == 50 and r.class_name == "4" for r in seen)
    with pytest.raises(TypeError, match="no field"):
        common.make_request(colour="red")


@pytest.mark.slow
def test_digits_evaluation_end_to_end_with_a_perfect_generator(monkeypatch):
    """The whole digits evaluation, with a 'generator' that returns real held-out digits of the
    asked class: accuracy must be near the judge's, diversity near 1."""
    from types import SimpleNamespace

    from benchmarks.evals import digits
    from desktop.runtime import pipeline

    judge = digits.load_judge()

    def fake_generate(bundle, request):
        pool = judge.x_heldout[judge.y_heldout == int(request.class_name)].reshape(-1, 8, 8) / 16.0
        ims = [np.repeat(np.kron(pool[(request.seed + i) % len(pool)], np.ones((2, 2)))[..., None] * 255, 3, -1)
               .round().astype(np.uint8) for i in range(request.batch_size)]
        return SimpleNamespace(images=ims)

    bundle = SimpleNamespace(manifest=SimpleNamespace(
        name="fake", image=SimpleNamespace(height=16, width=16, channels=1),
        conditioning=SimpleNamespace(class_=SimpleNamespace(names=tuple(str(i) for i in range(10))))))
    monkeypatch.setattr(pipeline, "generate", fake_generate)
    monkeypatch.setattr(common, "open_model", lambda path: bundle)
    rows = digits.evaluate("fake", common.parse_samplers("dpmpp_2m:20"), n_per_class=8, seed=0)
    assert rows[0]["accuracy"] >= 0.95 and rows[0]["diversity"] > 0.7
    result = digits.floor_check("fake", n_small=4, seed=0)
    assert result["ok"], result["failures"]


def test_record_keeps_the_table_in_a_still_valid_manifest(tmp_path, capsys):
    import json
    import sys
    from pathlib import Path

    from tests.helpers.tiny_bundles import make_bundle
    from desktop.runtime.bundle import open_bundle

    folder = make_bundle(tmp_path / "m", kind="pixel", cond="class")
    hash_before = open_bundle(folder).model_hash
    common.print_report("t", folder, ["sampler", "accuracy", "s/image"],
                        [["DPM-Solver++ 20", np.float64(0.97), 0.5], ["real", 1.0, float("nan")]],
                        notes="n=4", record="digits")
    assert "provenance.evaluation.digits" in capsys.readouterr().out
    saved = json.loads((folder / "studio.json").read_text())["provenance"]["evaluation"]["digits"]
    assert saved["rows"] == [{"sampler": "DPM-Solver++ 20", "accuracy": 0.97, "s/image": 0.5},
                             {"sampler": "real", "accuracy": 1.0, "s/image": None}]
    assert saved["notes"] == "n=4" and saved["commit"] and saved["machine"]
    bundle = open_bundle(folder)  # hashes still verify; the identity (the U-Net's hash) is the same
    assert bundle.model_hash == hash_before
    assert bundle.manifest.provenance["evaluation"]["digits"]["rows"][0]["accuracy"] == 0.97


def test_the_models_own_default_sampler_gets_a_row():
    from types import SimpleNamespace

    def bundle(sampler, steps):
        return SimpleNamespace(manifest=SimpleNamespace(defaults=SimpleNamespace(sampler=sampler, steps=steps)))

    rows = common.with_default(bundle("ddpm", 30), common.SAMPLER_SETTINGS)
    assert rows[:-1] == common.SAMPLER_SETTINGS
    assert (rows[-1].label, rows[-1].sampler, rows[-1].steps) == ("DDPM-30 (model default)", "ddpm", 30)
    assert common.with_default(bundle("dpmpp_2m", 20), common.SAMPLER_SETTINGS) == common.SAMPLER_SETTINGS
    assert common.with_default(SimpleNamespace(), common.SAMPLER_SETTINGS[:1]) == common.SAMPLER_SETTINGS[:1]
