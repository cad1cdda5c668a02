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


def test_calibration_records_the_guided_batch_of_real_generations(text_bundle, monkeypatch):
    import gc
    import weakref

    from desktop.runtime import bundle

    m = read_manifest(text_bundle)
    requests = quantize.calibration_requests(m, 2, seed=5)
    assert [r["prompt"] for r in requests] == list(quantize.GENERIC_PROMPTS[:2])
    assert [r["class_index"] for r in requests] == [0, 1]
    opened, open_bundle = [], bundle.open_bundle
    monkeypatch.setattr(bundle, "open_bundle", lambda *a, **k: opened.append(open_bundle(*a, **k)) or opened[-1])
    gc.disable()
    try:
        feeds = quantize.record_unet_inputs(text_bundle, requests)
        unet = weakref.ref(opened.pop().unet)
        assert unet() is None  # the sessions are freed on return, before quantisation needs the memory
    finally:
        gc.enable()
    steps = m.defaults.steps
    assert len(feeds) == 2 * steps  # one U-Net call per step and generation
    assert all(f["sample"].shape[0] == 2 for f in feeds)  # guidance: unconditional + conditional
    assert {"sample", "timestep", "encoder_hidden_states", "class_labels"} <= set(feeds[0])
    assert len({int(f["timestep"][0]) for f in feeds}) == steps  # the sampler's own timesteps


def test_int8_bundle(text_bundle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", 64.0)  # random weights: the mechanics, not the quality
    before = {p: p.read_bytes() for p in text_bundle.rglob("*") if p.is_file()}
    capsys.readouterr()
    out = quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, log=lambda s: None,
                                   calibration=2, check=2)
    assert capsys.readouterr().out == ""  # ONNX Runtime's calibrator prints nothing into our output
    assert {p: p.read_bytes() for p in text_bundle.rglob("*") if p.is_file()} == before  # linked, not written
    m = read_manifest(out)
    assert m.precision == "int8" and m.providers == ("cpu",)
    index = (text_bundle / "model_index.json").read_bytes()   # the exporter's, with its diffusers notes
    assert b"_diffusion_studio_unsupported" in index and (out / "model_index.json").read_bytes() == index
    assert json.loads((out / "studio.json").read_text())["format_version"] == 2
    report = m.provenance["export"]["int8"]
    assert report["calibration_calls"] > 0 and report["mean_abs_diff_255"] <= quantize.MEAN_TOLERANCE
    graph = onnx.load(str(out / m.files["unet"])).graph
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in graph.node}
    softmax = {o for n in graph.node if n.op_type == "Softmax" for o in n.output}
    assert softmax and all(n.op_type == "MatMul" for n in graph.node if softmax & set(n.input))  # attention: float
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


def test_float_nodes_are_the_outer_convolutions_and_the_products_of_two_activations():
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    k = helper.make_tensor("k", TensorProto.FLOAT, [4, 4, 1, 1], [0.0] * 16)
    nodes = [helper.make_node("Conv", ["x", "k"], ["c1"], name="first"),
             helper.make_node("Conv", ["c1", "k"], ["c2"], name="middle"),
             helper.make_node("MatMul", ["c2", "w"], ["q"], name="weights"),
             helper.make_node("MatMul", ["q", "q"], ["s"], name="scores"),
             helper.make_node("Conv", ["s", "k"], ["y"], name="last")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w, k])
    assert quantize.float_nodes(graph) == ["first", "last", "scores"]


