"""Shapes evaluation, GenEval-style: prompts on held-out colour-shape pairs, an analytic detector.

Prompts (`make_prompts`) come in six target categories (and one extra), each in two splits of
wording: "train" (words and sentence shapes the training captions use) and "heldout" (those of
`engine.data.shapes_words` that training never sees: "scarlet", "a trio of", "beneath", "in the
top-left corner", "colored", "as well as", ...). Every prompt names a (colour, shape) pair from
`engine.data.shapes.HOLDOUT`, a pair never drawn in the training set:
  single      "a red heart"                        correct: an object of that colour and shape
  two         "a red heart and a cyan square"      correct: both pairs found (each colour bound to
                                                   its own shape: attribution)
  counting    "three red hearts", "several ..."    correct: that many objects of that shape
                                                   ("several": three or four)
  position    "a red heart in the top left"        correct: that colour + shape, in that 3x3 cell;
              "a red heart above a cyan square"    or both pairs found, the relation holding
                                                   between their cells (`shapes.relations`)
  background  "a red heart on a navy background"   correct: the object found and the background's
                                                   median colour nearest the asked BACKGROUNDS entry
  synonyms    "a crimson heart", "a dark red heart" correct: the object found in its hue
  size (extra, no target) "a tiny / huge red heart" correct: the object found, its fitted radius
                                                   below (tiny) or above (huge) the halfway point to
                                                   the next size

Detector (`detect_objects`), from the known palette and geometry only:
  1. colour segmentation: a pixel belongs to palette colour c when its brightest channel is
     >= `SHAPE_MIN_VALUE` (backgrounds are all darker) and c is the nearest `COLORS` entry within
     `COLOR_TOLERANCE` (RGB Euclidean);
  2. per colour, 4-connected components; components under `MIN_AREA_FRACTION` of the smallest
     shape's area are noise;
  3. shape: each known outline is fitted to the component by its area and centroid (radius from
     area = unit_area * r^2, centre from centroid = centre + r * unit_centroid, plus a small
     search over radius and shift); the shape is the outline of best IoU with the component's
     pixels (below `MIN_IOU` it is "unknown"). Solidity, fill ratio and circularity are reported
     with each detection;
  4. region: the 3x3 cell (`REGIONS`) holding the fitted centre.
"""
from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import common

COLOR_TOLERANCE = 90.0
MIN_AREA_FRACTION = 0.35
MIN_IOU = 0.5
CATEGORIES = ("single", "two", "counting", "position", "background", "synonyms")  # the targets
EXTRA_CATEGORIES = ("size",)
SPLITS = ("train", "heldout")
# Floors for floor_check (held-out wordings, n_small = 8, DPM-Solver++ 20): below the shipped
# model's figures at these seeds (single 0.75, counting 0.625, position 0.375: relations and
# held-out place words are hard for it; size 0.25, where the model before scored 0) with room for
# the noise of 8 prompts (one prompt = 0.125).
FLOORS = {"single": 0.5, "counting": 0.125, "position": 0.125, "size": 0.125}


def _data():
    from engine.data import shapes as data

    return data


def _words():
    from engine.data import shapes_words as words

    return words


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class Detection:
    color: str
    shape: str                 # "unknown" when no outline fits
    region: str
    center: tuple[float, float]  # fitted centre (x, y) as fractions of the image side
    area: int                  # pixels
    iou: float                 # IoU of the best outline
    solidity: float            # area / convex hull area
    fill: float                # area / bbox area
    circularity: float         # 4 pi area / perimeter^2
    radius: float = 0.0        # the fitted outline's radius, as a fraction of the image side


