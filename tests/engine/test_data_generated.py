"""engine.data shapes / landscapes / digits: deterministic procedural sets with honest annotations."""
import re

import numpy as np
import pytest
import torch

from engine.data import GeneratedDataset, item_rng
from engine.data import digits, landscapes, shapes
from engine.data import shapes_words as words

pytestmark = pytest.mark.slow  # PyTorch: engine.data gives tensors

torch.set_num_threads(1)


# ---------------------------------------------------------------- determinism (all generators)

@pytest.mark.parametrize("name", ["shapes", "landscapes", "digits"])
def test_same_seed_same_items_and_item_i_independent_of_count(name):
    small = GeneratedDataset(name, count=3, seed=7)
    large = GeneratedDataset(name, count=12, seed=7)
    for i in (2, 0):  # out of order on purpose
        a, b = small[i], large[i]
        assert torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"] and a["class"] == b["class"]
        if "labels" in a:
            assert torch.equal(a["labels"], b["labels"])
    module = {"shapes": shapes, "landscapes": landscapes, "digits": digits}[name]
    again = module.make_item(7, 2)
    assert np.array_equal(again.image, module.make_item(7, 2).image)
    x = small[0]["image"]
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("name", ["shapes", "landscapes"])
def test_different_seeds_and_indices_differ(name):
    module = {"shapes": shapes, "landscapes": landscapes}[name]
    imgs = [module.make_item(s, i).image for s, i in [(0, 0), (0, 1), (1, 0)]]
    assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[0], imgs[2])
    # seeds are not shifted copies of each other: item 1 of seed 0 is not item 0 of seed 1
    assert not np.array_equal(imgs[1], imgs[2])


def test_resize_option_gives_smaller_images_and_labels():
    ds = GeneratedDataset("shapes", count=2, seed=0, size=32)
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["labels"].shape == (32, 32)
    assert set(item["labels"].unique().tolist()) <= set(range(len(shapes.LABELS)))


# ---------------------------------------------------------------- shapes

SHAPE_ITEMS = [shapes.make_item(3, i) for i in range(80)]


def _mentions(caption, words):
    return any(w in caption for w in words)


def _hue_words(hue):
    train, _ = words.COLOR_WORDS[hue]
    shades = [f"{s} {train[0]}" for s in words.SHADE_WORDS[0]] if hue != "white" else []
    return list(train) + shades


def _regions_named(cap, scene):
    return all(_mentions(cap, words.REGION_WORDS[o["region"]][0]) for o in scene["objects"])


def _relation_named(cap, scene):
    objs = scene["objects"]
    if len(objs) != 2:
        return False
    held = shapes.relations(objs[0]["region"], objs[1]["region"])
    return any(f" {w} " in cap for r in held for w in words.RELATION_WORDS[r][0])


def test_shapes_captions_name_each_objects_colour_shape_and_place():
    layouts, kinds = set(), set()
    for it in SHAPE_ITEMS:
        scene, cap = it.scene, it.caption
        layouts.add(scene["layout"])
        assert cap == scene["caption"]
        for o in scene["objects"]:
            assert _mentions(cap, _hue_words(o["color"])), (cap, o)
            assert _mentions(cap, shapes.SHAPE_WORDS[o["shape"]]), (cap, o)
        # every object's region, a relation that holds between two objects, or no place at all
        no_place = not any(_mentions(cap, train) for train, _ in words.REGION_WORDS.values()) and \
            not any(f" {w} " in cap for train, _ in words.RELATION_WORDS.values() for w in train)
        kind = "regions" if _regions_named(cap, scene) else "relation" if _relation_named(cap, scene) else \
            "none" if no_place or scene["objects"][0]["size"] == "huge" else None
        assert kind is not None, cap
        kinds.add(kind)
        if scene["layout"] == "group":
            assert _mentions(cap, words.COUNT_WORDS[len(scene["objects"])][0]), cap
    assert layouts == {"single", "group", "mixed"}
    assert kinds == {"regions", "relation", "none"}


def test_training_captions_never_use_a_held_out_wording():
    markers = words.held_out_markers()
    assert {"scarlet", "beneath", "a trio of", "colored"} <= set(markers)
    for i in range(1500):
        cap = shapes.make_item(11, i).caption
        hits = [m for m in markers if re.search(rf"\b{re.escape(m)}\b", cap)]
        assert not hits, (cap, hits)


def test_every_colour_word_names_one_hue():
    seen = {}
    for hue, (train, held) in words.COLOR_WORDS.items():
        assert hue in shapes.COLORS and train[0] == hue
        for w in train + held:
            assert seen.setdefault(w, hue) == hue, w
    for bg, (train, held) in words.BACKGROUND_WORDS.items():
        assert bg in shapes.BACKGROUNDS and not set(train) & set(held)
    assert seen["crimson"] == "red" and seen["violet"] == "purple" and seen["scarlet"] == "red"


