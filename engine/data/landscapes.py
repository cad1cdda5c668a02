"""Procedural landscapes with a per-pixel label map, deterministic from (seed, index).

Native size 64 x 64 (drawn directly at any ``size``). A scene is painted back to front: a sky
gradient, clouds, one or two mountain ranges (snow above a snow line), then the ground below the
horizon according to the layout (``LAYOUTS``, also the class names): a lake (water, a sand or grass
shore), a beach (sea and sand), a meadow or a forest (grass with trees), or mountains (rock and grass
foreground). Every region gets value-noise texture, and the whole scene a lighting (daylight,
evening, overcast) that tints and scales the colours.

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
    "clouds": (235, 235, 240), "mountains": (105, 98, 96), "snow": (240, 244, 250),
    "water": (40, 90, 150), "sand": (214, 190, 130), "grass": (80, 150, 50), "trees": (25, 75, 35),
    "rock": (120, 115, 110),
}
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


def make_scene(rng: np.random.Generator) -> dict:
    layout = LAYOUTS[int(rng.integers(len(LAYOUTS)))]
    lighting = ("daylight", "daylight", "evening", "overcast")[int(rng.integers(4))]
    mountains = layout == "mountains" or rng.random() < 0.6
    return {
        "layout": layout,
        "lighting": lighting,
        "horizon": float(rng.uniform(0.5, 0.62) if layout != "mountains" else rng.uniform(0.62, 0.75)),
        "clouds": int(rng.integers(0, 4)) if lighting != "overcast" else int(rng.integers(3, 6)),
        "mountains": int(mountains) + int(mountains and rng.random() < 0.4),
        "mountain_height": float(rng.uniform(0.3, 0.5) if layout == "mountains" else rng.uniform(0.12, 0.28)),
        "trees": {"forest": int(rng.integers(8, 16)), "meadow": int(rng.integers(0, 4)),
                  "lake": int(rng.integers(0, 3)), "mountains": int(rng.integers(0, 3))}.get(layout, 0),
        "noise_seed": int(rng.integers(2**31)),
    } | {"snow": layout == "mountains" or (mountains and rng.random() < 0.5)}


def make_caption(rng, scene: dict) -> str:
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


def _paint_trees(image: np.ndarray, labels: np.ndarray, count: int, rng, field) -> None:
    """`count` triangular trees standing on grass (every third column), nearer ones larger, drawn at 4x
    and box-filtered; `field` gives their colour texture."""
    size = labels.shape[0]
    grass_rows = [(x, y) for y in range(size) for x in range(0, size, 3) if labels[y, x] == L["grass"]]
    if not grass_rows:
        return
    trees = Image.new("L", (size * 4, size * 4), 0)
    draw = ImageDraw.Draw(trees)
    picks = sorted((grass_rows[int(i)] for i in rng.integers(len(grass_rows), size=count)), key=lambda p: p[1])
    for x, y in picks:
        h = size * rng.uniform(0.12, 0.22) * (0.6 + 0.6 * y / size)
        w = h * rng.uniform(0.35, 0.5)
        X, Y, H, W = 4 * x, 4 * (y + 1), 4 * h, 4 * w
        draw.polygon([(X, Y - H), (X + W, Y), (X - W, Y)], fill=255)
    mask = np.asarray(trees.resize((size, size), Image.BOX)) >= 128
    _paint(image, labels, mask, "trees", field("trees", amount=0.5))


def render_scene(scene: dict, size: int = NATIVE_SIZE):
    """Draw a landscape: (image uint8 [size,size,3], labels uint8 [size,size])."""
    rng = np.random.default_rng(scene["noise_seed"])
    light = LIGHTING[scene["lighting"]]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)

    def field(name, streaks=False, amount=0.25):
        n = value_noise(int(rng.integers(2**31)), size, cells=4 if streaks else 8)
        if streaks:  # horizontal ripples: each row shares its noise
            n = 0.5 * n + 0.5 * n.mean(axis=1, keepdims=True) * np.ones((1, size))
        shade = 1.0 - amount / 2 + amount * n
        return np.array(BASE[name], np.float32) * shade[..., None]

    image = np.zeros((size, size, 3), np.float32)
    labels = np.zeros((size, size), np.uint8)
    horizon = scene["horizon"]

    top, bottom = (np.array(c, np.float32) for c in light["sky"])
    s = np.clip(yy / horizon, 0, 1)[..., None]
    image[:] = top * (1 - s) + bottom * s
    labels[:] = L["sky"]

    clouds = np.zeros((size, size), bool)
    for _ in range(scene["clouds"]):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.05, horizon * 0.6)
        w, h = rng.uniform(0.12, 0.25), rng.uniform(0.04, 0.08)
        for _ in range(int(rng.integers(3, 6))):
            ox, oy = rng.uniform(-w, w), rng.uniform(-h, h / 2)
            clouds |= ((xx - cx - ox) / w) ** 2 + ((yy - cy - oy) / h) ** 2 < 1
    _paint(image, labels, clouds, "clouds", field("clouds", amount=0.15))

    for r in range(scene["mountains"]):
        height = scene["mountain_height"] * (0.7 if r == 0 and scene["mountains"] == 2 else 1.0)
        ridge = _ridge(rng, size, horizon + 0.02, height)
        far = r == 0 and scene["mountains"] == 2
        mountain = yy >= ridge[None, :]
        col = field("mountains", amount=0.35) * (1.15 if far else 1.0)
        if far:  # aerial perspective: the far range fades towards the sky
            col = 0.6 * col + 0.4 * bottom
        _paint(image, labels, mountain, "mountains", col)
        peak = float(ridge.min())
        snow_line = peak + (horizon - peak) * (0.3 + 0.1 * (_profile(rng, size, 6) - 0.5))
        if scene["snow"] and not far:
            snow = mountain & (yy < snow_line[None, :])
            _paint(image, labels, snow, "snow", field("snow", amount=0.12))

    wave = lambda amp, cells=5: amp * (_profile(rng, size, cells) - 0.5)  # noqa: E731
    ground = yy >= horizon
    layout = scene["layout"]
    if layout in ("lake", "beach"):
        shore = horizon + rng.uniform(0.15, 0.28) + wave(0.06)
        water = ground & (yy < shore[None, :])
        wcol = 0.75 * field("water", streaks=True) + 0.25 * bottom
        _paint(image, labels, water, "water", wcol)
        land = ground & ~water
        if layout == "beach":
            _paint(image, labels, land, "sand", field("sand", amount=0.2))
        else:
            band = shore + rng.uniform(0.03, 0.08) + wave(0.03)
            _paint(image, labels, land, "sand", field("sand", amount=0.2))
            _paint(image, labels, land & (yy >= band[None, :]), "grass", field("grass", amount=0.4))
    else:
        _paint(image, labels, ground, "grass", field("grass", amount=0.4))
        if layout == "mountains":
            rocks = ground & (value_noise(int(rng.integers(2**31)), size, cells=4) > 0.62)
            _paint(image, labels, rocks, "rock", field("rock", amount=0.4))

    if scene["trees"]:
        _paint_trees(image, labels, scene["trees"], rng, field)

    image = image * light["scale"] * np.array(light["tint"], np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), labels


def make_item(seed: int, index: int, size: int | None = None, channels: int = 3) -> Item:
    """Item ``index`` of the landscapes set made with ``seed``, drawn at ``size`` (default 64)."""
    rng = item_rng(seed, index)
    scene = make_scene(rng)
    image, labels = render_scene(scene, size or NATIVE_SIZE)
    scene["caption"] = make_caption(rng, scene)
    scene["class"] = LAYOUTS.index(scene["layout"])
    scene["labels_present"] = sorted(LABELS[i][0] for i in np.unique(labels))
    if channels == 1:
        image = np.asarray(Image.fromarray(image).convert("L"))[:, :, None]
    return Item(image, labels, scene["caption"], scene["class"], scene)
