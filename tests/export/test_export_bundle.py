"""export_bundle end to end: every model kind exports, passes parity and opens in the runtime."""
from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from desktop.runtime.bundle import open_bundle
from export import bundle_writer, onnx_graphs
from export.bundle_writer import BundleExistsError, export_bundle
from export.parity import TOLERANCE, ParityError, check_graph, make_session

pytestmark = pytest.mark.slow  # exports ONNX bundles


def _export(model, out, **kw):
    lines = []
    path = export_bundle(model, out, log=lines.append, preview_samples=16, **kw)
    return path, lines


def _parity(manifest, role):
    return manifest.provenance["export"]["parity"][role]


def test_pixel_class_model(tmp_path, pixel_class_model):
    out, lines = _export(pixel_class_model, tmp_path / "pixel")
    bundle = open_bundle(out, provider="cpu")
    m = bundle.manifest
    assert (m.kind, m.name, m.precision) == ("pixel", "tiny-pixel", "fp32")
    assert (m.image.height, m.image.width, m.image.channels) == (8, 8, 1)
    assert m.latent is None
    assert m.conditioning.class_.names == ("zero", "one") and m.conditioning.text is None
    assert (m.unet.in_channels, m.unet.out_channels) == (1, 1)
    assert m.files == {"unet": "unet/model.onnx", "unet_config": "unet/config.json",
                       "scheduler_config": "scheduler/scheduler_config.json"}
    assert set(m.sha256) == set(m.files.values()) and m.clip_x0 is True
    assert m.defaults.steps == 10 and m.defaults.sampler == "dpmpp_2m"
    assert list(bundle.unet.inputs) == ["sample", "timestep", "class_labels"]
    assert bundle.unet.inputs["timestep"][0] == "tensor(int64)"
    assert list(bundle.unet.outputs) == ["out_sample"]
    (check,) = _parity(m, "unet")
    assert check["batch_sizes"] == [1, 3] and check["max_rel"] <= TOLERANCE["fp32"]
    assert m.provenance["export"]["commit"] and m.provenance["export"]["exported_at"]
    assert any(line.startswith("unet") and "max_rel=" in line for line in lines)
    index = json.loads((out / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "OnnxRuntimeModel"] and index["_class_name"] == "DiffusionStudioPipeline"
    assert "class-conditional" in index["_diffusion_studio_unsupported"]
    scheduler = json.loads((out / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "DPMSolverMultistepScheduler" and scheduler["algorithm_type"] == "dpmsolver++"
    assert json.loads((out / "studio.json").read_text())["clip_x0"] is True
    # nothing but the bundle was left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pixel"]


def test_latent_text_class_model(tmp_path, latent_text_model):
    out, _ = _export(latent_text_model, tmp_path / "latent")
    bundle = open_bundle(out, provider="cpu")
    m = bundle.manifest
    assert m.kind == "latent"
    assert (m.latent.channels, m.latent.height, m.latent.width, m.latent.scale_factor) == (4, 8, 8, 0.8)
    assert (m.conditioning.text.max_length, m.conditioning.text.hidden_size, m.conditioning.text.pad_id) == (8, 16, 0)
    roles = {"unet", "vae_decoder", "vae_encoder", "text_encoder"}
    assert set(m.files) == roles | {f"{r}_config" for r in roles} | {"tokenizer", "preview", "scheduler_config",
                                                                      "tokenizer_config"}
    assert m.clip_x0 is False
    vae_config = json.loads((out / "vae_decoder" / "config.json").read_text())
    assert vae_config["scaling_factor"] == 0.8  # the trained one, not diffusers' 0.18215
    index = json.loads((out / "model_index.json").read_text())
    assert "class-conditional" in index["_diffusion_studio_unsupported"]
    assert list(bundle.unet.inputs) == ["sample", "timestep", "encoder_hidden_states", "class_labels"]
    assert list(bundle.vae_decoder.inputs) == ["latent_sample"] and list(bundle.vae_decoder.outputs) == ["sample"]
    assert list(bundle.vae_encoder.inputs) == ["sample"] and list(bundle.vae_encoder.outputs) == ["latent_mean"]
    te = onnx.load(str(out / m.files["text_encoder"]))
    assert [i.name for i in te.graph.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in te.graph.output] == ["last_hidden_state"]
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        assert _parity(m, role)[0]["max_rel"] <= TOLERANCE["fp32"], role
    assert bundle.preview[0].shape == (4, 3)
    # the runtime's tokenizer gives the ids the PyTorch encoder was traced with
    ids = latent_text_model.text_encoder.tokenize(["a red circle"])["input_ids"].numpy()
    assert list(bundle.text.tokenizer.encode("a red circle").ids) == ids[0].tolist()
    # the exported decoder really is D(z / scale_factor) clamped: compare at a new spatial size
    z = np.random.default_rng(5).standard_normal((2, 4, 4, 4)).astype(np.float32)
    import torch

    with torch.no_grad():
        ref = latent_text_model.vae.decode(torch.from_numpy(z)).sample.clamp(-1, 1).numpy()
    got = bundle.vae_decoder.run({"latent_sample": z})
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_inpaint_and_semantic_models(tmp_path, latent_inpaint_model, semantic_model):
    out, _ = _export(latent_inpaint_model, tmp_path / "inpaint")
    m = open_bundle(out, provider="cpu").manifest
    assert m.conditioning.mask.kind == "inpaint"
    assert (m.unet.in_channels, m.unet.out_channels) == (9, 4)
    assert "vae_encoder" in m.files and m.conditioning.class_ is None
    out, _ = _export(semantic_model, tmp_path / "semantic")
    b = open_bundle(out, provider="cpu")
    m = b.manifest
    assert m.conditioning.mask.kind == "semantic"
    assert [(l.name, tuple(l.color)) for l in m.conditioning.mask.labels] == [
        ("sky", (90, 160, 230)), ("grass", (60, 150, 60)), ("rock", (120, 110, 100))]
    assert (m.unet.in_channels, m.unet.out_channels) == (6, 3)
    assert list(b.unet.inputs) == ["sample", "timestep"]


def _perturbing_export(monkeypatch, role="unet", delta=0.5):
    """After export, add noise of std `delta` to the largest weight of `role`: a wrong graph."""
    original = onnx_graphs.export_graph

    def export_then_break(graph, path, **kw):
        path = original(graph, path, **kw)
        if graph.role == role:
            model = onnx.load(str(path))
            inits = list(model.graph.initializer)
            big = max(inits, key=lambda t: numpy_helper.to_array(t).size)
            value = numpy_helper.to_array(big)
            value = value + np.random.default_rng(0).normal(0, delta, value.shape)
            big.CopyFrom(numpy_helper.from_array(value.astype(np.float32), big.name))
            onnx.save(model, str(path))
        return path

    monkeypatch.setattr(onnx_graphs, "export_graph", export_then_break)


def test_wrong_graph_fails_the_check_and_writes_nothing(tmp_path, monkeypatch, pixel_class_model):
    _perturbing_export(monkeypatch)
    with pytest.raises(ParityError, match="unet"):
        _export(pixel_class_model, tmp_path / "broken")
    assert list(tmp_path.iterdir()) == []  # no bundle, no temporary folder


def test_wrong_text_encoder_fails_too(tmp_path, monkeypatch, latent_text_model):
    _perturbing_export(monkeypatch, role="text_encoder")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "studio.json").write_text("{}")  # a (damaged) bundle: may be overwritten
    with pytest.raises(ParityError, match="text_encoder"):
        _export(latent_text_model, tmp_path / "old", overwrite=True)
    assert (tmp_path / "old" / "studio.json").read_text() == "{}"  # the old bundle survives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_check_graph_measures_the_error(tmp_path, pixel_class_model):
    graph = bundle_writer.model_graphs(pixel_class_model)[0]
    path = onnx_graphs.export_graph(graph, tmp_path / "u.onnx")
    good = check_graph(graph, path)
    assert good.ok and good.max_rel < 1e-5
    # the same session, its output scaled by 1.01: a 1% error is caught
    session = make_session(path)

    class Scaled:
        def get_inputs(self):
            return session.get_inputs()

        def get_providers(self):
            return session.get_providers()

        def run(self, names, feeds):
            return [o * np.float32(1.01) for o in session.run(names, feeds)]

    bad = check_graph(graph, path, session=Scaled())
    assert not bad.ok and 0.005 < bad.max_rel < 0.02


def test_existing_out_dir_is_refused_unless_overwrite(tmp_path, pixel_class_model):
    out = tmp_path / "b"
    umask = os.umask(0o022)
    try:
        _export(pixel_class_model, out)
    finally:
        os.umask(umask)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in [out, *out.rglob("*")]}
    assert modes == {k: oct(0o755 if (tmp_path / k).is_dir() else 0o644) for k in modes}  # issue 13: was 0600/0700
    first = (out / "studio.json").read_text()
    with pytest.raises(BundleExistsError, match="--overwrite"):
        _export(pixel_class_model, out)
    assert (out / "studio.json").read_text() == first
    _export(pixel_class_model, out, overwrite=True, fp16=True)
    assert json.loads((out / "studio.json").read_text())["precision"] == "fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temporary or old folder left


@pytest.mark.parametrize("make", ["user_folder", "file", "bundle_with_user_file", "symlink"])
def test_overwrite_replaces_only_a_bundle(tmp_path, pixel_class_model, make):
    """Issue 13: `--overwrite` replaced a folder holding thesis.txt, and a file by a folder."""
    out = tmp_path / "out"
    precious = {"user_folder": out / "thesis.txt", "file": out, "bundle_with_user_file": out / "unet" / "thesis.txt",
                "symlink": tmp_path / "target" / "thesis.txt"}[make]
    if make == "bundle_with_user_file":
        (out / "unet").mkdir(parents=True)
        (out / "studio.json").write_text(json.dumps({"files": {"unet": "unet/model.onnx"}}))
        (out / "unet" / "model.onnx").write_text("weights")
    elif make == "symlink":
        out.symlink_to(tmp_path / "target")
    precious.parent.mkdir(parents=True, exist_ok=True)
    precious.write_text("years of work")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(BundleExistsError, match="choose another folder") as info:
        _export(pixel_class_model, out, overwrite=True)
    assert str(out) in str(info.value) and "\n" not in str(info.value)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before  # nothing touched, nothing left behind
    assert precious.read_text() == "years of work"


def _weight_bytes(path):
    return sum(numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)


def test_fp16_weights_halve_the_weights_within_tolerance(tmp_path, latent_text_model):
    full, _ = _export(latent_text_model, tmp_path / "fp32")
    half, lines = _export(latent_text_model, tmp_path / "fp16", fp16=True)
    m = open_bundle(half, provider="cpu").manifest
    assert m.precision == "fp16"
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        ratio = _weight_bytes(half / m.files[role]) / _weight_bytes(full / m.files[role])
        assert 0.48 < ratio < 0.56, (role, ratio)
        fp32_check, fp16_check = _parity(m, role)
        assert fp16_check["precision"] == "fp16" and fp16_check["tolerance"] == TOLERANCE["fp16"]
        assert fp16_check["max_rel"] <= TOLERANCE["fp16"]
        assert fp16_check["max_rel"] > fp32_check["max_rel"]  # the weights really were rounded
    # the graph computes in fp32: inputs and outputs stay float32
    model = onnx.load(str(half / m.files["unet"]))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)


