"""`export --optimize cuda --gpu-fp16` on a real NVIDIA GPU: the order fp32 -> fuse -> fp16, every
fused graph checked against PyTorch on the CUDA provider, and the bundle generating on CUDA. Skipped
where the CUDA provider does not load (set DS_REQUIRE_CUDA=1 to make that a failure, as
benchmarks/gpu_bench.sh does)."""
import os

import numpy as np
import onnx
import pytest

from desktop.runtime import memory, providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
from export import optimize as export_optimize
from export.bundle_writer import export_bundle

CUDA_HERE = "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers() \
    and memory.nvml_free_bytes() is not None
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CUDA_HERE and not os.environ.get("DS_REQUIRE_CUDA"),
                                 reason="no NVIDIA GPU with a loadable CUDA provider here")]


def test_optimize_cuda_fp16_is_checked_on_cuda_and_generates(tmp_path, latent_text_model):
    out = export_bundle(latent_text_model, tmp_path / "cuda", optimize="cuda", gpu_fp16=True, log=lambda s: None,
                        preview_samples=8)
    b = open_bundle(out, provider="cuda")
    assert b.provider == providers.CUDA and b.manifest.providers == ("cuda",)
    unet = onnx.load(str(out / b.manifest.files["unet"]))
    ops = {n.op_type for n in unet.graph.node}
    assert ops & set(export_optimize.CUDA_ONLY)  # fused for CUDA (GroupNorm, NhwcConv, ...)
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in unet.graph.initializer)  # fp16 compute
    images = generate(b, GenerationRequest(prompt="a red circle", seed=1, steps=3, class_name="cat")).images
    assert all(np.isfinite(i.astype(float)).all() and i.std() > 0 for i in images)
