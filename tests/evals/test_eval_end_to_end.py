"""Each evaluation end to end with a stand-in generator that returns the right answer (procedural
ground truth), so the wiring from prompt/map/mask to score is checked without a trained model."""
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.evals import common, inpaint, landscapes, shapes
from desktop.runtime import pipeline
from engine.data import landscapes as data_land
from engine.data import shapes as data_shapes

pytestmark = pytest.mark.slow  # PyTorch: scenes drawn by engine.data


def fake_bundle(size=64, labels=None):
    mask = SimpleNamespace(kind="semantic", labels=tuple(SimpleNamespace(name=n, color=c) for n, c in labels)) \
        if labels else SimpleNamespace(kind="inpaint", labels=())
    return SimpleNamespace(manifest=SimpleNamespace(
        name="fake", image=SimpleNamespace(height=size, width=size, channels=3),
        conditioning=SimpleNamespace(class_=None, mask=mask)))


def answer_for(prompt: shapes.Prompt) -> np.ndarray:
    """The procedural scene that answers a prompt exactly."""
    relation_cells = {"above": ("top", "bottom"), "below": ("bottom", "top"), "left of": ("left", "right"),
                      "right of": ("right", "left"), "next to": ("left", "centre")}
    fixed = list(relation_cells[prompt.relation]) if prompt.relation else []
    free = [r for r in data_shapes.REGIONS if r not in {o["region"] for o in prompt.objects} | set(fixed)]
    objects = []
    for o in prompt.objects:
        for _ in range(o["counts"][0]):
            region = o["region"] or (fixed.pop(0) if fixed else free.pop(0))
            size = o["size"] or "medium"
            row, col = data_shapes.REGIONS[region] if size != "huge" else (1, 1)
            objects.append({"shape": o["shape"], "color": o["color"], "size": size, "region": region,
                            "center": [(col + 0.5) / 3, (row + 0.5) / 3], "radius": data_shapes.SIZES[size]})
    scene = {"objects": objects, "background": {"kind": "plain", "color": prompt.background or "navy"},
             "layout": "mixed"}
    return data_shapes.render_scene(scene, 64)[0]


def test_shapes_evaluation_scores_right_answers_perfectly(monkeypatch):
    prompts = {p.text: p for p in shapes.make_prompts(3, seed=10_000)}
    prompts.update({p.text: p for p in shapes.make_prompts(2, seed=10_000, categories=tuple(shapes.FLOORS),
                                                           splits=("heldout",))})
    monkeypatch.setattr(common, "open_model", lambda path: fake_bundle())
    monkeypatch.setattr(pipeline, "generate", lambda b, r: SimpleNamespace(
        images=[answer_for(prompts[r.prompt])] * r.batch_size))
    rows = shapes.evaluate("fake", common.parse_samplers("ddim:50"), n_per_category=3)
    for split in shapes.SPLITS:
        assert rows[0][split]["overall"] == 1.0
        assert all(rows[0][split][c]["correct"] == 1.0 for c in shapes.CATEGORIES + shapes.EXTRA_CATEGORIES)
    header, table = shapes.table_rows(rows)
    assert len(table) == 2 and len(header) == len(table[0])
    # a generator that ignores the prompt (always a white circle) fails
    monkeypatch.setattr(pipeline, "generate", lambda b, r: SimpleNamespace(images=[answer_for(shapes.Prompt(
        "single", "", ({"color": "white", "shape": "circle", "counts": (1,), "region": None, "size": None},)))]
        * r.batch_size))
    assert shapes.floor_check("fake", n_small=2)["ok"] is False


def test_landscapes_evaluation_end_to_end(monkeypatch):
    images, maps = landscapes.ordinary_scenes(4, 10_000, 64)
    names, odd = landscapes.unusual_maps(64, n_random=0, seed=10_000)
    by_map = {m.tobytes(): im for im, m in zip(images + landscapes.procedural_images(odd, 1), maps + odd)}
    monkeypatch.setattr(common, "open_model", lambda path: fake_bundle(labels=data_land.LABELS))
    monkeypatch.setattr(pipeline, "generate", lambda b, r: SimpleNamespace(
        images=[by_map[np.asarray(r.labels, np.int64).tobytes()]]))
    result = landscapes.floor_check("fake", n_small=4)
    assert result["ok"] and result["scores"]["miou"] >= 0.8 and result["scores"]["miou_unusual"] >= 0.75


def test_inpaint_evaluation_end_to_end(monkeypatch):
    monkeypatch.setattr(common, "open_model", lambda path: fake_bundle())
    # perfect inpainting of a procedural scene: the init image comes back
    monkeypatch.setattr(pipeline, "generate", lambda b, r: SimpleNamespace(images=[np.asarray(r.init_image)]))
    good = inpaint.floor_check("fake", n_small=4)
    assert good["scores"]["max_abs_kept"] == 0 and good["ok"], good["failures"]
    # a generator that paints the masked box grey and shifts kept pixels fails both measures
    def bad(b, r):
        im = np.asarray(r.init_image).astype(int)
        out = np.where(np.asarray(r.mask)[..., None] > 0.5, 128, im + 20)
        return SimpleNamespace(images=[np.clip(out, 0, 255).astype(np.uint8)])
    monkeypatch.setattr(pipeline, "generate", bad)
    result = inpaint.floor_check("fake", n_small=4)
    assert not result["ok"] and len(result["failures"]) == 2
