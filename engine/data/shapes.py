"""Procedural shape scenes: one to four coloured shapes on a plain, gradient or textured background.

Deterministic from (seed, index) (``generated.item_rng``). Native size 64 x 64; shapes are drawn 4x
supersampled and box-filtered, so edges are antialiased.

- ``SHAPES``: shape names; ``COLORS``: the drawn hues, name -> RGB, all bright (max channel >= 230).
  Every colour word of a caption names one of them (the hue table is in ``shapes_words``: "crimson"
  is drawn red, "violet" purple).
- ``BACKGROUNDS``: background colours, all dark or muted (max channel <= 95, at most ~121 after
  texture lighting), so a pixel with max channel >= ``SHAPE_MIN_VALUE`` is a shape pixel and its
  nearest ``COLORS`` entry is its colour (``color_index_map``). Pale backgrounds are not drawn: the
  shipped shapes VAE, trained on dark ones only, cannot represent them (its encoder maps six pale
  colours to nearly one latent), so they need a VAE and U-Net trained anew.
- ``REGIONS``: a 3 x 3 grid (top left, top, top right, left, centre, right, bottom left, bottom,
  bottom right). Every object lies inside its own cell and the objects of a scene take different
  cells, so objects never overlap; ``relations(a, b)`` says which of above / below / left of /
  right of / next to hold between two objects' cells.
- ``SIZES``: tiny / small / medium / large (radius as a fraction of the image side, inside a cell)
  and huge (one object alone, a share ``HUGE_PROB`` of the one-object scenes, across the middle).
- Scenes: one object, or two to four that are either a *group* (identical shape, colour and size:
  "three small green circles ...") or *mixed* (two or three). Objects are ordered largest first
  (stable); the **class is the shape of the first object** (for a mixed scene, the largest one; on
  a tie, the first drawn). ``CLASSES == SHAPES``.
- Captions (``make_caption``) always name each object's colour (a hue word, a synonym or a shade)
  and shape; regions or a relation (two objects), size, count and background are named often, in
  varied templates and word orders, only ever in the training wordings of ``shapes_words`` (its
  held-out wordings are for the evaluation).
- Label map (uint8, ``LABELS``): 0 = background, k = ``SHAPES.index(shape) + 1`` where the
  object covers at least half of the pixel.
- ``HOLDOUT``: (colour, shape) pairs never generated while ``holdout=True`` (the default), kept back
  so an evaluation can score compositional generalisation; ``is_held_out(scene)``.
- The structured scene (``Item.scene``): ``{"objects": [{"shape", "color", "size", "region",
  "center": [x, y] (fractions), "radius" (fraction), "bbox": [x0, y0, x1, y1] (pixels at the
  rendered size, end exclusive)}], "background": {...}, "layout": "single"|"group"|"mixed",
  "caption", "class"}``. ``render_scene(scene, size)`` redraws it at any size.

Background textures come from scikit-image's bundled images (brick, grass, gravel) when it is
installed, else from seeded value noise (the scene is the same; only the texture differs).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from . import shapes_words as words
from .generated import Item, item_rng

NATIVE_SIZE = 64
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "hexagon")
CLASSES = SHAPES

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 30, 30),
    "orange": (255, 150, 20),
    "yellow": (245, 235, 40),
    "green": (40, 200, 50),
    "cyan": (30, 220, 230),
    "blue": (45, 85, 245),
    "purple": (170, 60, 235),
    "white": (245, 245, 245),
}
SHAPE_MIN_VALUE = 135  # brightest dark background: 1.25 * 92 + 6 = 121; darkest shape colour channel max: 230

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (12, 12, 14),
    "gray": (80, 80, 82),
    "navy": (18, 28, 85),
    "moss": (18, 68, 30),
    "brown": (92, 58, 28),
    "maroon": (88, 18, 30),
    "plum": (58, 22, 80),
    "teal": (14, 72, 78),
}
BACKGROUND_KINDS = ("plain", "gradient", "texture")
TEXTURES = ("brick", "grass", "gravel", "noise")

# (row, column) of each region's cell in the 3 x 3 grid.
REGIONS: dict[str, tuple[int, int]] = {
    "top left": (0, 0), "top": (0, 1), "top right": (0, 2),
    "left": (1, 0), "centre": (1, 1), "right": (1, 2),
    "bottom left": (2, 0), "bottom": (2, 1), "bottom right": (2, 2),
}
SIZES: dict[str, float] = {"tiny": 0.075, "small": 0.095, "medium": 0.125, "large": 0.16, "huge": 0.3}
GRID_SIZES = ("tiny", "small", "medium", "large")  # sizes that fit in a grid cell
HUGE_PROB = 0.15  # one-object scenes whose object is huge (centred, across the middle cell)
OBJECT_COUNTS, OBJECT_COUNT_PROBS = (1, 2, 3, 4), (0.4, 0.32, 0.18, 0.1)
MAX_MIXED = 3  # four objects are always a group (a caption naming four different ones is too long)

PLACED_CAPTION_PROB = 0.6  # captions that name each object's region (or, for two objects, a relation)
RELATION_CAPTION_PROB = 0.5  # two different objects in a relation that holds: "A above B"
CAPTION_MAX_WORDS = 22  # about 30 word pieces: no prefix or background phrase beyond this

HOLDOUT: frozenset[tuple[str, str]] = frozenset({
    ("red", "heart"), ("green", "star"), ("blue", "triangle"), ("yellow", "circle"), ("purple", "square"),
})

# label map colour of each shape class (a fixed palette, independent of the colour the shape is drawn in)
LABELS: list[tuple[str, tuple[int, int, int]]] = [("background", (0, 0, 0))] + [
    (s, COLORS[c]) for s, c in zip(SHAPES, ("red", "green", "blue", "yellow", "orange", "cyan", "purple", "white"))
]

SHAPE_WORDS = words.SHAPE_WORDS


# ---------------------------------------------------------------- geometry

def _regular(n: int, r: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    a = phase + 2 * np.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)


def _star() -> np.ndarray:
    outer, inner = _regular(5, 1.0), _regular(5, 0.42, -np.pi / 2 + np.pi / 5)
    return np.stack([outer, inner], axis=1).reshape(-1, 2)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 80, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    p = np.stack([x, y], axis=1)
    p -= (p.max(0) + p.min(0)) / 2
    return p / np.abs(p).max()


def _cross(w: float = 0.34) -> np.ndarray:
    return np.array([(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1),
                     (-w, w), (-1, w), (-1, -w), (-w, -w)], dtype=float)


OUTLINES: dict[str, np.ndarray] = {  # unit outlines inside [-1, 1]^2, y down
    "circle": _regular(96),
    "square": np.array([(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
    "triangle": np.array([(0.0, -1.0), (1.0, 0.8), (-1.0, 0.8)]),
    "star": _star(),
    "heart": _heart(),
    "diamond": np.array([(0.0, -1.0), (0.75, 0.0), (0.0, 1.0), (-0.75, 0.0)]),
    "cross": _cross(),
    "hexagon": _regular(6),
}


def coverage(shape: str, center, radius: float, size: int) -> np.ndarray:
    """Fraction of each pixel covered by the shape (float32 [size, size]); center/radius are fractions."""
    big = size * SUPERSAMPLE
    pts = OUTLINES[shape] * radius * big + np.asarray(center) * big
    canvas = Image.new("L", (big, big), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in pts], fill=255)
    small = canvas.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


# ---------------------------------------------------------------- backgrounds

@lru_cache(maxsize=None)
def _texture_source(name: str) -> np.ndarray | None:
    """A bundled grayscale texture (256 x 256 float in [0,1]) or None when unavailable."""
    if name == "noise":
        return None
    try:
        import skimage.data
        gray = getattr(skimage.data, name)()
    except Exception:  # not installed, or the image is not bundled
        return None
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    im = Image.fromarray(np.asarray(gray, dtype=np.uint8)).resize((256, 256), Image.BOX)
    a = np.asarray(im, dtype=np.float32)
    return (a - a.min()) / max(float(a.max() - a.min()), 1.0)


def value_noise(seed: int, size: int, cells: int = 8, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [0,1], float32 [size, size], from a seed."""
    rng = np.random.default_rng(seed)
    out = np.zeros((size, size), np.float32)
    total = 0.0
    for o in range(octaves):
        n = cells * 2 ** o
        grid = Image.fromarray((rng.random((n, n)) * 255).astype(np.uint8))
        layer = np.asarray(grid.resize((size, size), Image.BICUBIC), np.float32) / 255.0
        out += layer * 0.5 ** o
        total += 0.5 ** o
    return np.clip(out / total, 0, 1)


