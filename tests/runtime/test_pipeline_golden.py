"""generate() keeps making the same pictures: recipes of every kind (class, text with a negative
prompt, labels, img2img, inpainting with and without seams, batches, every sampler) on the tiny
bundles, against images recorded in `data/pipeline_golden.npz`.

The images were recorded before generate() was split into stages (one function of 134 lines, main
at 3ffaefe); the split left every image, x_t and preview identical. The latent models' previews were
re-recorded when they became bilinearly upsampled (the images did not change). A change meant to
alter the pictures re-records them, and says so in its commit:

    .venv/bin/python -m tests.runtime.test_pipeline_golden --record

The tolerance is one grey level per pixel (an ONNX Runtime on another CPU may round a float
differently); a wrong random stream, conditioning or composite moves pixels by far more.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
from tests.helpers.tiny_bundles import make_bundle

GOLDEN = Path(__file__).parent / "data" / "pipeline_golden.npz"

BUNDLES = {  # name: make_bundle arguments
    "pixel_class": dict(kind="pixel", cond="class"),
    "latent_text_class": dict(kind="latent", cond="text+class", size=16),
    "pixel_inpaint": dict(kind="pixel", cond="inpaint"),
    "latent_inpaint": dict(kind="latent", cond="inpaint", size=16),
    "pixel_semantic": dict(kind="pixel", cond="semantic"),
    "pixel_gray": dict(kind="pixel", cond=None, channels=1),
}


def _pictures(size: int) -> dict:
    rng = np.random.default_rng(size)
    mask = np.zeros((size, size))
    mask[size // 4: 3 * size // 4, 1: size // 2 + 1] = 1.0
    mask[size // 4, 1] = 0.5
    labels = np.zeros((size, size), np.int64)
    labels[size // 2:] = 1
    labels[size // 2:, : size // 3] = 2
    return {"init": (rng.random((size, size, 3)) * 255).astype(np.uint8), "mask": mask, "labels": labels}


def recipes() -> dict:
    p8, p16 = _pictures(8), _pictures(16)
    return {
        "class-ddpm-batch": ("pixel_class", dict(class_name="two", sampler="ddpm", steps=6, guidance=2.5, seed=11,
                                                 batch_size=2)),
        "class-default": ("pixel_class", dict(class_name="one", seed=3)),
        "no-class-ddim": ("pixel_class", dict(sampler="ddim", steps=5, seed=4)),
        "class-img2img": ("pixel_class", dict(class_name="zero", init_image=p8["init"], strength=0.6, steps=8,
                                              seed=5)),
        "text-negative-batch": ("latent_text_class", dict(prompt="a red cat", negative_prompt="ugly", class_name="one",
                                                          steps=5, seed=6, batch_size=2, guidance=4.0)),
        "text-sde": ("latent_text_class", dict(prompt="blue house", sampler="dpmpp_2m_sde", steps=6, seed=7)),
        "text-img2img": ("latent_text_class", dict(prompt="tree", init_image=p16["init"], strength=0.5, steps=8,
                                                   seed=8)),
        "text-inpaint-any-model": ("latent_text_class", dict(prompt="dog", init_image=p16["init"], mask=p16["mask"],
                                                             steps=5, seed=9)),
        "inpaint": ("pixel_inpaint", dict(init_image=p8["init"], mask=p8["mask"], steps=6, seed=10)),
        "inpaint-seams": ("pixel_inpaint", dict(init_image=p8["init"], mask=p8["mask"], steps=6, seed=10,
                                                seamless=False, sampler="ddpm")),
        "inpaint-nothing-kept": ("pixel_inpaint", dict(steps=4, seed=12)),
        "latent-inpaint-img2img": ("latent_inpaint", dict(init_image=p16["init"], mask=p16["mask"], strength=0.7,
                                                          steps=6, seed=13, batch_size=2)),
        "labels": ("pixel_semantic", dict(labels=p8["labels"], steps=6, seed=14, guidance=3.0)),
        "labels-inpaint": ("pixel_semantic", dict(labels=p8["labels"], init_image=p8["init"], mask=p8["mask"],
                                                  steps=5, seed=15)),
        "no-labels": ("pixel_semantic", dict(steps=4, seed=16)),
        "gray": ("pixel_gray", dict(steps=5, seed=17, sampler="ddim", spacing="leading")),
    }


def run_all(root: Path) -> dict[str, np.ndarray]:
    """recipe name -> its images stacked [B, H, W, 3] uint8, plus "<name>.preview" (the last preview)."""
    opened = {name: open_bundle(make_bundle(root / name, **kw), provider="cpu") for name, kw in BUNDLES.items()}
    out = {}
    for name, (bundle, kw) in recipes().items():
        steps = []
        result = generate(opened[bundle], GenerationRequest(**kw), on_step=steps.append)
        out[name] = np.stack(result.images)
        out[f"{name}.preview"] = np.stack(steps[-1].preview)
    return out


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as f:
        return dict(f)


def test_every_recipe_is_recorded(made, golden):
    assert sorted(made) == sorted(golden)


@pytest.mark.parametrize("name", sorted(recipes()))
def test_same_pictures_as_recorded(made, golden, name):
    for key in (name, f"{name}.preview"):
        got, want = made[key], golden[key]
        assert got.shape == want.shape, key
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1, f"{key}: {np.count_nonzero(diff)} values differ, by up to {diff.max()}"


if __name__ == "__main__" and "--record" in sys.argv:
    with tempfile.TemporaryDirectory() as tmp:
        images = run_all(Path(tmp))
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **images)
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size} bytes, {len(images)} arrays)")