def test_a_graph_over_2gb_is_quantised_with_external_data_one_image_at_a_time(text_bundle, tmp_path, monkeypatch):
    """SD-class U-Nets (> 2 GB): the graphs in between keep their weights in .data files, calibration
    collects one image at a time, and the int8 bundle lists the data file it ends up with."""
    import tempfile
    from dataclasses import replace

    from onnxruntime.quantization import calibrate, shape_inference

    from desktop.runtime.manifest import write_manifest
    from export import fp16

    source = read_manifest(text_bundle)  # the float U-Net with external data, as an SD bundle's
    fp16.save_model(onnx.load(str(text_bundle / source.files["unet"])), text_bundle / source.files["unet"],
                    external_data=True)
    write_manifest(text_bundle, replace(source, files={**source.files, "unet_data": "unet/model.onnx.data"}))
    monkeypatch.setattr(quantize, "MEAN_TOLERANCE", 64.0)
    monkeypatch.setattr(fp16, "EXTERNAL_DATA_THRESHOLD", 1)  # every graph counts as over 2 GB
    batches, collect = [], calibrate.HistogramCalibrater.collect_data
    prepared, pre_process = [], shape_inference.quant_pre_process
    monkeypatch.setattr(shape_inference, "quant_pre_process", lambda src, *a, **k: prepared.append(src) or
                        pre_process(src, *a, **k))

    def counting_collect(self, reader):
        assert tempfile.gettempdir().endswith(".int8-work")  # ONNX Runtime's copies land in our folder
        items = list(reader.items)
        batches.append([len(next(iter(f.values()))) for f in items])
        reader.items = iter(items)
        return collect(self, reader)

    monkeypatch.setattr(calibrate.HistogramCalibrater, "collect_data", counting_collect)
    out = quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, log=lambda s: None,
                                   calibration=1, check=1, steps=2)
    m = read_manifest(out)
    assert m.files["unet_data"] == "unet/model.onnx.data" and (out / "unet/model.onnx.data").stat().st_size > 0
    assert (out / "unet/model.onnx.data").stat().st_mode & 0o777 == (out / "unet/model.onnx").stat().st_mode & 0o777
    assert not tempfile.gettempdir().endswith(".int8-work")
    assert batches == [[1]] * 4  # 2 steps x the guided batch of 2: one call of one image per collection
    assert m.provenance["export"]["int8"]["calibration_calls"] == 2
    assert [prepared[0].split("/")[-3:]] == [["bundle.fp", "unet", "model.onnx"]]  # fp32 already: not written again
    generate(open_bundle(out, provider="cpu"), GenerationRequest(prompt="a red circle", seed=3, steps=2))


def test_too_little_memory_to_quantise_is_one_sentence_before_any_work(text_bundle, tmp_path, monkeypatch):
    from desktop.runtime import memory

    monkeypatch.setattr(memory, "ram_available_bytes", lambda: 1000)
    monkeypatch.setattr(quantize, "record_unet_inputs", lambda *a: pytest.fail("calibrated anyway"))
    with pytest.raises(ExportError, match=r"^quantising this U-Net \(\d+ MB\) takes about \d+ MB of memory and this "
                                          r"machine has 0 MB available; quantise it on a larger machine"):
        quantize.quantize_bundle(text_bundle, tmp_path / "int8", use_evaluations=False, log=lambda s: None)
    assert not (tmp_path / "int8").exists()


def test_fp16_weights_are_widened_for_the_quantiser_and_fp32_ones_used_as_they_are(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from export import fp16

    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "fp32.onnx")
    onnx.save(fp16.weights_to_fp16(model, min_elements=1), tmp_path / "fp16.onnx")
    work = tmp_path / "work"
    work.mkdir()
    header = onnx.load(str(tmp_path / "fp32.onnx"), load_external_data=False)
    assert quantize.fp32_graph(tmp_path / "fp32.onnx", header, work) == (tmp_path / "fp32.onnx", False)
    assert list(work.iterdir()) == []
    header = onnx.load(str(tmp_path / "fp16.onnx"), load_external_data=False)
    widened, large = quantize.fp32_graph(tmp_path / "fp16.onnx", header, work)
    assert widened.parent == work and not large
    (w,) = onnx.load(str(widened)).graph.initializer
    assert w.data_type == TensorProto.FLOAT and np.array_equal(numpy_helper.to_array(w), weight)


def test_calibration_settings_reach_the_quantiser_and_need_int8(tmp_path, monkeypatch, capsys):
    from desktop.cli import main as studio_main
    from tests.helpers.tiny_bundles import make_bundle

    tiny = make_bundle(tmp_path / "tiny", "latent", "text", size=16)
    calls = []
    monkeypatch.setattr(quantize, "quantize_bundle", lambda source, out, **kw: calls.append(kw))
    assert studio_main(["export", str(tiny), str(tmp_path / "a"), "--int8", "--int8-calibration", "2",
                        "--int8-steps", "4"]) == 0
    assert studio_main(["export", str(tiny), str(tmp_path / "b"), "--int8"]) == 0
    assert calls == [{"overwrite": False, "calibration": 2, "steps": 4}, {"overwrite": False}]
    capsys.readouterr()
    assert studio_main(["export", str(tiny), str(tmp_path / "c"), "--int8-steps", "4"]) == 2
    assert capsys.readouterr().err.strip() == "diffusion-studio export: --int8-calibration and --int8-steps go with --int8"
    with pytest.raises(SystemExit) as exit_:
        studio_main(["export", str(tiny), str(tmp_path / "d"), "--int8", "--int8-calibration", "0"])
    assert exit_.value.code == 2
    assert "'0' is not a whole number of at least 1" in capsys.readouterr().err
    assert calls == [{"overwrite": False, "calibration": 2, "steps": 4}, {"overwrite": False}]