def texture(bg: dict, size: int) -> np.ndarray:
    """The background's texture crop in [0,1], [size, size]."""
    src = _texture_source(bg["texture"])
    if src is None:
        return value_noise(bg["noise_seed"], size)
    ox, oy = (int(v * 128) for v in bg["offset"])
    crop = Image.fromarray((src[oy:oy + 128, ox:ox + 128] * 255).astype(np.uint8))
    return np.asarray(crop.resize((size, size), Image.BILINEAR), np.float32) / 255.0


def render_background(bg: dict, size: int) -> np.ndarray:
    """float32 [size, size, 3] RGB in 0..255."""
    c1 = np.array(BACKGROUNDS[bg["color"]], np.float32)
    if bg["kind"] == "plain":
        return np.broadcast_to(c1, (size, size, 3)).copy()
    if bg["kind"] == "gradient":
        c2 = np.array(BACKGROUNDS[bg["color2"]], np.float32)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        a = np.deg2rad(bg["angle"])
        s = (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a)
        s = (s - s.min()) / max(float(s.max() - s.min()), 1e-6)
        return c1 * (1 - s[..., None]) + c2 * s[..., None]
    tex = texture(bg, size)
    return c1 * (0.45 + 0.8 * tex[..., None]) + 6.0


# ---------------------------------------------------------------- scenes

