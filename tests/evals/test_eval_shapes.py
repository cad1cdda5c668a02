"""The analytic shapes detector and GenEval-style scoring, validated on procedural scenes whose
structured descriptions are the ground truth."""
import numpy as np
import pytest

from engine.data import shapes as data

from benchmarks.evals import shapes


@pytest.fixture(scope="module")
def scenes64():
    return shapes.render_scenes(80, seed=31337, size=64)


@pytest.mark.slow
def test_detector_recovers_single_object_scenes(scenes64):
    singles = [s for s in scenes64 if s.scene["layout"] == "single"]
    assert len(singles) >= 25
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in singles]
    for part in ("colour", "shape", "count", "region", "all"):
        assert np.mean([m[part] for m in matches]) >= 0.95, part


@pytest.mark.slow
def test_detector_recovers_multi_object_scenes(scenes64):
    multi = [s for s in scenes64 if s.scene["layout"] != "single"][:30]
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in multi]
    assert np.mean([m["all"] for m in matches]) >= 0.9


@pytest.mark.slow
def test_detector_works_at_32_pixels():
    scenes = [s for s in shapes.render_scenes(40, seed=4242, size=32) if s.scene["layout"] == "single"]
    matches = [shapes.scene_matches(s.scene, shapes.detect_objects(s.image)) for s in scenes]
    assert np.mean([m["all"] for m in matches]) >= 0.9


def test_detector_finds_nothing_on_background_or_noise():
    assert shapes.detect_objects(np.full((64, 64, 3), 40, np.uint8)) == []
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert shapes.detect_objects(noise) == []


@pytest.mark.slow
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


def test_prompts_use_only_held_out_pairs_and_all_categories():
    prompts = shapes.make_prompts(6, seed=3)
    assert {p.category for p in prompts} == set(shapes.CATEGORIES)
    for p in prompts:
        assert (p.objects[0]["color"], p.objects[0]["shape"]) in data.HOLDOUT
        assert p.objects[0]["color"] in p.text
    assert shapes.make_prompts(6, seed=3) == prompts


def _render(objects, size=64):
    scene = {"objects": [{"size": "medium", "radius": data.SIZES["medium"],
                          "center": [(data.REGIONS[o["region"]][1] + 0.5) / 3, (data.REGIONS[o["region"]][0] + 0.5) / 3],
                          **o} for o in objects],
             "background": {"kind": "plain", "color": "black"}, "layout": "mixed"}
    return data.render_scene(scene, size)[0]


@pytest.mark.slow
def test_scoring_against_prompts_on_drawn_answers():
    two = shapes.Prompt("two", "a red heart and a cyan square",
                        ({"color": "red", "shape": "heart", "count": 1, "region": None},
                         {"color": "cyan", "shape": "square", "count": 1, "region": None}))
    right = _render([{"shape": "heart", "color": "red", "region": "left"},
                     {"shape": "square", "color": "cyan", "region": "right"}])
    swapped = _render([{"shape": "heart", "color": "cyan", "region": "left"},
                       {"shape": "square", "color": "red", "region": "right"}])
    s_right = shapes.score_prompt(two, shapes.detect_objects(right))
    s_swap = shapes.score_prompt(two, shapes.detect_objects(swapped))
    assert s_right["correct"] and s_right["attribution"]
    # colours and shapes all present, bound wrongly: attribution fails
    assert s_swap["colour"] and s_swap["shape"] and not s_swap["correct"]

    count = shapes.Prompt("counting", "three red hearts", ({"color": "red", "shape": "heart", "count": 3, "region": None},))
    three = _render([{"shape": "heart", "color": "red", "region": r} for r in ("top left", "centre", "bottom")])
    assert shapes.score_prompt(count, shapes.detect_objects(three))["correct"]
    assert not shapes.score_prompt(count, shapes.detect_objects(right))["correct"]

    pos = shapes.Prompt("position", "a red heart in the top left",
                        ({"color": "red", "shape": "heart", "count": 1, "region": "top left"},))
    assert shapes.score_prompt(pos, shapes.detect_objects(three))["correct"]
    assert not shapes.score_prompt(pos, shapes.detect_objects(right))["correct"]

    summary = shapes.summarize([two, two, count], [s_right, s_swap, {"correct": True, "count": True,
                                                                    "colour": True, "shape": True,
                                                                    "position": None, "attribution": None}])
    assert summary["two"]["correct"] == 0.5 and summary["counting"]["correct"] == 1.0
    assert summary["overall"] == 0.75
