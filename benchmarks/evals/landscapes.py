"""Landscapes evaluation: mIoU between the painted label map and what a per-pixel judge sees.

The judge is a random forest (sklearn, 24 trees, depth 18) on per-pixel features: RGB and
chromaticity; mean and std over 3x3 and 7x7 windows; 5x5 means of the rows d above, d below and
2d below (d = H/10: what lies under snow is rock, under a cloud is sky); the row position; the
image's mean colour (lighting). It is fitted on procedural landscapes only (`engine.data.landscapes`,
seed `TRAIN_SEED`, never an evaluation seed), half of them degraded by a slight blur and noise so
that a generator's softer output is not out of distribution. Fitting takes a few seconds, so it is
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
TRAIN_IMAGES = 60
TRAIN_PIXELS = 40_000
FLOORS = {"miou": 0.5}


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


@functools.lru_cache(maxsize=4)
def fit_judge(size: int = 64, n_images: int = TRAIN_IMAGES, seed: int = TRAIN_SEED):
    """The per-pixel random forest for images of size x size (a few seconds)."""
    from sklearn.ensemble import RandomForestClassifier

    images, labels = scenes(n_images, seed, size)
    rng = np.random.default_rng(seed)
    images = [degrade(im, rng) if k % 2 else im for k, im in enumerate(images)]
    x = np.concatenate([pixel_features(im) for im in images])
    y = np.concatenate([lab.ravel() for lab in labels])
    pick = rng.choice(len(x), min(len(x), TRAIN_PIXELS), replace=False)
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


def evaluate(model_path, settings=common.SAMPLER_SETTINGS, n: int = 24, seed: int = 10_000) -> list[dict]:
    bundle = common.open_model(model_path)
    h, _ = common.image_size(bundle)
    _, maps = scenes(n, seed, h)
    return _evaluate_maps(bundle, maps, settings, seed)


def _evaluate_maps(bundle, maps, settings, seed: int) -> list[dict]:
    """One row per sampler setting on the label maps of scenes(n, seed, h)."""
    rows = []
    for setting in common.with_default(bundle, settings):
        images, sec = generate_for_maps(bundle, setting, maps, seed)
        rows.append({"setting": setting.label, "seconds_per_image": sec, **score_landscapes(images, maps)})
    return rows


def floor_check(model_path, n_small: int = 6, seed: int = 10_000) -> dict:
    """Default sampler (DPM-Solver++ 20) on n_small fixed painted maps, against FLOORS."""
    bundle = common.open_model(model_path)
    h, _ = common.image_size(bundle)
    _, maps = scenes(n_small, seed, h)
    images, _ = generate_for_maps(bundle, common.DEFAULT_SETTING, maps, seed)
    scores = score_landscapes(images, maps)
    return common.floor_result({"miou": scores["miou"], "pixel_accuracy": scores["pixel_accuracy"]}, FLOORS)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, "landscapes", n=24)
    args = parser.parse_args(argv)
    bundle = common.open_model(args.model)
    images, maps = scenes(args.n, args.seed, common.image_size(bundle)[0])
    rows = _evaluate_maps(bundle, maps, common.parse_samplers(args.samplers), args.seed)
    names = label_names()
    header = ["sampler", "mIoU", "pixel acc"] + names + ["s/image"]
    table = [[r["setting"], r["miou"], r["pixel_accuracy"]] + [r["per_label"][n] for n in names]
             + [r["seconds_per_image"]] for r in rows]
    # the judge on real procedural scenes at the same seeds: the ceiling
    ref = score_landscapes(images, maps)
    table.append(["procedural (ceiling)", ref["miou"], ref["pixel_accuracy"]] + [ref["per_label"][n] for n in names]
                 + [float("nan")])
    common.print_report("landscapes: mIoU of painted label map vs a per-pixel judge", args.model, header, table,
                        notes=f"{args.n} painted maps (procedural, seeds from {args.seed}); judge fitted on seed {TRAIN_SEED}",
                        record="landscapes" if args.record else None)