def is_held_out(scene: dict) -> bool:
    """True when any object of the scene is a held-out (colour, shape) pair."""
    return any((o["color"], o["shape"]) in HOLDOUT for o in scene["objects"])


def _object(rng, region: str, holdout: bool, colors, *, shape=None, color=None, size=None) -> dict:
    while True:
        s = shape or words.pick(rng, SHAPES)
        c = color or words.pick(rng, colors)
        if not (holdout and (c, s) in HOLDOUT):
            break
        shape = color = None  # a fixed pair can only come from a group, which checked it already
    z = size or words.pick(rng, GRID_SIZES)
    row, col = REGIONS[region]
    radius = SIZES[z]
    slack = max(1 / 6 - radius * 1.02, 0.0) if z != "huge" else 0.04
    cx = (col + 0.5) / 3 + rng.uniform(-slack, slack)
    cy = (row + 0.5) / 3 + rng.uniform(-slack, slack)
    return {"shape": s, "color": c, "size": z, "region": region, "center": [float(cx), float(cy)],
            "radius": radius}


def _background(rng) -> dict:
    kind = words.pick(rng, BACKGROUND_KINDS)
    bg = {"kind": kind, "color": words.pick(rng, BACKGROUNDS)}
    if kind == "gradient":
        bg["color2"] = words.pick(rng, [b for b in BACKGROUNDS if b != bg["color"]])
        bg["angle"] = float(rng.uniform(0, 360))
    elif kind == "texture":
        bg["texture"] = words.pick(rng, TEXTURES)
        bg["offset"] = [float(rng.uniform(0, 1)), float(rng.uniform(0, 1))]
        bg["noise_seed"] = int(rng.integers(2**31))
    return bg


