"""The landscapes per-pixel judge, validated on held-out procedural scenes (ground-truth maps)."""
import numpy as np
import pytest

from benchmarks.evals import landscapes


@pytest.fixture(scope="module")
def judge():
    return landscapes.fit_judge(64)


@pytest.mark.slow
def test_judge_reaches_high_miou_on_held_out_scenes(judge):
    images, maps = landscapes.scenes(16, seed=2024, size=64)
    assert landscapes.TRAIN_SEED != 2024
    scores = landscapes.miou(maps, [landscapes.predict_labels(im, judge) for im in images])
    assert scores["miou"] >= 0.8
    assert scores["pixel_accuracy"] >= 0.9


@pytest.mark.slow
def test_judge_tolerates_a_generators_softer_look(judge):
    images, maps = landscapes.scenes(8, seed=2025, size=64)
    rng = np.random.default_rng(1)
    soft = [landscapes.degrade(im, rng) for im in images]
    assert landscapes.score_landscapes(soft, maps)["miou"] >= 0.75


@pytest.mark.slow
def test_judge_reads_unusual_maps_drawn_procedurally(judge):
    names, maps = landscapes.unusual_maps(64)
    assert names[:len(landscapes.UNUSUAL_MAPS)] == list(landscapes.UNUSUAL_MAPS)
    images = landscapes.procedural_images(maps, seed=7)
    scores = landscapes.score_landscapes(images, maps)
    assert scores["miou"] >= 0.75 and scores["pixel_accuracy"] >= 0.9
    only_water = maps[names.index("only water")]
    assert len(np.unique(only_water)) == 1


@pytest.mark.slow  # PyTorch: the scenes come from engine.data
def test_seed_diversity_measures_differences():
    same = [np.full((3, 8, 8, 3), 100, np.uint8)]
    assert landscapes.seed_diversity(same) == {"rms": 0.0, "visible": 0.0}
    apart = [np.stack([np.full((8, 8, 3), v, np.uint8) for v in (0, 20, 40)])]
    d = landscapes.seed_diversity(apart)
    assert d["rms"] == pytest.approx((20 + 40 + 20) / 3) and d["visible"] == 1.0
    data = landscapes.procedural_diversity(2, seed=3, size=32)
    assert data["visible"] > 0.5


@pytest.mark.slow
def test_wrong_maps_score_low(judge):
    images, maps = landscapes.scenes(8, seed=2026, size=64)
    flipped = [m[::-1] for m in maps]  # sky painted at the bottom
    assert landscapes.score_landscapes(images, flipped)["miou"] < 0.4


@pytest.mark.slow  # PyTorch: the scenes come from engine.data
def test_miou_oracle():
    t = np.array([[0, 0], [1, 1]])
    p = np.array([[0, 1], [1, 1]])
    s = landscapes.miou([t], [p])
    # label 0: I=1, U=2; label 1: I=2, U=3
    assert s["miou"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert s["pixel_accuracy"] == 0.75
