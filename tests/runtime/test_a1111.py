"""A1111 PNGs, honestly (issue 11.5): read as A1111 reads them, every field we cannot apply named.

The PNG fixtures were written by AUTOMATIC1111 itself (fixtures/a1111/README.md); the text cases are
in the format A1111 1.9+ writes (`processing.create_infotext`: "Schedule type" as its own field,
"Lora hashes" quoted, hires-fix fields, "Version").
"""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from desktop.runtime import a1111
from desktop.runtime.pngmeta import read_recipe, read_recipe_dict

FIXTURES = Path(__file__).parent / "fixtures" / "a1111"

MODERN = ('a castle on a hill <lora:castleLora:0.8>, (masterpiece:1.2)\n'
          'Negative prompt: blurry, ugly\n'
          'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 12345, Size: 512x768, '
          'Model hash: abc123def0, Model: dreamshaper_8, Denoising strength: 0.4, Clip skip: 2, '
          'Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent, '
          'Lora hashes: "castleLora: deadbeef", Version: v1.10.1')


@pytest.mark.parametrize("name", ["automatic1111_cropped.png", "text_after_idat.png"])
def test_real_a1111_pngs(name):
    recipe = read_recipe_dict(FIXTURES / name)
    r = recipe["request"]
    assert recipe["source"] == "a1111"
    assert (r["prompt"], r["negative_prompt"]) == ("photo of a duck", "monochrome")
    assert (r["steps"], r["guidance"], r["seed"], r["width"], r["height"]) == (15, 5.0, 235284042, 512, 400)
    assert recipe["model"] == {"name": "realistic_realisticVisionV20_v20", "hash": "c0d1994c73"}
    assert r["sampler"] == "unipc"  # A1111's UniPC is ours too (the sampler table)
    assert not any("UniPC" in n for n in recipe.get("notes", []))
    assert read_recipe(FIXTURES / name).model == "realistic_realisticVisionV20_v20"


def test_modern_infotext_lists_everything_it_cannot_apply():
    params = a1111.parse(MODERN)
    assert params["Lora hashes"] == "castleLora: deadbeef" and params["Size"] == "512x768"
    request, model, notes = a1111.to_request(params)
    assert request["prompt"] == "a castle on a hill, (masterpiece:1.2)"  # the LoRA tag goes to the note
    assert request["negative_prompt"] == "blurry, ugly"
    assert (request["steps"], request["guidance"], request["seed"]) == (20, 7.0, 12345)
    assert (request["width"], request["height"], request["sampler"]) == (512, 768, "dpmpp_2m_karras")
    assert model == {"name": "dreamshaper_8", "hash": "abc123def0"}
    text = "; ".join(notes)
    for words in ("LoRA castleLora (0.8)", "clip skip 2", "hires fix (upscale 2, steps 10, upscaler Latent)",
                  "(word:1.2)"):
        assert words in text, (words, text)
    assert "Karras" not in text  # DPM++ 2M Karras is ours
    assert "Version" not in text and "strength" not in text  # the strength belongs to the hires pass here
    assert "strength" not in request


@pytest.mark.parametrize("sampler,schedule,ours,unapplied", [
    ("DPM++ 2M", None, "dpmpp_2m", None), ("DPM++ 2M", "Automatic", "dpmpp_2m", None), ("DDIM", None, "ddim", None),
    ("DPM++ 2M SDE", None, "dpmpp_2m_sde", None), ("DPM++ 2M", "Karras", "dpmpp_2m_karras", None),
    ("DPM++ 2M SDE", "Karras", "dpmpp_2m_sde_karras", None), ("DPM++ 2M Karras", None, "dpmpp_2m_karras", None),
    ("Euler a", None, "euler_a", None), ("Euler", None, "euler", None), ("UniPC", None, "unipc", None),
    ("LCM", None, "lcm", None), ("Euler a", "Karras", "euler_a", "karras"), ("Heun", None, None, None),
    ("DPM++ 2M SDE", "Exponential", "dpmpp_2m_sde", "exponential"),
])
def test_sampler_names(sampler, schedule, ours, unapplied):
    assert a1111.sampler_from_a1111(sampler, schedule) == (ours, unapplied)


def test_old_style_karras_names_map_to_ours():
    """A1111 before 1.9 wrote 'DPM++ 2M Karras' in one field; a schedule we lack is named in a note."""
    request, _, notes = a1111.to_request(a1111.parse("cat\nSteps: 10, Sampler: DPM++ 2M Karras, CFG scale: 5, Seed: 1"))
    assert request["sampler"] == "dpmpp_2m_karras" and not any("Karras" in n for n in notes)
    request, _, notes = a1111.to_request(a1111.parse("cat\nSteps: 10, Sampler: Euler a Karras, CFG scale: 5, Seed: 1"))
    assert request["sampler"] == "euler_a" and any("Karras schedule" in n for n in notes)


@pytest.mark.parametrize("line,bad", [
    ("Steps: many, Sampler: DDIM, CFG scale: 7, Seed: 1", "Steps"),
    ("Steps: 20, Sampler: DDIM, CFG scale: nan, Seed: 1", "CFG scale"),
    ("Steps: 20, Sampler: DDIM, CFG scale: 7, Seed: -1", "Seed"),
    ("Steps: 20, Sampler: DDIM, CFG scale: 7, Seed: 99999999999999999999", "Seed"),
    ("Steps: 20, Sampler: DDIM, CFG scale: 7, Seed: 1, Size: 100000x100000", "Size"),
])
def test_values_we_cannot_read_are_named_not_dropped(line, bad):
    request, _, notes = a1111.to_request(a1111.parse("a cat\n" + line))
    assert any(n.startswith(bad) for n in notes), notes


def test_quoting_round_trips_like_a1111():
    for value in ("plain", "a, b", "key: value", 'say "hi"', "two\nlines"):
        line = f"Steps: 1, Sampler: DDIM, Class: {a1111.quote(value)}, Seed: 2"
        assert a1111.parse("p\n" + line)["Class"] == value


def test_a_prompt_alone_is_a_prompt(tmp_path):
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "just a prompt, with a comma: and a colon")
    Image.new("RGB", (2, 2)).save(tmp_path / "p.png", pnginfo=info)
    assert read_recipe(tmp_path / "p.png").prompt == "just a prompt, with a comma: and a colon"
