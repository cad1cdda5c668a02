"""The GPU path's IOBinding runner, checked on the CPU device (no GPU here): same outputs as
session.run, conditioning copied once per generation, and whole generations unchanged. The VRAM
check before a model opens on CUDA, with the free memory faked."""
from types import SimpleNamespace

import numpy as np
import pytest

from desktop.runtime import bundle as bundle_mod
from desktop.runtime import memory, providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.device import DeviceRunner
from desktop.runtime.pipeline import GenerationRequest, generate
from tests.helpers.feeds import feeds_for


def test_the_runner_gives_session_run_bits_and_keeps_unchanged_inputs_on_the_device(bundles):
    b = open_bundle(bundles["latent_text"], provider="cpu")
    unet = b.unet
    runner = DeviceRunner(unet, "cpu", cuda_graph=True)  # graphs only exist on CUDA: off here
    assert not runner.cuda_graph
    feeds = feeds_for(unet)
    want = unet.session.run(["out_sample"], {k: unet.feed(k, v) for k, v in feeds.items()})[0]
    np.testing.assert_array_equal(runner.run(feeds, "out_sample"), want)
    states = runner.kept["encoder_hidden_states"][1]
    feeds2 = {**feeds, "sample": feeds["sample"] + 1}  # a new x_t, the same conditioning object
    runner.run(feeds2, "out_sample")
    assert runner.kept["encoder_hidden_states"][1] is states  # not copied again
    assert runner.kept["sample"][0] is feeds2["sample"]
    changed = {**feeds, "encoder_hidden_states": feeds["encoder_hidden_states"] * 2}  # a new object: copied
    want2 = unet.session.run(["out_sample"], {k: unet.feed(k, v) for k, v in changed.items()})[0]
    np.testing.assert_array_equal(runner.run(changed, "out_sample"), want2)


@pytest.mark.slow
def test_generation_through_the_runner_is_unchanged(bundles):
    request = GenerationRequest(prompt="a red cat", seed=4, steps=4, batch_size=2)
    plain = open_bundle(bundles["latent_text"], provider="cpu")
    bound = open_bundle(bundles["latent_text"], provider="cpu")
    for model in (bound.unet, bound.vae_decoder, bound.text.model):
        model.runner = DeviceRunner(model, "cpu")
    for a, c in zip(generate(plain, request).images, generate(bound, request).images):
        np.testing.assert_array_equal(a, c)


def fake_cuda_bundle(bundles):
    b = open_bundle(bundles["latent_text"], provider="cpu")
    return SimpleNamespace(manifest=b.manifest, path=b.path, provider=providers.CUDA)


def test_too_little_gpu_memory_falls_back_with_a_sentence(bundles, monkeypatch):
    fake = fake_cuda_bundle(bundles)
    monkeypatch.setattr(providers, "_failed", {})
    monkeypatch.setattr(memory, "available_bytes", lambda provider="": 1024)
    assert not bundle_mod._fits_on_gpu(fake, forced=False)
    note = providers.fallback_note(providers.CPU)
    assert note.startswith("CUDA has too little free memory for this model (1 MB free") or "free" in note
    assert "running on cpu" in note
    with pytest.raises(providers.ProviderError, match="too little free memory.*--provider cpu"):
        bundle_mod._fits_on_gpu(fake, forced=True)
    monkeypatch.setattr(memory, "available_bytes", lambda provider="": 64 * 2**30)
    assert bundle_mod._fits_on_gpu(fake, forced=False)
    monkeypatch.setattr(memory, "available_bytes", lambda provider="": None)  # unknown: never refused
    assert bundle_mod._fits_on_gpu(fake, forced=False)
