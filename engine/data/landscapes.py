"""Procedural landscapes with a per-pixel label map, deterministic from (seed, index).

Native size 64 x 64 (drawn directly at any ``size``). Two kinds of scene (``RANDOM_MAP_PROB``):

- **Horizon scenes**, painted back to front: a sky gradient, clouds, one or two mountain ranges
  (snow above a snow line), then the ground below the horizon according to the layout
  (``LAYOUTS``, also the class names): a lake (water, a sand or grass shore), a beach (sea and
  sand), a meadow or a forest (grass with trees), or mountains (rock and grass foreground).
- **Random label maps** (``MAP_KINDS``), so that any painted map is followed: Voronoi regions with
  warped borders and any label anywhere, single-label maps, bands (some 1-3 px thin) at any angle,
  small spots and thin strokes on a ground, and checkerboards. Each label is drawn with its own
  colour and texture wherever it is (``label_fields``).

Every scene has a style (``make_style``): a lighting (daylight, evening, overcast) with a random
brightness and tint, a small colour shift per label and a random texture strength and scale, drawn
from its own random stream, so the same label map comes in many looks (``render_scene(scene,
size, style=...)`` redraws a scene's map in another style).

``LABELS`` is the list of (name, RGB) pairs: a label map pixel holds the index into ``LABELS`` (0 =
sky; there is no "background"), and the RGB is the colour a painted label map uses for that label,
so a painted map means the same thing everywhere.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .generated import Item, item_rng
from .shapes import value_noise

NATIVE_SIZE = 64

LABELS: list[tuple[str, tuple[int, int, int]]] = [
    ("sky", (110, 170, 240)),
    ("clouds", (225, 225, 235)),
    ("mountains", (120, 100, 85)),
    ("snow", (255, 255, 255)),
    ("water", (30, 80, 190)),
    ("sand", (230, 205, 135)),
    ("grass", (90, 180, 60)),
    ("trees", (20, 90, 40)),
    ("rock", (135, 135, 135)),
]
L = {name: i for i, (name, _) in enumerate(LABELS)}

LAYOUTS = ("lake", "beach", "meadow", "forest", "mountains")
CLASSES = LAYOUTS

# Base colours of the painted image (not of the label map).
BASE = {
    "clouds": (196, 198, 216), "mountains": (104, 94, 90), "snow": (248, 250, 255),
    "water": (40, 90, 150), "sand": (214, 190, 130), "grass": (80, 150, 50), "trees": (25, 75, 35),
    "rock": (150, 150, 152),
}
# How each label's texture looks, so that it can be told apart anywhere: (strength, noise cells,
# horizontal streaks). Clouds are soft large puffs, snow bright with a fine grain, rock coarse
# light-grey blotches, mountains darker and browner.
TEXTURE = {"clouds": (0.2, 3, False), "mountains": (0.35, 8, False), "snow": (0.1, 16, False),
           "water": (0.25, 4, True), "sand": (0.2, 8, False), "grass": (0.4, 8, False), "trees": (0.6, 16, False),
           "rock": (0.5, 6, False)}

RANDOM_MAP_PROB = 0.5  # scenes that are a random label map instead of a horizon scene
MAP_KINDS = ("regions", "single", "bands", "spots", "checker")
MAP_KIND_PROBS = (0.35, 0.1, 0.2, 0.2, 0.15)
# the class of a random map: the layout of its most common label
LABEL_LAYOUT = {"sky": "meadow", "clouds": "meadow", "mountains": "mountains", "snow": "mountains",
                "water": "lake", "sand": "beach", "grass": "meadow", "trees": "forest", "rock": "mountains"}
LIGHTING = {
    "daylight": {"scale": 1.0, "tint": (1.0, 1.0, 1.0), "sky": ((60, 120, 215), (165, 205, 240))},
    "evening": {"scale": 0.85, "tint": (1.12, 0.92, 0.8), "sky": ((70, 60, 130), (245, 160, 90))},
    "overcast": {"scale": 0.9, "tint": (0.95, 0.97, 1.0), "sky": ((120, 130, 145), (185, 190, 198))},
}


def _profile(rng, size: int, cells: int) -> np.ndarray:
    """A smooth 1-D random curve in [0,1] over x (length size)."""
    knots = rng.random(cells + 1)
    return np.interp(np.linspace(0, cells, size), np.arange(cells + 1), knots)


def _ridge(rng, size: int, base: float, height: float) -> np.ndarray:
    """Mountain ridge y(x) (fraction, y down): a few peaks with straight flanks, plus roughness."""
    x = np.linspace(0, 1, size)
    peaks = rng.integers(2, 4)
    top = np.zeros(size)
    for _ in range(peaks):
        px, ph = rng.uniform(-0.1, 1.1), rng.uniform(0.5, 1.0) * height
        slope = rng.uniform(1.2, 2.4) * height
        top = np.maximum(top, ph - slope * np.abs(x - px))
    top += 0.02 * (_profile(rng, size, 12) - 0.5)
    return base - np.clip(top, 0, None)


def _paint(image, labels, where, name, color_field):
    image[where] = color_field[where]
    labels[where] = L[name]


# ---------------------------------------------------------------- style


def make_style(rng: np.random.Generator) -> dict:
    """A look: lighting with a random brightness and tint, a colour shift per label, texture
    strength and scale, and the seed of the texture noise."""
    lighting = ("daylight", "daylight", "evening", "overcast")[int(rng.integers(4))]
    return {
        "lighting": lighting,
        "brightness": float(rng.uniform(0.92, 1.06)),
        "tint": [float(v) for v in rng.uniform(0.96, 1.04, 3)],
        "shift": {name: [float(v) for v in rng.uniform(0.93, 1.07, 3)] for name in BASE},
        "texture": float(rng.uniform(0.7, 1.5)),
        "scale": float(rng.choice([0.5, 1.0, 1.5])),
        "seed": int(rng.integers(2**31)),
    }


def label_fields(style: dict, size: int, sky_span: float = 1.0) -> dict[str, np.ndarray]:
    """Per label its full-size colour field float32 [size, size, 3] in this style (before the
    lighting): base colour x colour shift x value-noise texture; the sky a vertical gradient that
    reaches its lower colour at `sky_span` (the horizon); water mirrors a quarter of that colour."""
    rng = np.random.default_rng(style["seed"])
    light = LIGHTING[style["lighting"]]
    yy = np.mgrid[0:size, 0:size][0].astype(np.float32) / max(size - 1, 1)
    top, bottom = (np.array(c, np.float32) for c in light["sky"])
    t = np.clip(yy / max(sky_span, 1e-3), 0, 1)[..., None]
    fields = {"sky": top * (1 - t) + bottom * t}
    for name, (amount, cells, streaks) in TEXTURE.items():
        cells = max(2, int(round(cells * style["scale"])))
        n = value_noise(int(rng.integers(2**31)), size, cells=cells)
        if streaks:  # horizontal ripples: each row shares its noise
            n = 0.5 * n + 0.5 * n.mean(axis=1, keepdims=True) * np.ones((1, size))
        amount = min(amount * style["texture"], 0.9)
        shade = 1.0 - amount / 2 + amount * n
        colour = np.array(BASE[name], np.float32) * np.array(style["shift"][name], np.float32)
        fields[name] = colour * shade[..., None]
    fields["water"] = 0.75 * fields["water"] + 0.25 * bottom
    return fields


def apply_lighting(image: np.ndarray, style: dict) -> np.ndarray:
    light = LIGHTING[style["lighting"]]
    scale = light["scale"] * style["brightness"]
    tint = np.array(light["tint"], np.float32) * np.array(style["tint"], np.float32)
    return np.clip(np.rint(image * scale * tint), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- horizon scenes


def make_horizon_scene(rng: np.random.Generator, style: dict) -> dict:
    layout = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
    mountains = layout == "mountains" or rng.random() < 0.6
    return {
        "kind": "horizon",
        "layout": layout,
        "horizon": float(rng.uniform(0.5, 0.62) if layout != "mountains" else rng.uniform(0.62, 0.75)),
        "clouds": int(rng.integers(0, 4)) if style["lighting"] != "overcast" else int(rng.integers(3, 6)),
        "mountains": int(mountains) + int(mountains and rng.random() < 0.4),
        "mountain_height": float(rng.uniform(0.3, 0.5) if layout == "mountains" else rng.uniform(0.12, 0.28)),
        "trees": {"forest": int(rng.integers(8, 16)), "meadow": int(rng.integers(0, 4)),
                  "lake": int(rng.integers(0, 3)), "mountains": int(rng.integers(0, 3))}.get(layout, 0),
        "noise_seed": int(rng.integers(2**31)),
    } | {"snow": layout == "mountains" or (mountains and rng.random() < 0.5)}


def draw_horizon_scene(scene: dict, style: dict, size: int):
    """(image float32 [size,size,3] before lighting, labels uint8 [size,size])."""
    rng = np.random.default_rng(scene["noise_seed"])  # the geometry; the look comes from the style
    fields = label_fields(style, size, sky_span=scene["horizon"])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    cols = np.arange(size)
    bottom = np.array(LIGHTING[style["lighting"]]["sky"][1], np.float32)
    image = fields["sky"].copy()
    labels = np.full((size, size), L["sky"], np.uint8)
    horizon = scene["horizon"]

    clouds = np.zeros((size, size), bool)
    for _ in range(scene["clouds"]):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.05, horizon * 0.6)
        w, h = rng.uniform(0.12, 0.25), rng.uniform(0.04, 0.08)
        for _ in range(int(rng.integers(3, 6))):
            ox, oy = rng.uniform(-w, w), rng.uniform(-h, h / 2)
            clouds |= ((xx - cx - ox) / w) ** 2 + ((yy - cy - oy) / h) ** 2 < 1
    _paint(image, labels, clouds, "clouds", fields["clouds"])

    for r in range(scene["mountains"]):
        height = scene["mountain_height"] * (0.7 if r == 0 and scene["mountains"] == 2 else 1.0)
        ridge = _ridge(rng, size, horizon + 0.02, height)
        far = r == 0 and scene["mountains"] == 2
        mountain = yy >= ridge[None, :]
        col = fields["mountains"] * (1.15 if far else 1.0)
        if far:  # aerial perspective: the far range fades towards the sky
            col = 0.6 * col + 0.4 * bottom
        _paint(image, labels, mountain, "mountains", col)
        peak = float(ridge.min())
        snow_line = peak + (horizon - peak) * (0.3 + 0.1 * (_profile(rng, size, 6) - 0.5))
        if scene["snow"] and not far:
            _paint(image, labels, mountain & (yy < snow_line[None, :]), "snow", fields["snow"])

    wave = lambda amp, cells=5: amp * (_profile(rng, size, cells) - 0.5)  # noqa: E731
    ground = yy >= horizon
    layout = scene["layout"]
    if layout in ("lake", "beach"):
        shore = horizon + rng.uniform(0.15, 0.28) + wave(0.06)
        water = ground & (yy < shore[None, :])
        _paint(image, labels, water, "water", fields["water"])
        land = ground & ~water
        _paint(image, labels, land, "sand", fields["sand"])
        if layout == "lake":
            band = shore + rng.uniform(0.03, 0.08) + wave(0.03)
            _paint(image, labels, land & (yy >= band[None, :]), "grass", fields["grass"])
    else:
        _paint(image, labels, ground, "grass", fields["grass"])
        if layout == "mountains":
            rocks = ground & (value_noise(int(rng.integers(2**31)), size, cells=4) > 0.62)
            _paint(image, labels, rocks, "rock", fields["rock"])

    grass_rows = [(x, y) for y in range(size) for x in cols[::3] if labels[y, x] == L["grass"]]
    if scene["trees"] and grass_rows:
        trees = Image.new("L", (size * 4, size * 4), 0)
        draw = ImageDraw.Draw(trees)
        picks = sorted((grass_rows[int(i)] for i in rng.integers(len(grass_rows), size=scene["trees"])),
                       key=lambda p: p[1])
        for x, y in picks:
            h = size * rng.uniform(0.12, 0.22) * (0.6 + 0.6 * y / size)
            w = h * rng.uniform(0.35, 0.5)
            X, Y, H, W = 4 * x, 4 * (y + 1), 4 * h, 4 * w
            draw.polygon([(X, Y - H), (X + W, Y), (X - W, Y)], fill=255)
        mask = np.asarray(trees.resize((size, size), Image.BOX)) >= 128
        _paint(image, labels, mask, "trees", fields["trees"])
    return image, labels


# ---------------------------------------------------------------- random label maps


def make_map_scene(rng: np.random.Generator) -> dict:
    kind = MAP_KINDS[int(rng.choice(len(MAP_KINDS), p=MAP_KIND_PROBS))]
    return {"kind": "map", "map": kind, "map_seed": int(rng.integers(2**31))}


def _random_labels(rng, n: int) -> list[int]:
    """n labels, any of them, neighbours in the list different."""
    out = [int(rng.integers(len(LABELS)))]
    while len(out) < n:
        k = int(rng.integers(len(LABELS)))
        if k != out[-1]:
            out.append(k)
    return out


def draw_map(kind: str, seed: int, size: int) -> np.ndarray:
    """A random label map uint8 [size,size] of `kind` (geometry in fractions: any size, same map)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    if kind == "single":
        return np.full((size, size), int(rng.integers(len(LABELS))), np.uint8)
    if kind == "regions":  # Voronoi cells with borders warped by noise
        k = int(rng.integers(2, 8))
        pts, labs = rng.random((k, 2)), _random_labels(rng, k)
        amp = rng.uniform(0.0, 0.12)
        wx = xx + amp * (value_noise(int(rng.integers(2**31)), size, cells=4) - 0.5)
        wy = yy + amp * (value_noise(int(rng.integers(2**31)), size, cells=4) - 0.5)
        d = (wx[..., None] - pts[:, 0]) ** 2 + (wy[..., None] - pts[:, 1]) ** 2
        return np.asarray(labs, np.uint8)[d.argmin(-1)]
    if kind == "bands":  # stripes across the image at any angle, some only 1-3 px wide
        n = int(rng.integers(2, 7))
        widths = rng.dirichlet(np.ones(n) * 0.8)
        angle = float(rng.choice([0.0, 90.0, rng.uniform(0, 180)]))
        a = np.deg2rad(angle)
        t = (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
        edges = np.cumsum(widths)[:-1]
        return np.asarray(_random_labels(rng, n), np.uint8)[np.searchsorted(edges, t)]
    if kind == "spots":  # small disks, boxes and thin strokes on a ground
        out = np.full((size, size), int(rng.integers(len(LABELS))), np.uint8)
        for _ in range(int(rng.integers(1, 7))):
            lab, (cx, cy) = int(rng.integers(len(LABELS))), rng.random(2)
            shape = int(rng.integers(3))
            if shape == 0:
                r = rng.uniform(0.03, 0.15)
                where = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            elif shape == 1:
                w, h = rng.uniform(0.04, 0.3, 2)
                where = (np.abs(xx - cx) < w / 2) & (np.abs(yy - cy) < h / 2)
            else:
                a, width = rng.uniform(0, np.pi), rng.uniform(0.015, 0.05)
                where = np.abs((xx - cx) * np.sin(a) - (yy - cy) * np.cos(a)) < width / 2
            out[where] = lab
        return out
    if kind == "checker":
        n = int(rng.integers(2, 5))
        labs = _random_labels(rng, int(rng.integers(2, 5)))
        cell = (np.minimum((yy * n).astype(int), n - 1), np.minimum((xx * n).astype(int), n - 1))
        if rng.random() < 0.5:  # a regular pattern cycling through the labels
            return np.asarray(labs, np.uint8)[(cell[0] + cell[1]) % len(labs)]
        grid = rng.integers(len(labs), size=(n, n))
        return np.asarray(labs, np.uint8)[grid[cell]]
    raise ValueError(f"unknown map kind {kind!r}; choose from {MAP_KINDS}")


def draw_labels(labels: np.ndarray, style: dict) -> np.ndarray:
    """Any label map drawn in a style: each pixel takes its label's field (before the lighting)."""
    size = labels.shape[0]
    fields = label_fields(style, size)
    image = np.zeros((size, size, 3), np.float32)
    for k, (name, _) in enumerate(LABELS):
        where = labels == k
        image[where] = fields[name][where]
    return image


# ---------------------------------------------------------------- scenes, captions, items


def make_scene(rng: np.random.Generator) -> dict:
    """A horizon scene or (probability RANDOM_MAP_PROB) a random label map, with its style."""
    style = make_style(rng)
    scene = make_map_scene(rng) if rng.random() < RANDOM_MAP_PROB else make_horizon_scene(rng, style)
    return scene | {"style": style, "lighting": style["lighting"]}


def render_scene(scene: dict, size: int = NATIVE_SIZE, style: dict | None = None):
    """Draw a landscape: (image uint8 [size,size,3], labels uint8 [size,size]); `style` replaces the
    scene's own (the same label map in another look)."""
    style = style or scene["style"]
    if scene["kind"] == "map":
        labels = draw_map(scene["map"], scene["map_seed"], size)
        image = draw_labels(labels, style)
    else:
        image, labels = draw_horizon_scene(scene, style, size)
    return apply_lighting(image, style), labels


def make_caption(rng, scene: dict) -> str:
    if scene["kind"] == "map":
        names = scene["labels_present"]
        return "a painted map of " + (names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1])
    noun = {"lake": "a lake", "beach": "a beach by the sea", "meadow": "a green meadow",
            "forest": "a pine forest", "mountains": "a mountain range"}[scene["layout"]]
    parts = [noun]
    if scene["mountains"] and scene["layout"] != "mountains":
        parts.append(rng.choice(["below mountains", "with mountains behind", "in front of mountains"]))
    if scene.get("snow"):
        parts.append(rng.choice(["with snowy peaks", "with snow-capped peaks"]))
    if scene["trees"] and scene["layout"] != "forest":
        parts.append(rng.choice(["and a few trees", "with some trees"]))
    sky = "a cloudy sky" if scene["clouds"] >= 2 else "a clear sky"
    parts.append({"daylight": f"under {sky}", "evening": "at sunset", "overcast": "on an overcast day"}[
        scene["lighting"]])
    return " ".join(parts)


def make_item(seed: int, index: int, size: int | None = None, channels: int = 3) -> Item:
    """Item ``index`` of the landscapes set made with ``seed``, drawn at ``size`` (default 64)."""
    rng = item_rng(seed, index)
    scene = make_scene(rng)
    image, labels = render_scene(scene, size or NATIVE_SIZE)
    scene["labels_present"] = sorted(LABELS[i][0] for i in np.unique(labels))
    if scene["kind"] == "map":
        counts = np.bincount(labels.ravel(), minlength=len(LABELS))
        scene["layout"] = LABEL_LAYOUT[LABELS[int(counts.argmax())][0]]
    scene["caption"] = make_caption(rng, scene)
    scene["class"] = LAYOUTS.index(scene["layout"])
    if channels == 1:
        image = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
    return Item(image, labels, scene["caption"], scene["class"], scene)
