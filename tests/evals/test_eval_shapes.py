"""The analytic shapes detector and GenEval-style scoring, validated on procedural scenes whose
structured descriptions are the ground truth."""
import re

import numpy as np
import pytest

from engine.data import shapes as data
from engine.data import shapes_words as words

from benchmarks.evals import shapes

pytestmark = pytest.mark.slow  # PyTorch: scenes drawn by engine.data


@pytest.fixture(scope="module")
def scenes64():
    return shapes.render_scenes(80, seed=31337, size=64)


def test_detector_recovers_single_object_scenes(scenes64):
    singles = [s for s in scenes64 if s.scene["layout"] == "single"]
    assert len(singles) >= 25
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in singles]
    for part in ("colour", "shape", "count", "region", "all"):
        assert np.mean([m[part] for m in matches]) >= 0.95, part


def test_detector_recovers_multi_object_scenes(scenes64):
    multi = [s for s in scenes64 if s.scene["layout"] != "single"][:30]
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in multi]
    assert np.mean([m["all"] for m in matches]) >= 0.9


def test_detector_works_at_32_pixels():
    scenes = [s for s in shapes.render_scenes(40, seed=4242, size=32) if s.scene["layout"] == "single"]
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in scenes]
    assert np.mean([m["all"] for m in matches]) >= 0.9


def test_detector_finds_nothing_on_background_or_noise():
    assert shapes.detect_objects(np.full((64, 64, 3), 40, np.uint8)) == []
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert shapes.detect_objects(noise) == []


def test_every_shape_and_colour_is_recognised_when_drawn_alone():
    # each (colour, shape) pair, held-out ones included, drawn medium-sized in the centre
    for k, (color, shape) in enumerate([(c, s) for c in data.COLORS for s in data.SHAPES]):
        scene = {"objects": [{"shape": shape, "color": color, "size": "medium", "region": "centre",
                              "center": [0.5, 0.5], "radius": data.SIZES["medium"]}],
                 "background": {"kind": "plain", "color": list(data.BACKGROUNDS)[k % len(data.BACKGROUNDS)]},
                 "layout": "single"}
        image, _, _ = data.render_scene(scene, 64)
        found = [(d.color, d.shape, d.region) for d in shapes.detect_objects(image)]
        assert found == [(color, shape, "centre")], (color, shape, found)


def test_prompts_use_only_held_out_pairs_all_categories_and_both_wordings():
    prompts = shapes.make_prompts(6, seed=3)
    assert {p.category for p in prompts} == set(shapes.CATEGORIES + shapes.EXTRA_CATEGORIES)
    assert {p.split for p in prompts} == {"train", "heldout"}
    markers = words.held_out_markers()
    for p in prompts:
        assert (p.objects[0]["color"], p.objects[0]["shape"]) in data.HOLDOUT
        uses_held = any(re.search(rf"\b{re.escape(m)}\b", p.text) for m in markers)
        assert uses_held == (p.split == "heldout"), p
    assert shapes.make_prompts(6, seed=3) == prompts
    # a synonym prompt names its hue by a synonym or a shade ("crimson", "dark red"), never plainly
    for p in (p for p in prompts if p.category == "synonyms"):
        hue = p.objects[0]["color"]
        train, held = words.COLOR_WORDS[hue]
        synonym = any(re.search(rf"\b{w}\b", p.text) for w in train[1:] + held)
        shade = any(f"{s} {hue}" in p.text for s in words.SHADE_WORDS[0] + words.SHADE_WORDS[1])
        assert synonym or shade, p.text
    several = [p for p in shapes.make_prompts(40, seed=1, categories=("counting",), splits=("train",))
               if p.text.startswith("several")]
    assert several and all(p.objects[0]["counts"] == (3, 4) for p in several)


def _render(objects, size=64, background="black"):
    scene = {"objects": [{"size": "medium", "radius": data.SIZES[o.get("size", "medium")],
                          "center": [(data.REGIONS[o["region"]][1] + 0.5) / 3, (data.REGIONS[o["region"]][0] + 0.5) / 3],
                          **o} for o in objects],
             "background": {"kind": "plain", "color": background}, "layout": "mixed"}
    return data.render_scene(scene, size)[0]


