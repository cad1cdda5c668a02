"""Recipes in PNGs: generate -> save -> read_recipe -> regenerate gives the same pixels; A1111 text."""
import json

import numpy as np
import pytest
from PIL import Image

from desktop.runtime import a1111
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
from desktop.runtime.pngmeta import (
    RecipeError, a1111_text, make_recipe, read_recipe, read_recipe_dict, save_png, save_result,
)


@pytest.fixture(scope="module")
def opened(bundles):
    return {name: open_bundle(path, provider="cpu") for name, path in bundles.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name, kw", [
    ("latent_text", dict(prompt="a red cat", negative_prompt="ugly, dog", sampler="ddpm", steps=4, guidance=2.5)),
    ("pixel_class", dict(class_name="two", init_image=np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8),
                         mask=np.random.default_rng(1).random((8, 8)), steps=3)),
    ("pixel_semantic", dict(labels=np.random.default_rng(2).integers(0, 3, (8, 8)), steps=3)),
    ("latent_text", dict(prompt="tree", init_image=np.full((16, 16, 3), 90, np.uint8), strength=0.5)),
])
def test_recipe_round_trip_reproduces_pixels(opened, tmp_path, name, kw):
    b = opened[name]
    result = generate(b, GenerationRequest(seed=7, batch_size=2, **kw))
    paths = save_result(result, tmp_path)
    assert [p.name for p in paths] == [f"{name}-7.png", f"{name}-8.png"]
    request = read_recipe(paths[1])
    assert request.seed == 8 and request.batch_size == 1 and request.model == name
    again = generate(b, request)
    np.testing.assert_array_equal(again.images[0], result.images[1])
    np.testing.assert_array_equal(np.array(Image.open(paths[1])), result.images[1])


def test_chunks_hold_the_full_recipe(opened, tmp_path):
    b = opened["latent_text"]
    result = generate(b, GenerationRequest(prompt="blue house", negative_prompt="tree", seed=3, steps=4))
    path = save_result(result, tmp_path)[0]
    text = Image.open(path).text
    assert text["parameters"].splitlines() == [
        "blue house", "Negative prompt: tree",
        f"Steps: 4, Sampler: DDIM, CFG scale: 2.0, Seed: 3, Size: 16x16, Model hash: {result.model_hash[:10]}, "
        "Model: latent_text"]
    recipe = json.loads(text["diffusion-studio"])
    assert recipe["model"] == {"name": "latent_text", "hash": b.model_hash}
    assert recipe["provider"] == "CPUExecutionProvider" and recipe["precision"] == "fp32"
    assert {"onnxruntime", "numpy"} <= set(recipe["versions"])
    assert recipe["request"]["sampler"] == "ddim" and recipe["request"]["spacing"] == "trailing"


def test_read_recipe_from_a1111_png(tmp_path):
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a dog\nSteps: 12, Sampler: DDIM, CFG scale: 4, Seed: 77, Size: 16x16, Model: latent_text")
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png", pnginfo=info)
    req = read_recipe(tmp_path / "a.png")
    assert (req.prompt, req.steps, req.sampler, req.guidance, req.seed, req.model) == ("a dog", 12, "ddim", 4.0, 77, "latent_text")


def test_a1111_text_parses_back(opened):
    result = generate(opened["pixel_class"], GenerationRequest(class_name="one", seed=5, steps=2))
    request, model, notes = a1111.to_request(a1111.parse(a1111_text(make_recipe(result, 0))))
    assert notes == []
    assert (request["seed"], request["steps"], request["class_name"], model["name"]) == (5, 2, "one", "pixel_class")


def test_save_png_never_overwrites(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    paths = [save_png(image + i, None, tmp_path, "x") for i in range(3)]
    assert [p.name for p in paths] == ["x.png", "x-1.png", "x-2.png"]
    assert [int(np.array(Image.open(p))[0, 0, 0]) for p in paths] == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x-1.png", "x-2.png", "x.png"]  # no temporaries left


def test_png_without_recipe(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    with pytest.raises(RecipeError, match="no recipe"):
        read_recipe_dict(tmp_path / "plain.png")
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(RecipeError, match="not a PNG"):
        read_recipe(tmp_path / "bad.png")


def test_app_and_cli_name_output_pngs_the_same_way():
    """One rule (pngmeta.output_stem) for `generate` (save_result) and the app (its worker)."""
    from desktop.runtime.pngmeta import output_stem

    assert output_stem("digits", 7) == "digits-7"
    assert output_stem("my model (v2)", 7) == "my-model-v2-7"
    assert output_stem("a/b\\c..d", 0) == "a-b-c-d-0"  # never a path separator or a dot run
    assert output_stem("über_modell", 3) == "über_modell-3"
    assert output_stem("???", 1) == "image-1"
    assert len(output_stem("x" * 300, 12345)) == 40 + len("-12345")
