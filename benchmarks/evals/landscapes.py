"""Landscapes evaluation: mIoU between the painted label map and what a per-pixel judge sees.

Two sets of painted maps, reported apart:
- **ordinary**: horizon scenes (sky above mountains above water, sand, grass, trees, rock) at
  evaluation seeds;
- **unusual**: the named maps of `UNUSUAL_MAPS` (water above sky, half snow / half sand, a tree
  disk in grass, only water, a 4-label checkerboard, a thin river across grass) and random label
  maps (`engine.data.landscapes.draw_map`: regions, bands, spots, checkers) at evaluation seeds.
Seed diversity: `DIVERSITY_MAPS` ordinary maps, `DIVERSITY_SEEDS` seeds each; per map the mean
pairwise RMS difference (0..255) of its images, and the share of seed pairs that differ visibly
(RMS >= `VISIBLE_RMS`), beside the same for the procedural data drawn in as many random styles.

The judge is a random forest (sklearn, 24 trees, depth 18) on per-pixel features: RGB and
chromaticity; mean and std over 3x3 and 7x7 windows; 5x5 means of the rows d above, d below and
2d below (d = H/10: what lies under snow is rock, under a cloud is sky); the row position; the
image's mean colour (lighting). It is fitted on procedural landscapes only (`engine.data.landscapes`,
horizon scenes and random label maps alike, seed `TRAIN_SEED`, never an evaluation seed; the same
number of pixels of every label), half of them degraded by a slight blur and noise so that a
generator's softer output is not out of distribution. Fitting takes a few seconds, so it is
refitted per process (cached in memory per image size), never loaded from disk.

mIoU: IoU per label over all evaluated pixels (confusion matrix summed over images), averaged over
the labels present in the painted maps. Painted maps are procedural scenes at evaluation seeds.
"""
from __future__ import annotations

import argparse
import functools

import numpy as np
from scipy import ndimage

from . import common

TRAIN_SEED = 424_242
TRAIN_IMAGES = 100
TRAIN_PIXELS = 60_000
# The shipped model at n_small=12 (DPM-Solver++ 20): mIoU 0.575 ordinary, 0.353 on the named unusual
# maps (the GPU-trained model before its random-map fine-tune: 0.640 and 0.227).
FLOORS = {"miou": 0.5, "miou_unusual": 0.25}
UNUSUAL_RANDOM = 6           # random label maps beside the named unusual ones
DIVERSITY_MAPS, DIVERSITY_SEEDS = 4, 4
VISIBLE_RMS = 10.0


def _data():
    from engine.data import landscapes as data

    return data


def label_names() -> list[str]:
    return [name for name, _ in _data().LABELS]


# --------------------------------------------------------------------------- judge


def _shifted_mean(x: np.ndarray, size: int, dy: int) -> np.ndarray:
    """Window mean of the pixel dy rows below (dy < 0: above), edges repeated."""
    m = ndimage.uniform_filter(x, (size, size, 1), mode="nearest")
    out = np.empty_like(m)
    if dy > 0:
        out[:-dy], out[-dy:] = m[dy:], m[-1:]
    else:
        out[-dy:], out[:-dy] = m[:dy], m[:1]
    return out