def _score(prompt, image):
    return shapes.score_prompt(prompt, shapes.detect_objects(image), image)


def _obj(color, shape, counts=(1,), region=None, size=None):
    return {"color": color, "shape": shape, "counts": counts, "region": region, "size": size}


def test_scoring_against_prompts_on_drawn_answers():
    two = shapes.Prompt("two", "a red heart and a cyan square", (_obj("red", "heart"), _obj("cyan", "square")))
    right = _render([{"shape": "heart", "color": "red", "region": "left"},
                     {"shape": "square", "color": "cyan", "region": "right"}])
    swapped = _render([{"shape": "heart", "color": "cyan", "region": "left"},
                       {"shape": "square", "color": "red", "region": "right"}])
    s_right, s_swap = _score(two, right), _score(two, swapped)
    assert s_right["correct"] and s_right["attribution"]
    # colours and shapes all present, bound wrongly: attribution fails
    assert s_swap["colour"] and s_swap["shape"] and not s_swap["correct"]

    count = shapes.Prompt("counting", "three red hearts", (_obj("red", "heart", (3,)),))
    three = _render([{"shape": "heart", "color": "red", "region": r} for r in ("top left", "centre", "bottom")])
    assert _score(count, three)["correct"] and not _score(count, right)["correct"]
    several = shapes.Prompt("counting", "several red hearts", (_obj("red", "heart", (3, 4)),))
    assert _score(several, three)["correct"]

    pos = shapes.Prompt("position", "a red heart in the top left", (_obj("red", "heart", region="top left"),))
    assert _score(pos, three)["correct"] and not _score(pos, right)["correct"]

    left_of = shapes.Prompt("position", "a red heart to the left of a cyan square",
                            (_obj("red", "heart"), _obj("cyan", "square")), relation="left of")
    above = shapes.Prompt("position", "a red heart above a cyan square",
                          (_obj("red", "heart"), _obj("cyan", "square")), relation="above")
    assert _score(left_of, right)["correct"] and not _score(above, right)["correct"]
    stacked = _render([{"shape": "heart", "color": "red", "region": "top"},
                       {"shape": "square", "color": "cyan", "region": "bottom"}])
    assert _score(above, stacked)["correct"] and not _score(left_of, stacked)["correct"]

    summary = shapes.summarize([two, two, count], [s_right, s_swap, _score(count, three)])
    assert summary["train"]["two"]["correct"] == 0.5 and summary["train"]["counting"]["correct"] == 1.0
    assert summary["train"]["overall"] == 0.75 and "heldout" not in summary


def test_background_and_size_scoring():
    for bg in data.BACKGROUNDS:
        prompt = shapes.Prompt("background", f"a red heart on a {bg} background", (_obj("red", "heart"),),
                               background=bg)
        image = _render([{"shape": "heart", "color": "red", "region": "centre"}], background=bg)
        assert _score(prompt, image)["correct"], bg
        other = "teal" if bg != "teal" else "maroon"
        wrong = _render([{"shape": "heart", "color": "red", "region": "centre"}], background=other)
        assert not _score(prompt, wrong)["correct"], bg
    tiny = shapes.Prompt("size", "a tiny red heart", (_obj("red", "heart", size="tiny"),))
    huge = shapes.Prompt("size", "a huge red heart", (_obj("red", "heart", size="huge"),))
    for size, prompt, other in (("tiny", tiny, huge), ("huge", huge, tiny)):
        image = _render([{"shape": "heart", "color": "red", "region": "centre", "size": size}])
        assert _score(prompt, image)["correct"] and not _score(other, image)["correct"], size
    medium = _render([{"shape": "heart", "color": "red", "region": "centre"}])
    assert not _score(tiny, medium)["correct"] and not _score(huge, medium)["correct"]