def make_scene(rng: np.random.Generator, holdout: bool = True) -> dict:
    """A random scene description (background + objects), before drawing."""
    n = int(rng.choice(OBJECT_COUNTS, p=OBJECT_COUNT_PROBS))
    layout = "single" if n == 1 else ("group" if n > MAX_MIXED or rng.random() < 0.4 else "mixed")
    bg = _background(rng)
    colors = list(COLORS)
    if layout == "single" and rng.random() < HUGE_PROB:
        return {"objects": [_object(rng, "centre", holdout, colors, size="huge")], "background": bg, "layout": layout}
    regions = [list(REGIONS)[i] for i in rng.permutation(len(REGIONS))[:n]]
    if layout == "group":
        first = _object(rng, regions[0], holdout, colors)
        objects = [first] + [_object(rng, r, holdout, colors, shape=first["shape"], color=first["color"], size=first["size"])
                             for r in regions[1:]]
    else:  # different (colour, shape) pairs: which colour goes with which shape must matter
        objects = []
        for r in regions:
            o = _object(rng, r, holdout, colors)
            while any((o["color"], o["shape"]) == (p["color"], p["shape"]) for p in objects):
                o = _object(rng, r, holdout, colors)
            objects.append(o)
        order = sorted(range(n), key=lambda i: -SIZES[objects[i]["size"]])
        objects = [objects[i] for i in order]
    return {"objects": objects, "background": bg, "layout": layout}


def relations(region_a: str, region_b: str) -> list[str]:
    """The relations "A <r> B" that hold between objects in these grid cells: "above" / "below"
    (same column), "left of" / "right of" (same row), "next to" (same row, adjacent columns)."""
    (ra, ca), (rb, cb) = REGIONS[region_a], REGIONS[region_b]
    out = []
    if ca == cb and ra != rb:
        out.append("above" if ra < rb else "below")
    if ra == rb and ca != cb:
        out.append("left of" if ca < cb else "right of")
        if abs(ca - cb) == 1:
            out.append("next to")
    return out


def _background_phrase(rng, bg: dict) -> str:
    word = lambda key: words.pick(rng, words.BACKGROUND_WORDS[key][0])  # noqa: E731
    if bg["kind"] == "plain":
        return words.background_color_phrase(rng, bg["color"])
    if bg["kind"] == "gradient":
        a, b = word(bg["color"]), word(bg["color2"])
        return words.pick(rng, (f"on a {a} to {b} gradient", f"over a gradient from {a} to {b}"))
    tex, c = ("mottled" if bg["texture"] == "noise" else bg["texture"]), word(bg["color"])
    return words.pick(rng, (f"on a {c} {tex} texture", f"over a {tex}-textured {c} background"))


def _objects_phrase(rng, scene: dict, placed: bool, with_size: bool, lead: str) -> str:
    """The objects (and, when placed, where they are) in training wordings; `lead` is the prefix
    ("a picture of "), which a place may not follow."""
    objs = scene["objects"]
    colour = lambda o: words.color_word(rng, o["color"], shade_prob=0.15, base_prob=0.5)  # noqa: E731
    if scene["layout"] == "group":
        text = words.object_phrase(rng, objs[0], with_size=with_size, color=colour(objs[0]), count=len(objs))
        return f"{text}, {words.listing([words.place_phrase(rng, o['region']) for o in objs])}" if placed else text
    phrases = [words.object_phrase(rng, o, with_size=with_size, color=colour(o)) for o in objs]
    if len(objs) == 1:
        if objs[0]["size"] == "huge" or not placed:
            return phrases[0]
        place = words.place_phrase(rng, objs[0]["region"])
        return f"{place}, {phrases[0]}" if rng.random() < 0.3 and not lead else f"{phrases[0]} {place}"
    rel = relations(objs[0]["region"], objs[1]["region"]) if len(objs) == 2 else []
    if placed and rel and rng.random() < RELATION_CAPTION_PROB:
        return f"{phrases[0]} {words.relation_phrase(rng, words.pick(rng, rel))} {phrases[1]}"
    if placed:
        phrases = [f"{p} {words.place_phrase(rng, o['region'])}" for p, o in zip(phrases, objs)]
    if len(objs) == 2:
        return words.join(rng, *phrases)
    return words.listing(phrases)


