"""Inpainting evaluation: are the unmasked pixels kept, and is the border of the mask invisible?

Masks follow the project convention: 1 = generate, 0 = keep.

- Kept pixels: max and mean absolute difference (0..255) between result and input where mask = 0.
- Seam score. For every pair of 4-neighbours (p, q) across the mask border (p generated, q kept),
  with d the unit step from p to q:
    colour jump    |I(q) - I(p)|                                (RGB Euclidean norm, 0..255 units)
    gradient jump  |(I(q+d) - I(q)) - (I(p) - I(p-d))|          (change of the slope across the border)
  averaged over the border. The same two measures are taken on the borders of random boxes (the
  size of the mask's bounding box, 64 of them, seeded) placed inside the same image, leaving out
  every pixel pair within 2 px of the real border so the seam cannot leak into its own reference.
  colour_ratio = seam colour jump / interior colour jump, gradient_ratio likewise, and
  seam_ratio = their geometric mean: 1 = the border looks like any other curve in the image;
  the target is seam_ratio <= 1.2 (within 20% of the interior).
- The evaluation (`eval_scenes`) masks one cell of the 3x3 grid of a procedural shapes scene and
  uses the other eight cells' borders as the reference boxes (like for like); over many images the
  seam ratio is pooled as a ratio of means. The untouched scenes' own ratio is printed as a
  baseline row (it is about 1 +- 0.2 at 24 images: the reference is a sample too).
"""
from __future__ import annotations

import argparse

import numpy as np

from . import common

N_BOXES = 64
# Regression floors, not the targets (issue 6 targets a seam ratio within 1.2). The landscapes model
# has no mask channels; without the runtime's Poisson blend (`seamless`, the default) it scores about
# 3 (eval_inpaint's "no Poisson blend" row), with it 1.28 at 12 scenes and 1.39 at n_small=4, both
# DPM-Solver++ 20 (before its 2026-11-30 fine-tune: 1.51 and 1.47). Since the data set draws each
# scene in its own style, the untouched scenes score 1.13 themselves (the reference boxes are a
# sample too); a pasted foreign patch scores 3-4.
FLOORS = {"max_abs_kept": ("max", 1.0), "seam_ratio": ("max", 1.5)}
_STEPS = ((0, 1), (1, 0), (0, -1), (-1, 0))


def kept_pixels(result, image, mask) -> dict:
    """{"max_abs_kept", "mean_abs_kept"}: |result - image| where mask == 0 (mask 1 = generate)."""
    keep = np.asarray(mask) < 0.5
    diff = np.abs(np.asarray(result, np.int32) - np.asarray(image, np.int32))
    if diff.ndim == 3:
        diff = diff.max(axis=-1)
    if not keep.any():
        return {"max_abs_kept": 0.0, "mean_abs_kept": 0.0}
    return {"max_abs_kept": float(diff[keep].max()), "mean_abs_kept": float(diff[keep].mean())}


def _border_jumps(image: np.ndarray, inside: np.ndarray, exclude: np.ndarray | None = None):
    """Colour and gradient jumps over all 4-neighbour pairs (p inside, q outside) whose four pixels
    p-d, p, q, q+d lie in the image (and outside `exclude`). Returns two 1-D arrays."""
    img = image.astype(np.float64)
    if img.ndim == 2:
        img = img[..., None]
    h, w = inside.shape
    colour, gradient = [], []
    for dy, dx in _STEPS:
        ys, xs = np.nonzero(inside)
        qy, qx = ys + dy, xs + dx
        ay, ax = ys - dy, xs - dx            # p - d
        by, bx = qy + dy, qx + dx            # q + d
        ok = (np.minimum.reduce([ay, by]) >= 0) & (np.maximum.reduce([ay, by]) < h) \
            & (np.minimum.reduce([ax, bx]) >= 0) & (np.maximum.reduce([ax, bx]) < w)
        ys, xs, qy, qx, ay, ax, by, bx = (v[ok] for v in (ys, xs, qy, qx, ay, ax, by, bx))
        across = ~inside[qy, qx]
        if exclude is not None:
            across &= ~(exclude[ys, xs] | exclude[qy, qx] | exclude[ay, ax] | exclude[by, bx])
        ys, xs, qy, qx, ay, ax, by, bx = (v[across] for v in (ys, xs, qy, qx, ay, ax, by, bx))
        p, q, pa, qb = img[ys, xs], img[qy, qx], img[ay, ax], img[by, bx]
        colour.append(np.linalg.norm(q - p, axis=-1))
        gradient.append(np.linalg.norm((qb - q) - (p - pa), axis=-1))
    return np.concatenate(colour), np.concatenate(gradient)


