"""Batched VAE decode never changes an image: the batch in one call gives each image the bits it
gets alone (CPU provider), on tiny bundles and on the shipped models; and whole generations at
batch 3 equal the same seeds generated one at a time."""
from pathlib import Path

import numpy as np
import pytest

from desktop.runtime import pipeline
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, decode, generate

MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"


def assert_batch_invariant(bundle, batches=(2, 3, 5)):
    m = bundle.manifest
    rng = np.random.default_rng(0)
    for batch in batches:
        z = rng.standard_normal((batch, m.latent.channels, m.latent.height, m.latent.width)).astype(np.float32)
        alone = np.concatenate([bundle.vae_decoder.run({"latent_sample": z[i:i + 1]}) for i in range(batch)])
        together = bundle.vae_decoder.run({"latent_sample": z})
        np.testing.assert_array_equal(together, alone, err_msg=f"batch {batch} changed an image")


def test_tiny_decoders_are_batch_invariant(bundles):
    for name in ("latent_text", "latent_inpaint"):
        assert_batch_invariant(open_bundle(bundles[name], provider="cpu"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["landscapes", "shapes"])
def test_shipped_decoders_are_batch_invariant(name):
    assert_batch_invariant(open_bundle(MODELS / name, provider="cpu"), batches=(2, 3, 4, 8))


def test_a_batch_is_decoded_in_one_call_on_the_cpu_and_one_by_one_elsewhere(bundles):
    b = open_bundle(bundles["latent_text"], provider="cpu")
    m = b.manifest
    x = np.random.default_rng(1).standard_normal((4, m.latent.channels, m.latent.height, m.latent.width))
    calls = []
    run = b.vae_decoder.run
    b.vae_decoder.run = lambda feeds, output=None: calls.append(len(feeds["latent_sample"])) or run(feeds, output)
    together = decode(b, x.astype(np.float32))
    assert calls == [4]
    calls.clear()
    b.provider = "CUDAExecutionProvider"  # as if: cuDNN may pick another algorithm per batch size
    alone = decode(b, x.astype(np.float32))
    assert calls == [1, 1, 1, 1]
    assert all(np.array_equal(a, c) for a, c in zip(together, alone))


def test_the_pixel_budget_splits_large_batches(bundles, monkeypatch):
    b = open_bundle(bundles["latent_text"], provider="cpu")
    m = b.manifest
    monkeypatch.setattr(pipeline, "DECODE_BATCH_PIXELS", 2 * m.image.height * m.image.width)
    calls = []
    run = b.vae_decoder.run
    b.vae_decoder.run = lambda feeds, output=None: calls.append(len(feeds["latent_sample"])) or run(feeds, output)
    decode(b, np.zeros((5, m.latent.channels, m.latent.height, m.latent.width), np.float32))
    assert calls == [2, 2, 1]


def test_batch_size_never_changes_an_image(bundles):
    b = open_bundle(bundles["latent_text"], provider="cpu")
    together = generate(b, GenerationRequest(prompt="a red cat", seed=7, steps=3, batch_size=3)).images
    for i in range(3):
        (alone,) = generate(b, GenerationRequest(prompt="a red cat", seed=7 + i, steps=3, batch_size=1)).images
        np.testing.assert_array_equal(together[i], alone)


def test_only_the_unet_keeps_its_memory_arena_between_runs(bundles):
    """Sessions called once per image run with arena shrinkage (their CPU memory goes back after
    the run); the U-Net, called every step, keeps its arena. Both give the same bits either way."""
    from desktop.runtime.bundle import SHRINK_AFTER_RUN

    bundle = open_bundle(bundles["latent_text"], provider="cpu")
    seen = {}
    for model in (bundle.unet, bundle.vae_decoder):
        real = model.session.run

        def spy(names, feeds, options=None, _real=real, _role=model.role):
            seen[_role] = options
            return _real(names, feeds, options)

        model.session.run = spy
    result = generate(bundle, GenerationRequest(prompt="a red cat", seed=3, steps=2))
    assert seen == {"unet": None, "vae_decoder": SHRINK_AFTER_RUN}
    assert SHRINK_AFTER_RUN.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    plain = open_bundle(bundles["latent_text"], provider="cpu")
    lat = bundle.manifest.latent
    z = np.random.default_rng(1).standard_normal((1, lat.channels, lat.height, lat.width)).astype(np.float32)
    np.testing.assert_array_equal(bundle.vae_decoder.run({"latent_sample": z}),
                                  plain.vae_decoder.session.run(None, {"latent_sample": z})[0])
    assert len(result.images) == 1
