"""`export --optimize cpu|cuda`: fusions valid for the target provider, checked against PyTorch,
recorded in the manifest; what ONNX Runtime's CPU provider really lacks (the reason for the split)."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from desktop.runtime import providers as providers_mod
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
from export import optimize as export_optimize


def one_op_session(op: str, inputs: int, **attrs):
    """A CPU session of a one-node com.microsoft graph (raises where the CPU has no kernel)."""
    ins = [helper.make_tensor_value_info(f"i{k}", TensorProto.FLOAT, None) for k in range(inputs)]
    node = helper.make_node(op, [f"i{k}" for k in range(inputs)], ["o"], domain="com.microsoft", **attrs)
    graph = helper.make_graph([node], "g", ins, [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                   helper.make_opsetid("com.microsoft", 1)])
    return ort.InferenceSession(model.SerializeToString(), providers_mod.session_options(),
                                providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("op, inputs, attrs", [
    ("GroupNorm", 3, dict(epsilon=1e-5, groups=4, activation=0)),
    ("SkipGroupNorm", 4, dict(epsilon=1e-5, groups=4, activation=0)),
    ("BiasSplitGelu", 2, {}),
    ("NhwcConv", 2, {}),
    ("BiasAdd", 3, {}),
])
def test_the_cuda_only_operators_have_no_cpu_kernel(op, inputs, attrs):
    assert op in export_optimize.CUDA_ONLY
    with pytest.raises(Exception, match="implementation"):
        one_op_session(op, inputs, **attrs)


@pytest.mark.parametrize("op, inputs, attrs", [
    ("MultiHeadAttention", 3, dict(num_heads=2)), ("Attention", 3, dict(num_heads=2)),
    ("SkipLayerNormalization", 4, dict(epsilon=1e-5)), ("Gelu", 1, {}), ("BiasGelu", 2, {}),
])
def test_the_cpu_fusions_have_cpu_kernels(op, inputs, attrs):
    one_op_session(op, inputs, **attrs)


@pytest.mark.slow
def test_optimize_cpu_fuses_attention_checks_parity_and_records_providers(tmp_path, latent_text_model, capfd):
    from export.bundle_writer import export_bundle  # PyTorch: slow tests only (tests/helpers/fast_target.py)

    lines = []
    out = export_bundle(latent_text_model, tmp_path / "cpu", optimize="cpu", log=lines.append, preview_samples=8)
    assert "fusion" not in capfd.readouterr().err  # no progress bar from the optimizer
    m = open_bundle(out, provider="cpu").manifest
    assert m.providers == ("cpu", "cuda") and json.loads((out / "studio.json").read_text())["format_version"] == 2
    assert m.provenance["export"]["optimized"] == "cpu"
    unet_checks = m.provenance["export"]["parity"]["unet"]
    assert len(unet_checks) == 2 and all(c["max_rel"] <= c["tolerance"] for c in unet_checks)  # raw and fused
    ops = {(n.domain, n.op_type) for n in onnx.load(str(out / m.files["unet"])).graph.node}
    assert ("com.microsoft", "MultiHeadAttention") in ops or ("com.microsoft", "Attention") in ops
    assert not {op for _, op in ops} & set(export_optimize.CUDA_ONLY)
    plain = export_bundle(latent_text_model, tmp_path / "plain", log=lambda s: None, preview_samples=8)
    request = GenerationRequest(prompt="a red circle", seed=1, steps=3, class_name="cat")
    fused_images = generate(open_bundle(out, provider="cpu"), request).images
    plain_images = generate(open_bundle(plain, provider="cpu"), request).images
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(fused_images, plain_images)) <= 1


@pytest.mark.slow
def test_optimize_cuda_without_cuda_is_refused_and_writes_nothing(tmp_path, pixel_class_model, monkeypatch):
    from export import bundle_writer
    from export.bundle_writer import export_bundle

    monkeypatch.setattr(bundle_writer, "_cuda_available", lambda: False)
    with pytest.raises(bundle_writer.ExportError, match="CUDA"):
        export_bundle(pixel_class_model, tmp_path / "opt", optimize="cuda", log=lambda s: None)
    assert list(tmp_path.iterdir()) == []
    assert bundle_writer.optimize_target("auto") == "cpu"
    with pytest.raises(bundle_writer.ExportError, match="cpu or cuda"):
        bundle_writer.optimize_target("tpu")


def test_a_cpu_target_graph_with_a_cuda_only_operator_is_refused():
    node = helper.make_node("GroupNorm", ["x", "g", "b"], ["y"], domain="com.microsoft")
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    with pytest.raises(ValueError, match="GroupNorm, which only CUDA runs"):
        export_optimize.check_target(model, "cpu", "unet")
    export_optimize.check_target(model, "cuda", "unet")
    with pytest.raises(ValueError, match="cannot run"):
        export_optimize.optimize_graph("unused.onnx", "unet", "cpu", fusions=["groupnorm"])


@pytest.mark.slow
@pytest.mark.parametrize("width, fused", [(8, False), (320, True)])
def test_bias_split_gelu_is_fused_only_at_widths_the_cuda_kernel_runs(tmp_path, width, fused):
    """A transformer block of `width` channels (GEGLU bias 8 x width): SD 1.x's 320 fuses to BiasSplitGelu;
    a small model's 8 (bias 64, which the CUDA kernel refuses at run time) keeps the unfused pattern."""
    import torch
    from diffusers.models.attention import BasicTransformerBlock

    block = BasicTransformerBlock(width, 1, width, cross_attention_dim=16).eval()
    path = tmp_path / "block.onnx"
    args = (torch.randn(1, 4, width), None, torch.randn(1, 3, 16))
    torch.onnx.export(block, args, str(path), input_names=["x", "encoder_hidden_states"], dynamo=False, opset_version=17)
    fused_graph = export_optimize.optimize_graph(path, "unet", "cuda")
    assert ("BiasSplitGelu" in export_optimize.operators(fused_graph)) is fused
    assert export_optimize.unsupported_split_gelu(fused_graph) == []