def pixel_features(image) -> np.ndarray:
    """uint8 [H,W,3] -> float32 [H*W, 31] (see the module docstring)."""
    x = common.as_rgb_uint8(image).astype(np.float32) / 255.0
    h, w, _ = x.shape
    feats = [x, x / (x.sum(-1, keepdims=True) + 1e-3)]
    for s in (3, 7):
        m = ndimage.uniform_filter(x, (s, s, 1))
        m2 = ndimage.uniform_filter(x * x, (s, s, 1))
        feats += [m, np.sqrt(np.clip(m2 - m * m, 0, None))]
    d = max(2, h // 10)
    feats += [_shifted_mean(x, 5, d), _shifted_mean(x, 5, -d), _shifted_mean(x, 5, 2 * d)]
    feats.append(np.broadcast_to((np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None, None], (h, w, 1)))
    feats.append(np.broadcast_to(x.mean((0, 1)), (h, w, 3)))
    return np.concatenate(feats, -1).reshape(h * w, -1).astype(np.float32)


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slight Gaussian blur (sigma 0.3..1 px) and noise (std 0..4 levels): a generator's look."""
    x = ndimage.gaussian_filter(image.astype(np.float32), (rng.uniform(0.3, 1.0),) * 2 + (0,))
    x = x + rng.normal(0, rng.uniform(0, 4), x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def scenes(n: int, seed: int, size: int):
    """n procedural (image, label map) pairs, index 0..n-1 of `seed`, at size x size."""
    data = _data()
    items = [data.make_item(seed, i, size=size) for i in range(n)]
    return [it.image for it in items], [it.labels.astype(np.int64) for it in items]


def ordinary_scenes(n: int, seed: int, size: int):
    """n horizon scenes (the first n of `seed`'s items that are one), as (images, label maps)."""
    data = _data()
    images, maps, i = [], [], 0
    while len(images) < n:
        it = data.make_item(seed, i, size=size)
        if it.scene["kind"] == "horizon":
            images.append(it.image)
            maps.append(it.labels.astype(np.int64))
        i += 1
    return images, maps


def _unusual_named(size: int) -> dict[str, np.ndarray]:
    data = _data()
    lab = data.L
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    full = lambda name: np.full((size, size), lab[name], np.int64)  # noqa: E731
    water_sky = np.where(yy < 0.5, lab["water"], lab["sky"])
    snow_sand = np.where(xx < 0.5, lab["snow"], lab["sand"])
    disk = np.where((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.28 ** 2, lab["trees"], lab["grass"])
    four = np.array([lab["grass"], lab["water"], lab["sand"], lab["snow"]])
    cell = (np.minimum((yy * 4).astype(int), 3), np.minimum((xx * 4).astype(int), 3))
    checker = four[2 * (cell[0] % 2) + cell[1] % 2]
    river = np.where(np.abs(yy - 0.5 - 0.15 * np.sin(xx * 6)) < 0.04, lab["water"], lab["grass"])
    return {"water above sky": water_sky, "half snow / half sand": snow_sand, "tree disk in grass": disk,
            "only water": full("water"), "4-label checkerboard": checker, "thin river in grass": river}


UNUSUAL_MAPS = ("water above sky", "half snow / half sand", "tree disk in grass", "only water",
                "4-label checkerboard", "thin river in grass")


def unusual_maps(size: int, n_random: int = UNUSUAL_RANDOM, seed: int = 10_000) -> tuple[list[str], list[np.ndarray]]:
    """(names, label maps): the named unusual maps, then n_random random label maps."""
    data = _data()
    named = _unusual_named(size)
    names, maps = list(UNUSUAL_MAPS), [named[k] for k in UNUSUAL_MAPS]
    rng = np.random.default_rng(seed)
    for k in range(n_random):
        kind = data.MAP_KINDS[k % len(data.MAP_KINDS)]
        names.append(f"random {kind}")
        maps.append(data.draw_map(kind, int(rng.integers(2**31)), size).astype(np.int64))
    return names, maps


def procedural_images(maps: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """The procedural drawing of each label map in a random style (the data's own answer)."""
    data = _data()
    rng = np.random.default_rng(seed)
    styles = [data.make_style(rng) for _ in maps]
    return [data.apply_lighting(data.draw_labels(m.astype(np.uint8), st), st) for m, st in zip(maps, styles)]


@functools.lru_cache(maxsize=4)
def fit_judge(size: int = 64, n_images: int = TRAIN_IMAGES, seed: int = TRAIN_SEED):
    """The per-pixel random forest for images of size x size (a few seconds)."""
    from sklearn.ensemble import RandomForestClassifier

    images, labels = scenes(n_images, seed, size)
    rng = np.random.default_rng(seed)
    images = [degrade(im, rng) if k % 2 else im for k, im in enumerate(images)]
    x = np.concatenate([pixel_features(im) for im in images])
    y = np.concatenate([lab.ravel() for lab in labels])
    per_label = TRAIN_PIXELS // len(label_names())  # balanced: rare labels (snow, rock) count as much
    pick = np.concatenate([rng.choice(np.flatnonzero(y == k), min(per_label, int((y == k).sum())), replace=False)
                           for k in np.unique(y)])
    clf = RandomForestClassifier(n_estimators=24, max_depth=18, min_samples_leaf=2, n_jobs=2, random_state=0)
    return clf.fit(x[pick], y[pick])


def predict_labels(image, judge=None) -> np.ndarray:
    """The judge's label map int64 [H,W] of a uint8 [H,W,3] image (indices into LABELS)."""
    image = common.as_rgb_uint8(image)
    h, w = image.shape[:2]
    judge = judge or fit_judge(h)
    return judge.predict(pixel_features(image)).reshape(h, w).astype(np.int64)


def miou(truth_maps, predicted_maps, num_labels: int | None = None) -> dict:
    """{"miou", "per_label": {name: IoU or nan}, "pixel_accuracy"} from the summed confusion matrix;
    the mean is over labels present in the truth maps."""
    k = num_labels or len(label_names())
    conf = np.zeros((k, k), np.int64)
    for t, p in zip(truth_maps, predicted_maps):
        np.add.at(conf, (np.asarray(t).ravel(), np.asarray(p).ravel()), 1)
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    names = label_names()
    return {"miou": float(np.nanmean(iou)) if present.any() else float("nan"),
            "per_label": {names[i]: float(iou[i]) for i in range(k)},
            "pixel_accuracy": float(inter.sum() / max(conf.sum(), 1))}


def score_landscapes(images, label_maps) -> dict:
    h = common.as_rgb_uint8(images[0]).shape[0]
    judge = fit_judge(h)
    return miou(label_maps, [predict_labels(im, judge) for im in images])


# --------------------------------------------------------------------------- with a model


def model_label_maps(bundle, maps: list[np.ndarray]) -> list[np.ndarray]:
    """Our maps (indices into engine.data.landscapes.LABELS) as indices into the bundle's labels,
    matched by name; a label the bundle lacks is a clear error."""
    spec = bundle.manifest.conditioning.mask
    if spec is None or spec.kind != "semantic":
        raise ValueError(f"bundle {bundle.manifest.name!r} takes no semantic label map (conditioning.mask)")
    theirs = [lab.name for lab in spec.labels]
    ours = label_names()
    missing = [n for n in ours if n not in theirs]
    if missing:
        raise ValueError(f"bundle {bundle.manifest.name!r} labels {theirs} lack {missing}")
    lut = np.array([theirs.index(n) for n in ours], np.int64)
    return [lut[m] for m in maps]


def generate_for_maps(bundle, setting, maps, seed: int):
    images, seconds = [], []
    for k, m in enumerate(model_label_maps(bundle, maps)):
        ims, sec = common.generate_images(bundle, setting, seed + k, 1, 1, labels=m)
        images.append(ims[0])
        seconds.append(sec)
    return images, float(np.mean(seconds))


def seed_diversity(image_sets: list[np.ndarray]) -> dict:
    """For groups of images of one map each ([k, H, W, 3] uint8): the mean pairwise RMS difference
    (0..255) and the share of pairs at least VISIBLE_RMS apart."""
    rms = []
    for group in image_sets:
        g = np.asarray(group, np.float32)
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                rms.append(float(np.sqrt(np.mean((g[i] - g[j]) ** 2))))
    rms = np.asarray(rms)
    return {"rms": float(rms.mean()), "visible": float(np.mean(rms >= VISIBLE_RMS))}


def procedural_diversity(n_maps: int, seed: int, size: int, seeds: int = DIVERSITY_SEEDS) -> dict:
    """seed_diversity of the data itself: each ordinary scene redrawn in `seeds` random styles."""
    data = _data()
    rng = np.random.default_rng(seed)
    groups, i = [], 0
    while len(groups) < n_maps:
        it = data.make_item(seed, i, size=size)
        i += 1
        if it.scene["kind"] == "horizon":
            groups.append([data.render_scene(it.scene, size, data.make_style(rng))[0] for _ in range(seeds)])
    return seed_diversity(groups)


def model_diversity(bundle, setting, maps: list[np.ndarray], seed: int, seeds: int = DIVERSITY_SEEDS) -> dict:
    groups = [common.generate_images(bundle, setting, seed + 100 * k, seeds, seeds, labels=m)[0]
              for k, m in enumerate(model_label_maps(bundle, maps))]
    return seed_diversity(groups)


def evaluate(model_path, settings=common.SAMPLER_SETTINGS, n: int = 12, seed: int = 10_000) -> list[dict]:
    """One row per sampler setting: {"setting", "seconds_per_image", "ordinary": scores,
    "unusual": scores, "per_map": {name: pixel accuracy}, "diversity": {...}}."""
    bundle = common.open_model(model_path)
    h, _ = common.image_size(bundle)
    _, ordinary = ordinary_scenes(n, seed, h)
    names, unusual = unusual_maps(h, seed=seed)
    rows = []
    for setting in common.with_default(bundle, settings):
        images, sec = generate_for_maps(bundle, setting, ordinary, seed)
        odd, _ = generate_for_maps(bundle, setting, unusual, seed + 500)
        per_map = {nm: miou([m], [predict_labels(im)])["pixel_accuracy"] for nm, m, im in zip(names, unusual, odd)}
        rows.append({"setting": setting.label, "seconds_per_image": sec,
                     "ordinary": score_landscapes(images, ordinary), "unusual": score_landscapes(odd, unusual),
                     "per_map": per_map,
                     "diversity": model_diversity(bundle, setting, ordinary[:DIVERSITY_MAPS], seed + 900)})
    return rows


def reference_row(n: int, seed: int, size: int) -> dict:
    """The same measures for the procedural data itself (the judge's ceiling)."""
    images, ordinary = ordinary_scenes(n, seed, size)
    names, unusual = unusual_maps(size, seed=seed)
    odd = procedural_images(unusual, seed)
    return {"setting": "procedural (ceiling)", "seconds_per_image": float("nan"),
            "ordinary": score_landscapes(images, ordinary), "unusual": score_landscapes(odd, unusual),
            "per_map": {nm: miou([m], [predict_labels(im)])["pixel_accuracy"] for nm, m, im in zip(names, unusual, odd)},
            "diversity": procedural_diversity(DIVERSITY_MAPS, seed, size)}


def floor_check(model_path, n_small: int = 12, seed: int = 10_000) -> dict:
    """Default sampler (DPM-Solver++ 20), n_small ordinary maps and the named unusual maps, against FLOORS."""
    bundle = common.open_model(model_path)
    h, _ = common.image_size(bundle)
    _, maps = ordinary_scenes(n_small, seed, h)
    images, _ = generate_for_maps(bundle, common.DEFAULT_SETTING, maps, seed)
    ordinary = score_landscapes(images, maps)
    names, unusual = unusual_maps(h, n_random=0, seed=seed)
    odd, _ = generate_for_maps(bundle, common.DEFAULT_SETTING, unusual, seed + 500)
    scores = {"miou": ordinary["miou"], "pixel_accuracy": ordinary["pixel_accuracy"],
              "miou_unusual": score_landscapes(odd, unusual)["miou"]}
    return common.floor_result(scores, FLOORS)


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    header = ["sampler", "mIoU ordinary", "pixel acc ordinary", "mIoU unusual", "pixel acc unusual",
              *[f"acc: {n}" for n in UNUSUAL_MAPS], "seed RMS", "seed pairs visible", "s/image"]
    table = [[r["setting"], r["ordinary"]["miou"], r["ordinary"]["pixel_accuracy"], r["unusual"]["miou"],
              r["unusual"]["pixel_accuracy"], *[r["per_map"][n] for n in UNUSUAL_MAPS], r["diversity"]["rms"],
              r["diversity"]["visible"], r["seconds_per_image"]] for r in rows]
    return header, table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, "landscapes", n=12)
    args = parser.parse_args(argv)
    rows = evaluate(args.model, common.parse_samplers(args.samplers), args.n, args.seed)
    size = common.image_size(common.open_model(args.model))[0]
    header, table = table_rows(rows + [reference_row(args.n, args.seed, size)])
    names = label_names()
    per_label = [[r["setting"]] + [r["ordinary"]["per_label"][n] for n in names] for r in rows]
    common.print_report("landscapes: mIoU of painted label maps (ordinary vs unusual) by a per-pixel judge, "
                        "and seed diversity", args.model, header, table,
                        notes=f"{args.n} ordinary maps (procedural, seeds from {args.seed}); {len(UNUSUAL_MAPS)} named "
                              f"+ {UNUSUAL_RANDOM} random unusual maps; diversity: {DIVERSITY_MAPS} maps x "
                              f"{DIVERSITY_SEEDS} seeds; judge fitted on seed {TRAIN_SEED}",
                        record="landscapes" if args.record else None)
    print()
    print(common.format_table(["sampler (ordinary IoU)"] + names, per_label))
