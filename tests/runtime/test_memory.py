"""Image sizes a model takes, and the peak-memory estimate that refuses what cannot fit."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from desktop.runtime import memory
from desktop.runtime.bundle import open_bundle
from desktop.runtime.image_size import size_options

SD = Path(__file__).resolve().parents[1] / "fixtures" / "sd"


@pytest.fixture(scope="module")
def sd2():
    return open_bundle(SD / "optimum-sd2", provider="cpu")


@pytest.mark.slow
def test_size_options_of_an_sd_folder(sd2):
    options = size_options(sd2)
    assert options.default == (48, 48) and options.step == 8 and options.flexible  # VAE 4 x 2^(2-1)
    assert options.allows(64, 96) and not options.allows(60, 64) and not options.allows(0, 8)


@pytest.mark.slow
def test_estimate_grows_with_size_batch_and_guidance(sd2):
    small = memory.estimate(sd2, 1, 48, 48, guided=False)
    assert memory.estimate(sd2, 1, 96, 96, guided=False).unet > 4 * small.unet
    assert memory.estimate(sd2, 1, 48, 48, guided=True).unet == 2 * small.unet
    assert memory.estimate(sd2, 3, 48, 48, guided=False).unet == 3 * small.unet
    assert small.weights == sum(p.stat().st_size for p in (SD / "optimum-sd2").rglob("*.onnx"))


def test_sd15_figures_are_the_documented_order_of_magnitude():
    unet = memory.unet_activation_bytes(memory.SD1_UNET, 2, 64, 64)
    vae = memory.vae_decode_bytes(memory.SD1_VAE, 512, 512, 8)
    assert 2.0 * memory.GIB < unet < 2.6 * memory.GIB and 0.7 * memory.GIB < vae < 1.1 * memory.GIB


@pytest.mark.slow
def test_refusal_names_the_largest_size_that_fits(sd2):
    budget = memory.estimate(sd2, 1, 512, 512, guided=True).needed
    with pytest.raises(memory.MemoryEstimateError) as err:
        memory.check_fits(sd2, 1, 1024, 768, guided=True, step=8, available=budget)
    text = str(err.value)
    assert text.startswith("768x1024 at batch 1 needs about")
    w, h = map(int, re.search(r"that fits is (\d+)x(\d+)", text).groups())
    assert w % 8 == 0 and h % 8 == 0 and 0.7 < w / h < 0.8
    assert memory.estimate(sd2, 1, h, w, guided=True).needed <= budget
    assert memory.estimate(sd2, 1, h + 64, w + 48, guided=True).needed > budget
    memory.check_fits(sd2, 1, 48, 48, guided=True, step=8, available=budget)  # fits: no error


def test_this_machine_reports_its_memory():
    assert memory.available_bytes("CPUExecutionProvider") > 0


@pytest.mark.slow
def test_a_request_that_cannot_fit_is_refused_before_anything_runs(sd2, monkeypatch):
    from desktop.runtime.pipeline import GenerationRequest, RequestError, generate
    calls = sd2.unet.calls
    budget = memory.estimate(sd2, 1, 96, 96, guided=True).needed
    monkeypatch.setattr(memory, "available_bytes", lambda provider: budget)
    fits = r"^192x192 at batch 1 needs about .* the largest size of this shape that fits is \d+x\d+$"
    with pytest.raises(RequestError, match=fits):
        generate(sd2, GenerationRequest(prompt="x", width=192, height=192, steps=1))
    with pytest.raises(RequestError, match="multiples of 8"):
        generate(sd2, GenerationRequest(prompt="x", width=52, height=48, steps=1))
    assert sd2.unet.calls == calls
