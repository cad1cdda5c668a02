"""Forks in the pipeline (docs/FORKS.md): a fork follows its parent exactly for k steps, changes what
it changes after them, equals its parent when it changes nothing, and replays pixel for pixel from
its PNG recipe, forks of forks and batches of forks included."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from desktop.runtime import pngmeta
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, RequestError, generate
from diffusion.samplers import NEEDS_RNG, SAMPLERS


@pytest.fixture(scope="module")
def opened(bundles):
    return {name: open_bundle(path, provider="cpu") for name, path in bundles.items()}


def run(bundle, request):
    steps = []
    result = generate(bundle, request, on_step=steps.append)
    return result, [s.x_t for s in steps]


def parent_dict(result, index=0):
    return pngmeta.make_recipe(result, index)["request"]


def fork_of(result, step, **changes):
    r = result.request
    return replace(r, fork={"parent": parent_dict(result), "step": step}, batch_size=1, **changes)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_fork_that_changes_nothing_is_its_parent(opened, sampler):
    b = opened["pixel_class"]
    parent, parent_x = run(b, GenerationRequest(class_name="one", sampler=sampler, steps=6, guidance=2.0, seed=4))
    fork, fork_x = run(b, fork_of(parent, 3))
    assert np.array_equal(fork.images[0], parent.images[0])
    assert all(np.array_equal(a, c) for a, c in zip(fork_x, parent_x))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_fork_follows_its_parent_for_k_steps_then_its_own_way(opened, sampler):
    b = opened["latent_text"]
    parent, parent_x = run(b, GenerationRequest(prompt="a cat", sampler=sampler, steps=6, guidance=3.0, seed=9))
    fork, fork_x = run(b, fork_of(parent, 2, prompt="a dog", guidance=5.0))
    assert all(np.array_equal(a, c) for a, c in zip(fork_x[:2], parent_x[:2]))   # x_1, x_2: the parent's
    assert not np.array_equal(fork_x[2], parent_x[2])                            # x_3: the fork's own
    assert not np.array_equal(fork.images[0], parent.images[0])
    assert fork.request.fork["step"] == 2 and fork.request.prompt == "a dog"


def test_a_new_seed_changes_a_fork_only_with_a_sampler_that_adds_noise(opened):
    b = opened["pixel_class"]
    for sampler in SAMPLERS:
        parent, _ = run(b, GenerationRequest(class_name="two", sampler=sampler, steps=6, seed=1))
        fork, _ = run(b, fork_of(parent, 3, seed=77))
        assert np.array_equal(fork.images[0], parent.images[0]) == (sampler not in NEEDS_RNG), sampler


def test_a_fork_replays_pixel_for_pixel_from_its_png(opened, bundles, tmp_path):
    b = opened["pixel_semantic"]
    labels = np.zeros((8, 8), np.int64)
    labels[4:] = 1
    parent, _ = run(b, GenerationRequest(labels=labels, sampler="ddpm", steps=8, guidance=2.0, seed=3))
    other = labels.copy()
    other[:, :3] = 2
    fork, _ = run(b, fork_of(parent, 3, labels=other, seed=12))
    png = pngmeta.save_png(fork.images[0], pngmeta.make_recipe(fork, 0), tmp_path, "fork")
    grandchild, _ = run(b, replace(fork.request, fork={"parent": parent_dict(fork), "step": 5}, seed=40))
    png2 = pngmeta.save_png(grandchild.images[0], pngmeta.make_recipe(grandchild, 0), tmp_path, "fork-of-fork")
    fresh = open_bundle(bundles["pixel_semantic"], provider="cpu")      # another session: no state shared
    for path, made in ((png, fork), (png2, grandchild)):
        replayed = generate(fresh, pngmeta.read_recipe(path))
        assert np.array_equal(replayed.images[0], made.images[0]), path.name
    assert not np.array_equal(grandchild.images[0], fork.images[0])


def test_a_batch_of_forks_shares_the_parents_steps_and_each_image_replays_alone(opened):
    b = opened["pixel_class"]
    parent, _ = run(b, GenerationRequest(class_name="one", sampler="dpmpp_2m_sde", steps=6, seed=5))
    batch, batch_x = run(b, replace(fork_of(parent, 2, seed=100), batch_size=3))
    assert np.array_equal(batch_x[1][0], batch_x[1][2])          # the same x_2 for every image
    assert len({im.tobytes() for im in batch.images}) == 3         # different after the fork
    alone, _ = run(b, fork_of(parent, 2, seed=102))
    assert np.array_equal(alone.images[0], batch.images[2])


def test_an_inpainting_fork_keeps_its_own_mask(opened):
    b = opened["latent_inpaint"]
    init = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16))
    mask[:, :8] = 1
    parent, _ = run(b, GenerationRequest(init_image=init, mask=mask, sampler="ddim", steps=6, seed=2))
    mask2 = np.zeros((16, 16))
    mask2[:8] = 1
    fork, _ = run(b, fork_of(parent, 3, mask=mask2))
    keep = mask2 == 0
    assert np.array_equal(fork.images[0][keep], init[keep])          # the fork's mask decides what is kept
    same, _ = run(b, fork_of(parent, 3))
    assert np.array_equal(same.images[0], parent.images[0])


def test_a_fork_that_cannot_continue_its_parent_is_refused_in_one_sentence(opened):
    b = opened["pixel_class"]
    parent, _ = run(b, GenerationRequest(class_name="one", sampler="ddim", steps=6, seed=5))
    for bad, match in ((fork_of(parent, 3, steps=8), "fork: steps must be the parent's"),
                       (fork_of(parent, 3, sampler="ddpm"), "fork: sampler"),
                       (fork_of(parent, 6), "fork.step must be from 1 to 5"),
                       (replace(parent.request, fork={"parent": {**parent_dict(parent), "init_image": "/etc/passwd"}, "step": 2}),
                        "inline image"),
                       (replace(parent.request, fork={"parent": {**parent_dict(parent), "class_name": "nine"}, "step": 2}),
                        "class 'nine'")):
        with pytest.raises(RequestError, match=match):
            generate(b, bad)


def test_a_recipe_whose_fork_is_malformed_is_refused_naming_the_png(opened, tmp_path):
    from PIL import Image, PngImagePlugin
    import json

    b = opened["pixel_class"]
    parent, _ = run(b, GenerationRequest(class_name="one", steps=4, seed=5))
    recipe = pngmeta.make_recipe(parent, 0)
    for fork, match in (({"parent": {"init_image": "/etc/passwd"}, "step": 2}, "names a file"),
                        ({"parent": parent_dict(parent), "step": "2"}, "fork.step"), ([1, 2], "'fork' must be")):
        recipe["request"]["fork"] = fork
        info = PngImagePlugin.PngInfo()
        info.add_text(pngmeta.CHUNK, json.dumps(recipe), zip=True)
        path = tmp_path / "bad.png"
        Image.new("RGB", (8, 8)).save(path, pnginfo=info)
        with pytest.raises(pngmeta.RecipeError, match=match) as e:
            pngmeta.read_recipe(path)
        assert "bad.png" in str(e.value)
