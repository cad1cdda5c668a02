"""Procedural shape scenes: one to three coloured shapes on a plain, gradient or textured background.

Deterministic from (seed, index) (``generated.item_rng``). Native size 64 x 64; shapes are drawn 4x
supersampled and box-filtered, so edges are antialiased.

- ``SHAPES``: shape names; ``COLORS``: shape colours name -> RGB, all bright (max channel >= 200);
  ``BACKGROUNDS``: background colours, all dark or muted (max channel <= 95, at most ~115 after
  texture lighting), so a pixel with max channel >= ``SHAPE_MIN_VALUE`` is a shape pixel and its
  nearest ``COLORS`` entry is its colour (``color_index_map``).
- ``REGIONS``: a 3 x 3 grid (top left, top, top right, left, centre, right, bottom left, bottom,
  bottom right). Every object lies inside its own cell and the objects of a scene take different
  cells, so objects never overlap.
- ``SIZES``: small / medium / large (radius as a fraction of the image side).
- Scenes: one object, or two or three that are either a *group* (identical shape, colour and size:
  "two small green circles ...") or *mixed*. Objects are ordered largest first (stable), and the
  caption names them in that order; the **class is the shape of the first object** (for a mixed
  scene, the largest one; on a tie, the first drawn). ``CLASSES == SHAPES``.
- Captions always name each object's colour and shape; regions (70 %: every object's, or none),
  size (80 %) and background (60 %) are mentioned often, in varied templates and synonyms
  (``SIZE_WORDS``, ``SHAPE_WORDS``, ``REGION_WORDS``).
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
SHAPE_MIN_VALUE = 135  # brightest background: 1.25 * 92 + 6 = 121; darkest shape colour channel max: 230

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
SIZES: dict[str, float] = {"small": 0.09, "medium": 0.125, "large": 0.16}

PLACED_CAPTION_PROB = 0.7  # captions that name each object's region (the rest name none)

HOLDOUT: frozenset[tuple[str, str]] = frozenset({
    ("red", "heart"), ("green", "star"), ("blue", "triangle"), ("yellow", "circle"), ("purple", "square"),
})

# label map colour of each shape class (a fixed palette, independent of the colour the shape is drawn in)
LABELS: list[tuple[str, tuple[int, int, int]]] = [("background", (0, 0, 0))] + [
    (s, COLORS[c]) for s, c in zip(SHAPES, ("red", "green", "blue", "yellow", "orange", "cyan", "purple", "white"))
]

SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium", "medium-sized", "mid-sized"),
              "large": ("large", "big", "huge")}
SHAPE_WORDS = {"circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",),
               "star": ("star",), "heart": ("heart",), "diamond": ("diamond", "rhombus"),
               "cross": ("cross", "plus sign"), "hexagon": ("hexagon",)}
REGION_WORDS = {
    "top left": ("in the top left", "in the upper left", "at the top left"),
    "top": ("at the top", "at the top centre", "near the top"),
    "top right": ("in the top right", "in the upper right", "at the top right"),
    "left": ("on the left", "at the left", "on the left side"),
    "centre": ("in the centre", "in the center", "in the middle"),
    "right": ("on the right", "at the right", "on the right side"),
    "bottom left": ("in the bottom left", "in the lower left", "at the bottom left"),
    "bottom": ("at the bottom", "at the bottom centre", "near the bottom"),
    "bottom right": ("in the bottom right", "in the lower right", "at the bottom right"),
}
NUMBER_WORDS = {2: "two", 3: "three"}


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


def _pick(rng, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _object(rng, region: str, holdout: bool, shape=None, color=None, size=None) -> dict:
    while True:
        s = shape or _pick(rng, SHAPES)
        c = color or _pick(rng, COLORS)
        if not (holdout and (c, s) in HOLDOUT):
            break
        shape = color = None  # a fixed pair can only come from a group, which checked it already
    z = size or _pick(rng, SIZES)
    row, col = REGIONS[region]
    radius = SIZES[z]
    slack = max(1 / 6 - radius * 1.02, 0.0)
    cx = (col + 0.5) / 3 + rng.uniform(-slack, slack)
    cy = (row + 0.5) / 3 + rng.uniform(-slack, slack)
    return {"shape": s, "color": c, "size": z, "region": region, "center": [float(cx), float(cy)],
            "radius": radius}


def make_scene(rng: np.random.Generator, holdout: bool = True) -> dict:
    """A random scene description (objects + background), before drawing."""
    n = int(rng.choice([1, 2, 3], p=[0.5, 0.3, 0.2]))
    regions = [list(REGIONS)[i] for i in rng.permutation(len(REGIONS))[:n]]
    layout = "single" if n == 1 else ("group" if rng.random() < 0.4 else "mixed")
    if layout == "group":
        first = _object(rng, regions[0], holdout)
        objects = [first] + [_object(rng, r, holdout, first["shape"], first["color"], first["size"])
                             for r in regions[1:]]
    else:
        objects = [_object(rng, r, holdout) for r in regions]
        order = sorted(range(n), key=lambda i: -SIZES[objects[i]["size"]])
        objects = [objects[i] for i in order]
    kind = _pick(rng, BACKGROUND_KINDS)
    bg = {"kind": kind, "color": _pick(rng, BACKGROUNDS)}
    if kind == "gradient":
        bg["color2"] = _pick(rng, [b for b in BACKGROUNDS if b != bg["color"]])
        bg["angle"] = float(rng.uniform(0, 360))
    elif kind == "texture":
        bg["texture"] = _pick(rng, TEXTURES)
        bg["offset"] = [float(rng.uniform(0, 1)), float(rng.uniform(0, 1))]
        bg["noise_seed"] = int(rng.integers(2**31))
    return {"objects": objects, "background": bg, "layout": layout}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "ss")) else "s") if " " not in word else \
        word.replace("sign", "signs")


def _background_phrase(rng, bg: dict) -> str:
    if bg["kind"] == "plain":
        return _pick(rng, (f"on a {bg['color']} background", f"against a {bg['color']} backdrop",
                           f"over plain {bg['color']}"))
    if bg["kind"] == "gradient":
        return _pick(rng, (f"on a {bg['color']} to {bg['color2']} gradient",
                           f"over a gradient from {bg['color']} to {bg['color2']}"))
    tex = "mottled" if bg["texture"] == "noise" else bg["texture"]
    return _pick(rng, (f"on a {bg['color']} {tex} texture", f"over a {tex}-textured {bg['color']} background"))


def _listing(parts: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def make_caption(rng, scene: dict) -> str:
    """The scene's caption. Regions are named with probability `PLACED_CAPTION_PROB`, so that plain
    prompts ("a red heart", "three red hearts") are in the training distribution too; the position
    decision is drawn last, so every other word is the same either way."""
    objs, with_size = scene["objects"], rng.random() < 0.8
    def noun(o, plural=False):
        w = _pick(rng, SHAPE_WORDS[o["shape"]])
        desc = ([_pick(rng, SIZE_WORDS[o["size"]])] if with_size else []) + [o["color"]]
        return " ".join(desc + [_plural(w) if plural else w])
    if scene["layout"] == "group":
        places = [_pick(rng, REGION_WORDS[o["region"]]) for o in objs]
        name = noun(objs[0], plural=True)
        placed = f"{NUMBER_WORDS[len(objs)]} {name}, {_listing(places)}"
        plain = f"{NUMBER_WORDS[len(objs)]} {name}"
    else:
        placed_parts, plain_parts = [], []
        for o in objs:
            n, place = noun(o), _pick(rng, REGION_WORDS[o["region"]])
            if len(objs) == 1 and rng.random() < 0.3:
                placed_parts.append(f"{place}, {_article(n)} {n}")
            else:
                placed_parts.append(f"{_article(n)} {n} {place}")
            plain_parts.append(f"{_article(n)} {n}")
        placed, plain = _listing(placed_parts), _listing(plain_parts)
    background = " " + _background_phrase(rng, scene["background"]) if rng.random() < 0.6 else ""
    return (placed if rng.random() < PLACED_CAPTION_PROB else plain) + background


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