def _polygon_area_centroid(p: np.ndarray) -> tuple[float, np.ndarray]:
    """Shoelace area and centroid of a closed polygon [N,2]."""
    x, y = p[:, 0], p[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    cross = x * y1 - x1 * y
    a = cross.sum() / 2
    cx = ((x + x1) * cross).sum() / (6 * a)
    cy = ((y + y1) * cross).sum() / (6 * a)
    return abs(float(a)), np.array([cx, cy])


@functools.lru_cache(maxsize=1)
def _outlines():
    data = _data()
    return {name: (pts, *_polygon_area_centroid(pts)) for name, pts in data.OUTLINES.items()}


SUPERSAMPLE = 4


def _soft_template(points: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Fraction of each pixel covered by the polygon (pixel coordinates, x right, y down),
    by 4x supersampling: float32 [H,W] in [0,1]."""
    from PIL import Image, ImageDraw

    h, w = shape_hw
    canvas = Image.new("L", (w * SUPERSAMPLE, h * SUPERSAMPLE), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in points * SUPERSAMPLE], fill=255)
    return np.asarray(canvas.resize((w, h), Image.BOX), np.float32) / 255.0


def _fit_shape(alpha: np.ndarray):
    """(best shape, its soft IoU, fitted centre in pixels) for a coverage map alpha [H,W] in [0,1]
    (one object; zero elsewhere). Soft IoU = sum min(alpha, template) / sum max(alpha, template)."""
    ys, xs = np.nonzero(alpha > 0)
    area = float(alpha.sum())
    wts = alpha[ys, xs]
    centroid = np.array([(xs * wts).sum() / area + 0.5, (ys * wts).sum() / area + 0.5])
    pad = 3
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, alpha.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, alpha.shape[1])
    crop = alpha[y0:y1, x0:x1]
    offset = np.array([x0, y0], float)

    def soft_iou(name, scale, dx, dy):
        pts, unit_area, unit_centroid = _outlines()[name]
        r = np.sqrt(area / unit_area) * scale
        c = centroid - r * unit_centroid + np.array([dx, dy])
        tmpl = _soft_template(pts * r + c - offset, crop.shape)
        union = np.maximum(tmpl, crop).sum()
        return (float(np.minimum(tmpl, crop).sum() / union) if union else 0.0), c

    # coarse: every outline at the moment-matched pose; fine: the best two, small pose search
    coarse = sorted(_outlines(), key=lambda name: -soft_iou(name, 1.0, 0.0, 0.0)[0])[:2]
    best = ("unknown", 0.0, centroid)
    for name in coarse:
        for scale in (0.95, 1.0, 1.05):
            for dx in (-0.25, 0.0, 0.25):
                for dy in (-0.25, 0.0, 0.25):
                    iou, c = soft_iou(name, scale, dx, dy)
                    if iou > best[1]:
                        best = (name, iou, c)
    if best[1] < MIN_IOU:
        best = ("unknown", best[1], best[2])
    return best


def _alpha(image: np.ndarray, comp: np.ndarray, others: np.ndarray, color) -> np.ndarray:
    """Coverage of one component: pixels within 2 px of it (and not of another object) unmixed
    as p = bg + alpha (c - bg), with bg the median of the non-shape pixels 3..5 px around it."""
    near = ndimage.binary_dilation(comp, iterations=2) & ~others
    ring = ndimage.binary_dilation(comp, iterations=5) & ~ndimage.binary_dilation(comp, iterations=2) & ~others
    rgb = image.astype(np.float32)
    bg = np.median(rgb[ring], axis=0) if ring.any() else np.zeros(3, np.float32)
    c = np.asarray(color, np.float32)
    span = c - bg
    denom = float(span @ span)
    alpha = np.zeros(comp.shape, np.float32)
    if denom < 1.0:
        alpha[comp] = 1.0
        return alpha
    alpha[near] = np.clip(((rgb[near] - bg) @ span) / denom, 0.0, 1.0)
    alpha[comp] = np.maximum(alpha[comp], 0.5)
    return alpha


def _geometry(component: np.ndarray) -> tuple[float, float, float]:
    from skimage.measure import regionprops

    props = regionprops(component.astype(np.uint8))[0]
    perimeter = max(props.perimeter, 1e-6)
    return float(props.solidity), float(props.extent), float(4 * np.pi * props.area / perimeter ** 2)


def color_membership(image: np.ndarray) -> np.ndarray:
    """Per pixel the index into COLORS of its palette colour, or -1 (background / off-palette)."""
    data = _data()
    rgb = np.asarray(image, np.float32)[..., :3]
    palette = np.array(list(data.COLORS.values()), np.float32)
    d = np.sqrt(((rgb[:, :, None, :] - palette[None, None]) ** 2).sum(-1))
    idx = d.argmin(-1)
    idx[(rgb.max(-1) < data.SHAPE_MIN_VALUE) | (d.min(-1) > COLOR_TOLERANCE)] = -1
    return idx


def region_of(center_frac) -> str:
    data = _data()
    col = min(max(int(center_frac[0] * 3), 0), 2)
    row = min(max(int(center_frac[1] * 3), 0), 2)
    return next(name for name, rc in data.REGIONS.items() if rc == (row, col))


def min_area(size: int) -> float:
    data = _data()
    smallest = min(SIZES_R for SIZES_R in data.SIZES.values())
    unit = min(a for _, a, _ in _outlines().values())
    return MIN_AREA_FRACTION * unit * (smallest * size) ** 2


def detect_objects(image) -> list[Detection]:
    """The shapes in a uint8 [H,W,3] image (square), largest first."""
    data = _data()
    image = common.as_rgb_uint8(image)
    h, w = image.shape[:2]
    size = min(h, w)
    members = color_membership(image)
    names = list(data.COLORS)
    comps = []
    for k in np.unique(members):
        if k < 0:
            continue
        labelled, n = ndimage.label(members == k)
        comps += [(int(k), labelled == i) for i in range(1, n + 1)]
    comps.sort(key=lambda kc: -int(kc[1].sum()))
    shape_pixels = members >= 0
    found, kept = [], np.zeros_like(shape_pixels)
    for k, comp in comps:
        area = int(comp.sum())
        if area < min_area(size):
            continue
        # an antialiased fringe of another colour hugging a bigger object is part of that object
        if (ndimage.binary_dilation(comp, iterations=1) & kept).sum() >= 0.25 * area:
            continue
        alpha = _alpha(image, comp, shape_pixels & ~comp, data.COLORS[names[k]])
        shape, iou, center = _fit_shape(alpha)
        center_frac = (float(center[0] / w), float(center[1] / h))
        unit_area = _outlines()[shape][1] if shape in _outlines() else np.pi
        radius = float(np.sqrt(alpha.sum() / unit_area) / size)
        found.append(Detection(names[k], shape, region_of(center_frac), center_frac, area, iou,
                               *_geometry(comp), radius=radius))
        kept |= comp
    return sorted(found, key=lambda d: -d.area)


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt:
    category: str
    text: str
    # ({"color", "shape", "counts": accepted counts, "region": cell or None, "size": or None}, ...)
    objects: tuple = field(default_factory=tuple)
    split: str = "train"          # "train": wordings training used; "heldout": wordings it never saw
    relation: str | None = None   # position prompts about two objects: "A <relation> B"
    background: str | None = None  # background prompts: the BACKGROUNDS key asked for


def _obj(color, shape, count=1, region=None, size=None) -> dict:
    counts = tuple(count) if isinstance(count, tuple) else (count,)
    return {"color": color, "shape": shape, "counts": counts, "region": region, "size": size}


def _other_pair(data, rng, color, shape):
    """A (colour, shape) pair of another colour and another shape, never a held-out one."""
    others = [(c, s) for c in data.COLORS for s in data.SHAPES
              if c != color and s != shape and (c, s) not in data.HOLDOUT]
    return others[int(rng.integers(len(others)))]


def _phrase(words, rng, color, shape, split="train", color_text=None, size=None) -> str:
    """One object in the split's object templates (plain hue word unless color_text is given)."""
    obj = {"color": color, "shape": shape, "size": size or "medium"}
    return words.object_phrase(rng, obj, split=split, with_size=size is not None,
                               color=color_text or words.COLOR_WORDS[color][0][0])


def _prompt(data, words, rng, category: str, split: str, color: str, shape: str) -> Prompt:
    """One prompt of `category` about the pair (color, shape), worded in `split`."""
    held = split == "heldout"
    lead = words.prefix(rng, split) if held and category == "single" and rng.random() < 0.5 else ""
    if category == "single":
        return Prompt(category, lead + _phrase(words, rng, color, shape, split), (_obj(color, shape),), split)
    if category == "synonyms":
        word = words.color_word(rng, color, split, shade_prob=0.3)
        while word == words.COLOR_WORDS[color][0][0]:  # a synonym or a shade, never the plain name
            word = words.color_word(rng, color, split, shade_prob=0.3)
        return Prompt(category, _phrase(words, rng, color, shape, color_text=word), (_obj(color, shape),), split)
    if category == "two":
        c2, s2 = _other_pair(data, rng, color, shape)
        text = words.join(rng, _phrase(words, rng, color, shape), _phrase(words, rng, c2, s2), split)
        return Prompt(category, text, (_obj(color, shape), _obj(c2, s2)), split)
    if category == "counting":
        n = int(rng.integers(2, 5))
        word = words.pick(rng, words.wordings(words.COUNT_WORDS[n], split))
        counts = words.VAGUE_COUNTS.get(word, n)
        return Prompt(category, _count_text(words, rng, word, color, shape), (_obj(color, shape, counts),), split)
    if category == "position":
        if rng.random() < 0.5:
            region = list(data.REGIONS)[int(rng.integers(len(data.REGIONS)))]
            text = f"{_phrase(words, rng, color, shape)} {words.place_phrase(rng, region, split)}"
            return Prompt(category, text, (_obj(color, shape, region=region),), split)
        relation = list(words.RELATION_WORDS)[int(rng.integers(len(words.RELATION_WORDS)))]
        c2, s2 = _other_pair(data, rng, color, shape)
        text = (f"{_phrase(words, rng, color, shape)} {words.relation_phrase(rng, relation, split)} "
                f"{_phrase(words, rng, c2, s2)}")
        return Prompt(category, text, (_obj(color, shape), _obj(c2, s2)), split, relation=relation)
    if category == "background":
        bg = list(data.BACKGROUNDS)[int(rng.integers(len(data.BACKGROUNDS)))]
        word_split = split if held and words.BACKGROUND_WORDS[bg][1] and rng.random() < 0.5 else "train"
        text = f"{_phrase(words, rng, color, shape)} {words.background_color_phrase(rng, bg, word_split, split)}"
        return Prompt(category, text, (_obj(color, shape),), split, background=bg)
    if category == "size":
        size = ("tiny", "huge")[int(rng.integers(2))]
        return Prompt(category, _phrase(words, rng, color, shape, split, size=size),
                      (_obj(color, shape, size=size),), split)
    raise ValueError(f"unknown prompt category {category!r}; choose from {CATEGORIES + EXTRA_CATEGORIES}")


def _count_text(words, rng, count_word: str, color: str, shape: str) -> str:
    """"three red hearts", "a pair of red hearts" (the count word given, the colour's plain name)."""
    noun = words.plural(words.pick(rng, words.SHAPE_WORDS[shape]))
    return f"{count_word} {words.COLOR_WORDS[color][0][0]} {noun}"


def make_prompts(n_per_category: int, seed: int = 0, categories=None, splits=SPLITS) -> list[Prompt]:
    """Prompts about held-out colour-shape pairs (cycling through HOLDOUT in order), for each split
    and category; deterministic from the seed."""
    data, words = _data(), _words()
    categories = CATEGORIES + EXTRA_CATEGORIES if categories is None else tuple(categories)
    holdout = sorted(data.HOLDOUT)
    prompts = []
    for split in splits:
        rng = np.random.default_rng([seed, SPLITS.index(split)])
        for cat in categories:
            for i in range(n_per_category):
                color, shape = holdout[i % len(holdout)]
                prompts.append(_prompt(data, words, rng, cat, split, color, shape))
    return prompts


# --------------------------------------------------------------------------- scoring


def _size_ok(det: Detection, size: str | None) -> bool:
    """tiny: fitted radius below halfway between tiny and small; huge: above halfway between large
    and huge (radius from the area and the outline's unit area)."""
    if size is None:
        return True
    data = _data()
    if size == "tiny":
        return det.radius < (data.SIZES["tiny"] + data.SIZES["small"]) / 2
    if size == "huge":
        return det.radius > (data.SIZES["large"] + data.SIZES["huge"]) / 2
    raise ValueError(f"size prompts ask for tiny or huge, not {size!r}")


def background_color(image, detections: list[Detection]) -> str:
    """The BACKGROUNDS entry nearest to the median colour of the pixels that are neither a shape
    colour nor near a detection."""
    data = _data()
    image = common.as_rgb_uint8(image)
    shape_px = color_membership(image) >= 0
    near = ndimage.binary_dilation(shape_px, iterations=3)
    rest = image[~near] if (~near).sum() >= 16 else image.reshape(-1, 3)
    median = np.median(rest.astype(np.float32), axis=0)
    names = list(data.BACKGROUNDS)
    palette = np.array([data.BACKGROUNDS[n] for n in names], np.float32)
    return names[int(np.linalg.norm(palette - median, axis=1).argmin())]


def score_prompt(prompt: Prompt, detections: list[Detection], image=None) -> dict:
    """Booleans for one image: "correct" (the category's criterion) and the parts that apply:
    "colour", "shape", "count", "position", "attribution", "background", "size" (None where a
    part does not apply). A pair is found when some detection has that colour and shape."""
    objs = prompt.objects
    pairs = [(d.color, d.shape) for d in detections]
    found = lambda o: (o["color"], o["shape"]) in pairs  # noqa: E731
    out = {"colour": all(o["color"] in [d.color for d in detections] for o in objs),
           "shape": all(o["shape"] in [d.shape for d in detections] for o in objs),
           "count": None, "position": None, "attribution": None, "background": None, "size": None}
    cat = prompt.category
    if cat in ("single", "synonyms"):
        out["correct"] = found(objs[0])
    elif cat == "two":
        out["attribution"] = all(found(o) for o in objs)
        out["correct"] = out["attribution"]
    elif cat == "counting":
        o = objs[0]
        out["count"] = [d.shape for d in detections].count(o["shape"]) in o["counts"]
        out["correct"] = out["count"]
    elif cat == "position":
        out["position"] = _position_ok(prompt, detections)
        out["correct"] = out["position"]
    elif cat == "background":
        if image is None:
            raise ValueError("background prompts are scored on the image too (score_prompt(..., image=...))")
        out["background"] = background_color(image, detections) == prompt.background
        out["correct"] = out["background"] and found(objs[0])
    elif cat == "size":
        o = objs[0]
        out["size"] = any((d.color, d.shape) == (o["color"], o["shape"]) and _size_ok(d, o["size"]) for d in detections)
        out["correct"] = out["size"]
    else:
        raise ValueError(f"unknown prompt category {cat!r}")
    return out


def _position_ok(prompt: Prompt, detections: list[Detection]) -> bool:
    objs = prompt.objects
    if prompt.relation is None:
        o = objs[0]
        return any((d.color, d.shape, d.region) == (o["color"], o["shape"], o["region"]) for d in detections)
    data = _data()
    first = [d for d in detections if (d.color, d.shape) == (objs[0]["color"], objs[0]["shape"])]
    second = [d for d in detections if (d.color, d.shape) == (objs[1]["color"], objs[1]["shape"])]
    return any(prompt.relation in data.relations(a.region, b.region) for a in first for b in second)


def summarize(prompts: list[Prompt], scores: list[dict]) -> dict:
    """Per split and category the mean of each part ("correct", "colour", ...), and per split
    "overall" = mean of the target categories' "correct" (GenEval's overall score):
    {"train": {"single": {...}, ..., "overall": x}, "heldout": {...}}."""
    out = {}
    for split in SPLITS:
        part = {}
        for cat in CATEGORIES + EXTRA_CATEGORIES:
            rows = [s for p, s in zip(prompts, scores) if p.category == cat and p.split == split]
            if rows:
                part[cat] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if rows[0][k] is not None}
        if part:
            targets = [part[c]["correct"] for c in CATEGORIES if c in part]
            part["overall"] = float(np.mean(targets)) if targets else float("nan")
            out[split] = part
    return out


# --------------------------------------------------------------------------- ground truth


@dataclass(frozen=True)
class Scene:
    image: np.ndarray
    scene: dict


def render_scenes(n: int, seed: int, size=(64, 64), holdout: bool = True) -> list[Scene]:
    """n procedural scenes (index 0..n-1 of `seed`) at `size`, with their structured descriptions."""
    data = _data()
    side = int(size[0]) if not isinstance(size, int) else size
    items = [data.make_item(seed, i, size=side, holdout=holdout) for i in range(n)]
    return [Scene(it.image, it.scene) for it in items]


def scene_matches(scene: dict, detections: list[Detection]) -> dict:
    """Does the detector recover a structured scene? Booleans "colour", "shape", "count", "region"
    and "all" (the multiset of (colour, shape, region) equal)."""
    truth = sorted((o["color"], o["shape"], o["region"]) for o in scene["objects"])
    found = sorted((d.color, d.shape, d.region) for d in detections)
    return {
        "count": len(truth) == len(found),
        "colour": sorted(t[0] for t in truth) == sorted(f[0] for f in found),
        "shape": sorted(t[1] for t in truth) == sorted(f[1] for f in found),
        "region": sorted(t[2] for t in truth) == sorted(f[2] for f in found),
        "all": truth == found,
    }


# --------------------------------------------------------------------------- with a model


def generate_for_prompts(bundle, setting, prompts, images_per_prompt: int, seed: int, batch_size: int = 8):
    images, owners, seconds = [], [], []
    for k, p in enumerate(prompts):
        ims, sec = common.generate_images(bundle, setting, seed + 100 * k, images_per_prompt,
                                          batch_size, prompt=p.text)
        images.extend(ims)
        owners += [p] * images_per_prompt
        seconds.append(sec)
    return images, owners, float(np.mean(seconds))


def score_images(images, owners) -> dict:
    scores = [score_prompt(p, detect_objects(im), im) for im, p in zip(images, owners)]
    return summarize(owners, scores)


def evaluate(model_path, settings=common.SAMPLER_SETTINGS, n_per_category: int = 8, images_per_prompt: int = 1,
             seed: int = 10_000, batch_size: int = 8) -> list[dict]:
    """One row per sampler setting: {"setting", "seconds_per_image", "train": {...}, "heldout": {...}}."""
    bundle = common.open_model(model_path)
    prompts = make_prompts(n_per_category, seed)
    rows = []
    for setting in common.with_default(bundle, settings):
        images, owners, sec = generate_for_prompts(bundle, setting, prompts, images_per_prompt, seed, batch_size)
        rows.append({"setting": setting.label, "seconds_per_image": sec, **score_images(images, owners)})
    return rows


def floor_check(model_path, n_small: int = 8, seed: int = 10_000) -> dict:
    """Default sampler (DPM-Solver++ 20), n_small held-out-wording prompts per floored category at
    fixed seeds, against FLOORS (scores are each category's "correct")."""
    bundle = common.open_model(model_path)
    prompts = make_prompts(n_small, seed, categories=tuple(FLOORS), splits=("heldout",))
    images, owners, _ = generate_for_prompts(bundle, common.DEFAULT_SETTING, prompts, 1, seed)
    summary = score_images(images, owners)["heldout"]
    scores = {c: summary[c]["correct"] for c in FLOORS}
    return common.floor_result(scores, FLOORS)


def table_rows(rows: list[dict]) -> tuple[list[str], list[list]]:
    """The printed table: one line per sampler and split, the categories' "correct" as columns."""
    cats = CATEGORIES + EXTRA_CATEGORIES
    header = ["sampler", "wording", *cats, "overall", "attribution(2)", "s/image"]
    table = []
    for r in rows:
        for split in SPLITS:
            if split in r:
                part = r[split]
                table.append([r["setting"], split, *[part.get(c, {}).get("correct", float("nan")) for c in cats],
                              part["overall"], part.get("two", {}).get("attribution", float("nan")),
                              r["seconds_per_image"]])
    return header, table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser, "shapes", n=8)
    parser.add_argument("--images-per-prompt", type=int, default=1)
    args = parser.parse_args(argv)
    rows = evaluate(args.model, common.parse_samplers(args.samplers), args.n, args.images_per_prompt,
                    args.seed, args.batch_size)
    header, table = table_rows(rows)
    common.print_report("shapes: GenEval-style scores on held-out colour-shape pairs, training vs held-out wordings "
                        "(analytic detector)", args.model, header, table,
                        notes=f"{args.n} prompts per category and wording x {args.images_per_prompt} image(s), "
                              f"seeds from {args.seed}; overall = mean of the six target categories",
                        record="shapes" if args.record else None)