def test_fp16_file_is_about_half_for_a_real_width(tmp_path):
    from tests.helpers.tiny_models import loaded
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=8).eval()
    model = loaded(kind="pixel", unet=unet, image_size=8, image_channels=3)
    full, _ = _export(model, tmp_path / "fp32")
    half, _ = _export(model, tmp_path / "fp16", fp16=True)
    ratio = (half / "unet/model.onnx").stat().st_size / (full / "unet/model.onnx").stat().st_size
    assert 0.45 < ratio < 0.6


def test_external_data_is_listed_and_hashed(tmp_path, pixel_class_model):
    out, _ = _export(pixel_class_model, tmp_path / "ext", external_data=True)
    m = open_bundle(out, provider="cpu").manifest
    assert m.files["unet_data"] == "unet/model.onnx.data"
    assert "unet/model.onnx.data" in m.sha256
    assert (out / "unet/model.onnx.data").stat().st_size > (out / "unet/model.onnx").stat().st_size


def test_gpu_fp16_converts_unet_and_text_encoder_compute(tmp_path, latent_text_model):
    out, lines = _export(latent_text_model, tmp_path / "gpu16", gpu_fp16=True)
    m = open_bundle(out, provider="cpu").manifest
    assert m.precision == "fp16" and m.provenance["export"]["compute"] == "fp16 (CUDA)"
    for role in ("unet", "text_encoder"):
        check = _parity(m, role)[-1]
        assert check["precision"] == "fp16-compute" and check["max_rel"] <= TOLERANCE["fp16-compute"]
        graph = onnx.load(str(out / m.files[role]))
        assert graph.graph.input[0].type.tensor_type.elem_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64)
        assert any(n.op_type == "Conv" or n.op_type == "MatMul" for n in graph.graph.node)
        assert all(i.data_type != onnx.TensorProto.FLOAT or numpy_helper.to_array(i).size < 16
                   for i in graph.graph.initializer)
    assert _parity(m, "vae_decoder")[-1]["precision"] == "fp16"  # VAE: fp16 weights, fp32 compute


def test_optimize_cuda_without_cuda_is_refused_and_writes_nothing(tmp_path, pixel_class_model, monkeypatch):
    monkeypatch.setattr(bundle_writer, "_cuda_available", lambda: False)
    with pytest.raises(bundle_writer.ExportError, match="CUDA"):
        _export(pixel_class_model, tmp_path / "opt", optimize="cuda")
    assert list(tmp_path.iterdir()) == []


def test_check_false_skips_parity_but_still_writes_a_valid_bundle(tmp_path, pixel_class_model, monkeypatch):
    _perturbing_export(monkeypatch)  # a wrong graph goes through unchecked ...
    out, lines = _export(pixel_class_model, tmp_path / "unchecked", check=False)
    m = open_bundle(out, provider="cpu").manifest
    assert m.provenance["export"]["parity"] == "skipped"  # ... and the bundle says so
    assert not any("max_rel" in line for line in lines)


def test_inconsistent_model_is_a_clear_error(tmp_path, pixel_class_model):
    import dataclasses

    broken = dataclasses.replace(pixel_class_model, class_names=None)
    with pytest.raises(bundle_writer.ExportError, match="class"):
        _export(broken, tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
