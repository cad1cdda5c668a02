"""An LCM folder generates with the LCM sampler: one U-Net call per step, guidance fed as the
guidance embedding `timestep_cond` of w = guidance - 1 (diffusers' LatentConsistencyModelPipeline),
never as two calls."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
from desktop.runtime.sd_folder import guidance_embedding

LCM = Path(__file__).resolve().parents[1] / "fixtures" / "sd" / "optimum-lcm"


@pytest.mark.slow
def test_lcm_folder_generates_with_the_guidance_embedding():
    b = open_bundle(LCM, provider="cpu")
    assert b.manifest.defaults.sampler == "lcm"
    seen = []
    run = b.unet.run

    def spy(feeds, **kw):
        seen.append({k: np.array(v) for k, v in feeds.items()})
        return run(feeds, **kw)

    b.unet.run = spy
    r = generate(b, GenerationRequest(prompt="a red house", steps=4, guidance=6.0, seed=3))
    assert r.unet_calls == 4 and len(seen) == 4
    assert all(f["sample"].shape[0] == 1 for f in seen)  # no classifier-free doubling
    np.testing.assert_array_equal(seen[0]["timestep_cond"], guidance_embedding(5.0, b.sd.timestep_cond_dim, 1))
    assert [int(np.asarray(f["timestep"]).reshape(-1)[0]) for f in seen] == [999, 759, 499, 259]
    assert r.images[0].dtype == np.uint8 and r.images[0].std() > 0
