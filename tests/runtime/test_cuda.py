"""The GPU path on a real NVIDIA GPU (skipped where ONNX Runtime's CUDA provider does not load: every
machine this project's CI runs on; DS_REQUIRE_CUDA=1 makes that a failure, as `benchmarks/gpu_bench.sh`
sets it on a GPU machine).
The CPU-side logic of the same code (IOBinding, the VRAM check, the fallback sentence) is tested in
test_device.py and test_providers.py."""
import os

import numpy as np
import onnxruntime as ort
import pytest

from desktop.runtime import memory, providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.device import DeviceRunner
from desktop.runtime.pipeline import GenerationRequest, generate
from tests.helpers.feeds import feeds_for


def cuda_loads() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers() and memory.nvml_free_bytes() is not None


pytestmark = pytest.mark.skipif(not cuda_loads() and not os.environ.get("DS_REQUIRE_CUDA"), reason="no NVIDIA GPU with a loadable CUDA provider here")


def test_generation_on_cuda_matches_the_cpu(bundles):
    request = GenerationRequest(prompt="a red cat", seed=4, steps=4, batch_size=2)
    gpu = open_bundle(bundles["latent_text"], provider="cuda")
    assert gpu.provider == providers.CUDA and gpu.unet.runner is not None
    cpu = open_bundle(bundles["latent_text"], provider="cpu")
    for a, b in zip(generate(cpu, request).images, generate(gpu, request).images):
        d = np.abs(a.astype(int) - b.astype(int))
        assert d.max() <= 3 and d.mean() < 0.5  # fp32 on both; kernels differ in summation order


def test_cuda_graph_replay_gives_the_plain_runs_outputs(bundles):
    unet = open_bundle(bundles["latent_text"], provider="cuda").unet
    feeds = feeds_for(unet)
    plain = DeviceRunner(unet, "cuda", cuda_graph=False)
    graph = DeviceRunner(unet, "cuda", cuda_graph=True)
    for step in range(3):  # the first call captures, the next ones replay with new inputs copied in
        feeds = {**feeds, "sample": feeds["sample"] + step}
        np.testing.assert_allclose(graph.run(feeds, "out_sample"), plain.run(feeds, "out_sample"), atol=1e-5)
    assert graph.cuda_graph and graph.graph is not None, graph.notes


def test_the_vram_estimate_fits_a_tiny_model(bundles):
    b = open_bundle(bundles["latent_text"], provider="cuda")
    est = memory.estimate(b, 1, b.manifest.image.height, b.manifest.image.width, guided=True)
    free = memory.available_bytes(providers.CUDA)
    assert free is not None and 0 < est.needed < free