def _near_border(mask: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels within `radius` (Chebyshev) of a pixel on the other side of the mask border."""
    from scipy import ndimage

    inside = mask.astype(bool)
    size = 2 * radius + 1
    grown = ndimage.binary_dilation(inside, structure=np.ones((size, size)))
    shrunk = ndimage.binary_erosion(inside, structure=np.ones((size, size)), border_value=1)
    return grown & ~shrunk


def seam_score(image, mask, n_boxes: int = N_BOXES, seed: int = 0, boxes=None) -> dict:
    """Seam measures of `image` [H,W(,C)] along the border of `mask` [H,W] (1 = generated region).

    Returns {"seam_colour", "interior_colour", "colour_ratio", "seam_gradient", "interior_gradient",
    "gradient_ratio", "seam_ratio"} (see the module docstring). `boxes`: reference regions (boolean
    [H,W] masks) to use instead of n_boxes random boxes."""
    image = np.asarray(image)
    inside = np.asarray(mask) >= 0.5
    if inside.shape != image.shape[:2]:
        raise ValueError(f"mask is {inside.shape} but the image is {image.shape[:2]}")
    if not inside.any() or inside.all():
        raise ValueError("the mask must have both generated (1) and kept (0) pixels to have a border")
    seam_c, seam_g = _border_jumps(image, inside)
    exclude = _near_border(inside)
    h, w = inside.shape
    ys, xs = np.nonzero(inside)
    bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    bh, bw = min(bh, h - 4), min(bw, w - 4)
    if bh < 2 or bw < 2:
        bh, bw = max(2, (h - 4) // 2), max(2, (w - 4) // 2)
    rng = np.random.default_rng(seed)
    if boxes is None:
        boxes = []
        for _ in range(n_boxes):
            y0 = int(rng.integers(2, h - bh - 1))
            x0 = int(rng.integers(2, w - bw - 1))
            box = np.zeros_like(inside)
            box[y0:y0 + bh, x0:x0 + bw] = True
            boxes.append(box)
    ref_c, ref_g = [], []
    for box in boxes:
        c, g = _border_jumps(image, np.asarray(box, bool), exclude)
        ref_c.append(c)
        ref_g.append(g)
    ref_c, ref_g = np.concatenate(ref_c), np.concatenate(ref_g)
    eps = 1e-3
    out = {
        "seam_colour": float(seam_c.mean()), "interior_colour": float(ref_c.mean()) if ref_c.size else float("nan"),
        "seam_gradient": float(seam_g.mean()), "interior_gradient": float(ref_g.mean()) if ref_g.size else float("nan"),
    }
    out["colour_ratio"] = (out["seam_colour"] + eps) / (out["interior_colour"] + eps)
    out["gradient_ratio"] = (out["seam_gradient"] + eps) / (out["interior_gradient"] + eps)
    out["seam_ratio"] = float(np.sqrt(out["colour_ratio"] * out["gradient_ratio"]))
    return out


def box_mask(h: int, w: int, rng: np.random.Generator, min_frac: float = 0.3, max_frac: float = 0.5) -> np.ndarray:
    """A random axis-aligned box mask (1 = generate) covering min_frac..max_frac of each side."""
    bh = int(round(h * rng.uniform(min_frac, max_frac)))
    bw = int(round(w * rng.uniform(min_frac, max_frac)))
    y0 = int(rng.integers(2, h - bh - 1))
    x0 = int(rng.integers(2, w - bw - 1))
    mask = np.zeros((h, w), np.float32)
    mask[y0:y0 + bh, x0:x0 + bw] = 1.0
    return mask


def score_inpainting(results, images, masks, boxes=None) -> dict:
    """Over all images: worst and mean kept-pixel difference, and the seam ratios pooled as ratios of
    means (sum of seam jumps / sum of interior jumps: stable where single images are flat), plus
    the median of the per-image seam ratios. boxes: per image the reference boxes, or None."""
    boxes = boxes or [None] * len(results)
    rows = [{**kept_pixels(r, i, m), **seam_score(r, m, seed=k, boxes=b)}
            for k, (r, i, m, b) in enumerate(zip(results, images, masks, boxes))]
    mean = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
    eps = 1e-3
    colour = (mean["seam_colour"] + eps) / (mean["interior_colour"] + eps)
    gradient = (mean["seam_gradient"] + eps) / (mean["interior_gradient"] + eps)
    return {
        "max_abs_kept": float(max(r["max_abs_kept"] for r in rows)),
        "mean_abs_kept": mean["mean_abs_kept"],
        "colour_ratio": float(colour), "gradient_ratio": float(gradient),
        "seam_ratio": float(np.sqrt(colour * gradient)),
        "seam_ratio_median": float(np.median([r["seam_ratio"] for r in rows])),
    }


# --------------------------------------------------------------------------- with a model


def cell_box(h: int, w: int, region: tuple[int, int]) -> np.ndarray:
    """The (row, col) cell of the 3x3 grid as a box mask (1 inside)."""
    row, col = region
    box = np.zeros((h, w), np.float32)
    box[round(row * h / 3):round((row + 1) * h / 3), round(col * w / 3):round((col + 1) * w / 3)] = 1.0
    return box


def scene_kind(bundle) -> str:
    """Which procedural scenes the evaluation inpaints: those the model was trained on."""
    data = str((getattr(getattr(bundle, "manifest", None), "provenance", None) or {}).get("data", ""))
    return "landscapes" if data == "landscapes" else "shapes"


def eval_scenes(bundle, n: int, seed: int):
    """n (image, mask, reference boxes) at the bundle's size: procedural shapes scenes (evaluation
    seeds), or landscapes for a model trained on them; the mask is one random cell of the 3x3 grid (objects lie inside cells, so the border
    crosses background only, as a user's mask around an object would); the reference boxes are the
    other eight cells, whose borders are interior curves of the same kind."""
    from . import shapes

    h, w = common.image_size(bundle)
    if scene_kind(bundle) == "landscapes":
        from engine.data import landscapes

        images = [landscapes.make_item(seed, i, size=h).image for i in range(n)]
    else:
        images = [s.image for s in shapes.render_scenes(n, seed, size=(h, w))]
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(3) for c in range(3)]
    picks = [cells[int(rng.integers(9))] for _ in range(n)]
    masks = [cell_box(h, w, p) for p in picks]
    boxes = [[cell_box(h, w, c) > 0 for c in cells if c != p] for p in picks]
    return images, masks, boxes


def generate_inpainted(bundle, setting, images, masks, seed: int, seamless: bool = True):
    """seamless: the runtime's Poisson blend of the generated region (its default; False = the raw composite)."""
    results, seconds = [], []
    for k, (image, mask) in enumerate(zip(images, masks)):
        ims, sec = common.generate_images(bundle, setting, seed + k, 1, 1, seamless=seamless,
                                          **common.inpaint_fields(image, mask))
        results.append(ims[0])
        seconds.append(sec)
    return results, float(np.mean(seconds))


def evaluate(model_path, settings=common.SAMPLER_SETTINGS, n: int = 32, seed: int = 10_000) -> list[dict]:
    bundle = common.open_model(model_path)
    return _evaluate_scenes(bundle, eval_scenes(bundle, n, seed), settings, seed)


def _evaluate_scenes(bundle, scenes, settings, seed: int) -> list[dict]:
    """One row per sampler setting on `scenes` = eval_scenes(bundle, n, seed)."""
    images, masks, boxes = scenes
    rows = []
    for setting in common.with_default(bundle, settings):
        results, sec = generate_inpainted(bundle, setting, images, masks, seed)
        rows.append({"setting": setting.label, "seconds_per_image": sec,
                     **score_inpainting(results, images, masks, boxes)})
    return rows


def floor_check(model_path, n_small: int = 4, seed: int = 10_000) -> dict:
    """Default sampler (DPM-Solver++ 20) on n_small fixed scenes and masks, against FLOORS."""
    bundle = common.open_model(model_path)
    images, masks, boxes = eval_scenes(bundle, n_small, seed)
    results, _ = generate_inpainted(bundle, common.DEFAULT_SETTING, images, masks, seed)
    return common.floor_result(score_inpainting(results, images, masks, boxes), FLOORS)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, "shapes", n=32)
    args = parser.parse_args(argv)
    bundle = common.open_model(args.model)
    images, masks, boxes = scenes = eval_scenes(bundle, args.n, args.seed)
    rows = _evaluate_scenes(bundle, scenes, common.parse_samplers(args.samplers), args.seed)
    raw, sec = generate_inpainted(bundle, common.DEFAULT_SETTING, images, masks, args.seed, seamless=False)
    rows.append({"setting": f"{common.DEFAULT_SETTING.label}, no Poisson blend", "seconds_per_image": sec,
                 **score_inpainting(raw, images, masks, boxes)})
    header = ["sampler", "max |kept diff|", "mean |kept diff|", "seam ratio", "median", "colour ratio",
              "gradient ratio", "s/image"]
    rows.append({"setting": "untouched scenes (baseline)", "seconds_per_image": float("nan"),
                 **score_inpainting(images, images, masks, boxes)})
    table = [[r["setting"], r["max_abs_kept"], r["mean_abs_kept"], r["seam_ratio"], r["seam_ratio_median"],
              r["colour_ratio"], r["gradient_ratio"], r["seconds_per_image"]] for r in rows]
    common.print_report("inpainting: kept pixels and seam score (target seam ratio <= 1.2)", args.model,
                        header, table, notes=f"{args.n} procedural {scene_kind(bundle)} scenes, one 3x3 grid cell masked, seeds from {args.seed}; "
                              "seam ratio pooled over images (ratio of means)",
                        record="inpaint" if args.record else None)