@pytest.mark.slow
def test_a_fused_operator_the_provider_refuses_is_left_out_and_the_graph_fused_again(tmp_path, latent_text_model,
                                                                                     monkeypatch):
    """The check runs every fused graph on its provider; where ONNX Runtime refuses one of its operators
    for this graph's shapes (as CUDA's BiasSplitGelu did for a small model), the export fuses again
    without that fusion instead of failing. Any other failure still fails the export."""
    from export import parity
    from export.bundle_writer import export_bundle

    real_check = parity.check_graph

    def refusing_attention(graph, path, **kw):
        ops = export_optimize.operators(onnx.load(str(path), load_external_data=False))
        if ops & {"Attention", "MultiHeadAttention"}:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while "
                               "running MultiHeadAttention node. Name:'MultiHeadAttention_0'")
        return real_check(graph, path, **kw)

    monkeypatch.setattr(parity, "check_graph", refusing_attention)
    lines = []
    out = export_bundle(latent_text_model, tmp_path / "cpu", optimize="cpu", log=lines.append, preview_samples=8)
    unet = onnx.load(str(out / "unet" / "model.onnx"))
    assert not export_optimize.operators(unet) & {"Attention", "MultiHeadAttention"}
    assert export_optimize.operators(unet) & {"LayerNormalization", "SkipLayerNormalization"}  # the rest stays fused
    assert any("without 'attention'" in line for line in lines), lines

    def failing(graph, path, **kw):
        raise RuntimeError("Non-zero status code returned while running Conv node. Name:'Conv_0'")

    monkeypatch.setattr(parity, "check_graph", failing)  # Conv is no fusion: nothing to leave out
    with pytest.raises(RuntimeError, match="Conv node"):
        export_bundle(latent_text_model, tmp_path / "cpu2", optimize="cpu", log=lambda s: None, preview_samples=8)