def make_caption(rng, scene: dict) -> str:
    """The scene's caption, in training wordings only. Objects are placed (their regions, or a
    relation between two) with probability `PLACED_CAPTION_PROB`, so plain prompts ("a red heart",
    "three red hearts") are in the training distribution too; a background is named 60 % of the
    time, after the objects or (a fifth of those) before them."""
    with_size = rng.random() < 0.7
    placed = rng.random() < PLACED_CAPTION_PROB
    lead = words.prefix(rng)
    text = _objects_phrase(rng, scene, placed, with_size, lead)
    named = rng.random() < 0.6
    bg, first = _background_phrase(rng, scene["background"]), rng.random() < 0.2
    if len(lead.split()) + len(text.split()) > CAPTION_MAX_WORDS - len(bg.split()):
        return text  # the text encoder reads 32 tokens: long captions keep their objects whole
    if named:
        text = f"{bg}, {text}" if first and not lead else f"{text} {bg}"
    return lead + text


def render_scene(scene: dict, size: int = NATIVE_SIZE):
    """Draw a scene: (image uint8 [size,size,3], labels uint8 [size,size], bboxes per object)."""
    canvas = render_background(scene["background"], size)
    labels = np.zeros((size, size), np.uint8)
    bboxes = []
    for o in scene["objects"]:
        alpha = coverage(o["shape"], o["center"], o["radius"], size)[..., None]
        canvas = canvas * (1 - alpha) + np.array(COLORS[o["color"]], np.float32) * alpha
        inside = alpha[..., 0] >= 0.5
        labels[inside] = SHAPES.index(o["shape"]) + 1
        ys, xs = np.nonzero(inside)
        bboxes.append([int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
                      if len(xs) else [0, 0, 0, 0])
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, labels, bboxes


def color_index_map(image: np.ndarray) -> np.ndarray:
    """An analytic detector: per pixel the index into ``COLORS`` of its shape colour, or -1 where the
    pixel is background (brightest channel below ``SHAPE_MIN_VALUE``). image: uint8 [H,W,3].

    An antialiased edge pixel is about ``a * colour`` (a dark background adds little), so each colour
    is scored by the distance to its dimmed versions ``a * colour``, a in [0.5, 1]."""
    rgb = image.astype(np.float32)[:, :, None, :]
    palette = np.array(list(COLORS.values()), np.float32)[None, None]
    a = np.clip((rgb * palette).sum(-1, keepdims=True) / (palette**2).sum(-1, keepdims=True), 0.5, 1.0)
    idx = ((rgb - a * palette) ** 2).sum(-1).argmin(-1)
    idx[image.max(-1) < SHAPE_MIN_VALUE] = -1
    return idx


def make_item(seed: int, index: int, size: int | None = None, holdout: bool = True,
              channels: int = 3) -> Item:
    """Item ``index`` of the shapes set made with ``seed``, drawn at ``size`` (default 64)."""
    rng = item_rng(seed, index)
    scene = make_scene(rng, holdout=holdout)
    scene["caption"] = make_caption(rng, scene)
    scene["class"] = SHAPES.index(scene["objects"][0]["shape"])
    image, labels, bboxes = render_scene(scene, size or NATIVE_SIZE)
    for o, b in zip(scene["objects"], bboxes):
        o["bbox"] = b
    if channels == 1:
        image = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
    return Item(image, labels, scene["caption"], scene["class"], scene)