def test_relations_follow_the_grid():
    assert shapes.relations("top left", "bottom left") == ["above"]
    assert shapes.relations("bottom", "top") == ["below"]
    assert shapes.relations("left", "centre") == ["left of", "next to"]
    assert shapes.relations("right", "left") == ["right of"]
    assert shapes.relations("top left", "centre") == []


def test_sizes_counts_and_mixed_pairs():
    sizes, counts = set(), set()
    for it in SHAPE_ITEMS + [shapes.make_item(5, i) for i in range(200)]:
        objs = it.scene["objects"]
        sizes |= {o["size"] for o in objs}
        counts.add(len(objs))
        if any(o["size"] == "huge" for o in objs):
            assert len(objs) == 1 and objs[0]["region"] == "centre"
        if it.scene["layout"] == "mixed":
            assert len({(o["color"], o["shape"]) for o in objs}) == len(objs)
            assert len(objs) <= shapes.MAX_MIXED
    assert sizes == set(shapes.SIZES) and counts == {1, 2, 3, 4}


def test_shapes_class_is_the_first_and_largest_object():
    for it in SHAPE_ITEMS:
        objs = it.scene["objects"]
        assert it.class_index == shapes.SHAPES.index(objs[0]["shape"])
        sizes = [shapes.SIZES[o["size"]] for o in objs]
        assert sizes == sorted(sizes, reverse=True)
        assert len({o["region"] for o in objs}) == len(objs)


def test_held_out_pairs_never_appear_unless_asked():
    scenes = [shapes.make_scene(item_rng(0, i)) for i in range(1500)]
    assert not any(shapes.is_held_out(s) for s in scenes)
    pairs = {(o["color"], o["shape"]) for s in scenes for o in s["objects"]}
    assert len(pairs) == len(shapes.COLORS) * len(shapes.SHAPES) - len(shapes.HOLDOUT)
    free = [shapes.make_scene(item_rng(0, i), holdout=False) for i in range(1500)]
    assert any(shapes.is_held_out(s) for s in free)
    assert len(shapes.HOLDOUT) == 5 and all(c in shapes.COLORS and s in shapes.SHAPES for c, s in shapes.HOLDOUT)


def _interior(mask):
    """Pixels whose whole 3 x 3 neighbourhood is in the mask (away from antialiased edges)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.all([padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def test_shapes_label_maps_agree_with_pixels_and_colours_segment_analytically():
    colour_names = list(shapes.COLORS)
    for it in SHAPE_ITEMS[:40]:
        found = shapes.color_index_map(it.image)
        for o in it.scene["objects"]:
            x0, y0, x1, y1 = o["bbox"]
            assert x1 > x0 and y1 > y0
            inside = np.zeros_like(it.labels, bool)
            inside[y0:y1, x0:x1] = True
            mine = inside & (it.labels == shapes.SHAPES.index(o["shape"]) + 1)
            core = _interior(mine)
            assert core.sum() >= (4 if o["size"] != "tiny" else 2), o
            exact = np.all(it.image[core] == shapes.COLORS[o["color"]], axis=-1)
            assert exact.mean() > 0.85, o  # fully covered pixels carry the exact colour
            assert np.all(found[core] == colour_names.index(o["color"]))
            # antialiased edges included, nearly every labelled pixel is detected as the colour
            assert (found[mine] == colour_names.index(o["color"])).mean() > 0.7
        background = _interior(it.labels == 0)
        assert np.all(found[background] == -1), it.scene["background"]


def test_render_scene_redraws_the_same_scene_at_another_size():
    it = SHAPE_ITEMS[0]
    img, lab, boxes = shapes.render_scene(it.scene, 64)
    assert np.array_equal(img, it.image) and np.array_equal(lab, it.labels)
    img2, lab2, _ = shapes.render_scene(it.scene, 128)
    assert img2.shape == (128, 128, 3)
    assert set(np.unique(lab2)) == set(np.unique(lab))


# ---------------------------------------------------------------- landscapes

LAND_ITEMS = [landscapes.make_item(0, i) for i in range(40)]
HORIZON_ITEMS = [it for it in LAND_ITEMS if it.scene["kind"] == "horizon"]


def test_landscape_horizon_layouts_are_plausible():
    idx = landscapes.L
    ground = {idx[n] for n in ("water", "sand", "grass", "trees", "rock")}
    classes = set()
    assert len(HORIZON_ITEMS) >= 12
    for it in HORIZON_ITEMS:
        lab = it.labels
        assert lab.shape == (64, 64) and lab.max() < len(landscapes.LABELS)
        assert set(np.unique(lab[0])) <= {idx["sky"], idx["clouds"]}, "sky on top"
        assert set(np.unique(lab[-1])) <= ground, "ground at the bottom"
        ys, xs = np.nonzero(lab == idx["snow"])
        assert np.all(ys < it.scene["horizon"] * 63 + 1), "snow only on mountains above the horizon"
        for y, x in zip(ys, xs):  # snow caps sit on mountains (unless a tree stands in front)
            below = lab[y:, x][lab[y:, x] != idx["snow"]]
            assert below[0] in (idx["mountains"], idx["trees"])
        grass = lab == idx["grass"]
        if grass.sum() > 50:
            g = it.image[grass].astype(float).mean(0)
            assert g[1] > g[2], "grass is greener than blue"
        assert it.class_index == landscapes.LAYOUTS.index(it.scene["layout"])
        assert {landscapes.LABELS[i][0] for i in np.unique(lab)} == set(it.scene["labels_present"])
        classes.add(it.scene["layout"])
    assert len(classes) >= 4
    assert any((it.labels == idx["snow"]).any() for it in HORIZON_ITEMS)
    assert any((it.labels == idx["trees"]).any() for it in HORIZON_ITEMS)


def test_random_label_maps_put_any_label_anywhere():
    items = [landscapes.make_item(4, i) for i in range(150)]
    maps = [it for it in items if it.scene["kind"] == "map"]
    assert 0.35 < len(maps) / len(items) < 0.65
    assert {it.scene["map"] for it in maps} == set(landscapes.MAP_KINDS)
    top_labels = {int(v) for it in maps for v in np.unique(it.labels[:8])}
    assert top_labels == set(range(len(landscapes.LABELS))), "every label appears at the top of some map"
    singles = [it for it in maps if it.scene["map"] == "single"]
    assert singles and all(len(np.unique(it.labels)) == 1 for it in singles)
    # thin regions: some band or stroke is at most 3 pixels across
    def thinnest(lab):
        return min(np.diff(np.flatnonzero(np.diff(lab[:, x]) != 0)).min(initial=64) for x in (10, 32, 50))
    assert any(thinnest(it.labels) <= 3 for it in maps if it.scene["map"] in ("bands", "spots"))
    for it in maps:
        assert it.class_index == landscapes.LAYOUTS.index(it.scene["layout"])


def test_a_label_looks_the_same_wherever_it_is_painted():
    """Mean colour of a label on a random map and in a horizon scene drawn in the same style agree
    (the look comes from the label and the style, not from where it is)."""
    style = landscapes.make_style(np.random.default_rng(0))
    lab = landscapes.draw_map("bands", 3, 64)
    drawn = landscapes.apply_lighting(landscapes.draw_labels(lab, style), style)
    horizon = next(it.scene for it in HORIZON_ITEMS if it.scene["layout"] in ("meadow", "forest"))
    image, labels = landscapes.render_scene(horizon, 64, style)
    grass = landscapes.L["grass"]
    if (lab == grass).sum() > 20:
        assert np.abs(drawn[lab == grass].mean(0) - image[labels == grass].mean(0)).max() < 20


def test_styles_change_the_look_not_the_map():
    rng = np.random.default_rng(1)
    for it in LAND_ITEMS[:6]:
        a, la = landscapes.render_scene(it.scene, 64, landscapes.make_style(rng))
        b, lb = landscapes.render_scene(it.scene, 64, landscapes.make_style(rng))
        assert np.array_equal(la, lb) and np.array_equal(la, it.labels)
        assert np.sqrt(np.mean((a.astype(float) - b) ** 2)) > 3


def test_landscape_captions_follow_the_scene():
    for it in HORIZON_ITEMS:
        cap, s = it.caption, it.scene
        assert ("snow" in cap) == bool(s["snow"]), cap
        assert ("sunset" in cap) == (s["lighting"] == "evening"), cap
        if s["layout"] == "forest":
            assert "forest" in cap
    for it in LAND_ITEMS:
        if it.scene["kind"] == "map":
            assert all(name in it.caption for name in it.scene["labels_present"])


# ---------------------------------------------------------------- digits

def test_digits_are_the_sklearn_images():
    from sklearn.datasets import load_digits

    d = load_digits()
    it = digits.make_item(0, 5, size=8)
    assert it.image.shape == (8, 8, 1)
    assert np.array_equal(it.image[:, :, 0], np.rint(d.images[5] * 255 / 16).astype(np.uint8))
    assert it.class_index == d.target[5] and str(d.target[5]) in it.caption
    native = digits.make_item(0, 5)
    assert native.image.shape == (16, 16, 1)
    ds = GeneratedDataset("digits", count=20)
    assert ds.classes == [str(i) for i in range(10)] and ds[3]["image"].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="1797"):
        GeneratedDataset("digits", count=5000)
    with pytest.raises(ValueError, match="unknown data set"):
        GeneratedDataset("cats", count=5)
