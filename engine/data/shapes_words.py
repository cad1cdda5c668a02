"""The words of the shapes captions: what each wording means, and which wordings training never sees.

Every table maps a meaning (a hue, a size, a count, a region, a relation, a background colour) to
a pair ``(training wordings, held-out wordings)``. Training captions (``engine.data.shapes``) use
only the first; the evaluation (``benchmarks/evals/shapes.py``) scores prompts in the held-out
wordings apart from prompts in the training wordings, so the score on the held-out ones says how
the model takes words and sentence shapes it was never taught. The functions below build the
parts of a caption from these tables in either split; ``held_out_markers()`` lists what only a
held-out wording produces (a test checks that no training caption contains one).

The hue table (decided once, here): every colour word names one of the drawn hues of
``engine.data.shapes.COLORS`` and is drawn exactly in that hue ("crimson", "dark red" and "scarlet"
are all drawn (230, 30, 30)); shade words ("light", "dark", "deep", ...) choose no other colour.
Background words name one entry of ``engine.data.shapes.BACKGROUNDS`` (all dark or muted: "dark
red" as a background is maroon, as a shape colour it is the red hue).
"""
from __future__ import annotations

SPLITS = ("train", "heldout")

# hue -> (training words, held-out words)
COLOR_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red", "crimson", "cherry", "ruby", "vermilion"), ("scarlet",)),
    "orange": (("orange", "amber", "pumpkin", "carrot orange"), ("tangerine",)),
    "yellow": (("yellow", "gold", "canary yellow", "sunflower yellow"), ("lemon",)),
    "green": (("green", "emerald", "lime", "grass green"), ("jade",)),
    "cyan": (("cyan", "aqua", "aquamarine"), ("turquoise",)),
    "blue": (("blue", "cobalt", "azure", "royal blue"), ("sapphire",)),
    "purple": (("purple", "violet", "grape", "lavender"), ("amethyst",)),
    "white": (("white", "snow white", "pearl", "chalk white"), ("ivory",)),
}
# shades go before a hue's first word ("dark green"); they keep the hue (white takes none)
SHADE_WORDS: tuple[tuple[str, ...], tuple[str, ...]] = (("light", "dark", "bright", "pale"), ("deep", "vivid"))

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",), "star": ("star",),
    "heart": ("heart",), "diamond": ("diamond", "rhombus"), "cross": ("cross", "plus sign"),
    "hexagon": ("hexagon",),
}

SIZE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tiny": (("tiny", "very small"), ("miniature",)),
    "small": (("small", "little"), ()),
    "medium": (("medium", "medium-sized", "mid-sized"), ()),
    "large": (("large", "big"), ()),
    "huge": (("huge", "giant", "very large"), ("massive",)),
}

# count -> (training words, held-out words); "several" means three or four
COUNT_WORDS: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    2: (("two", "a pair of", "2"), ("a couple of",)),
    3: (("three", "3", "several"), ("a trio of",)),
    4: (("four", "4", "several"), ("a group of four",)),
}
VAGUE_COUNTS = {"several": (3, 4)}

REGION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "top left": (("in the top left", "in the upper left", "at the top left"), ("in the top-left corner",)),
    "top": (("at the top", "at the top centre", "near the top"), ("at the top middle",)),
    "top right": (("in the top right", "in the upper right", "at the top right"), ("in the top-right corner",)),
    "left": (("on the left", "at the left", "on the left side"), ("on the left-hand side",)),
    "centre": (("in the centre", "in the center", "in the middle"), ("in the very middle",)),
    "right": (("on the right", "at the right", "on the right side"), ("on the right-hand side",)),
    "bottom left": (("in the bottom left", "in the lower left", "at the bottom left"), ("in the bottom-left corner",)),
    "bottom": (("at the bottom", "at the bottom centre", "near the bottom"), ("at the bottom middle",)),
    "bottom right": (("in the bottom right", "in the lower right", "at the bottom right"), ("in the bottom-right corner",)),
}

# "A <relation> B": the meaning is a test on the two objects' grid cells (row, column)
RELATION_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "above": (("above",), ("higher than",)),
    "below": (("below", "under"), ("beneath",)),
    "left of": (("to the left of", "left of"), ("on the left of",)),
    "right of": (("to the right of", "right of"), ("on the right of",)),
    "next to": (("next to", "beside"), ("alongside",)),
}

BACKGROUND_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "black": (("black", "jet black"), ("pitch black",)),
    "gray": (("gray", "grey", "slate grey"), ("charcoal",)),
    "navy": (("navy", "navy blue", "dark blue", "midnight blue"), ()),
    "moss": (("moss green", "dark green", "forest green"), ()),
    "brown": (("brown", "dark brown", "chocolate"), ()),
    "maroon": (("maroon", "dark red", "wine red"), ("burgundy",)),
    "plum": (("plum", "dark purple", "aubergine"), ()),
    "teal": (("teal", "dark teal", "dark cyan"), ()),
}

# templates: {c} is the background colour word
BACKGROUND_TEMPLATES = (("on a {c} background", "against a {c} backdrop", "over plain {c}",
                         "with a {c} background", "on {c}"),
                        ("in front of a {c} background", "against plain {c}"))
# one object (the article comes first): {z} size word (may be empty), {c} colour word, {s} shape word
OBJECT_TEMPLATES = (("{z} {c} {s}", "{z} {s} in {c}", "{z} {c} {s}"), ("{z} {s} colored {c}", "{z} {s} painted {c}"))
# a group: {n} count word, {z} size, {c} colour, {s} plural shape word
GROUP_TEMPLATES = (("{n} {z} {c} {s}", "{n} {z} {s} in {c}"), ("{n} {z} {s} colored {c}",))
JOIN_TEMPLATES = (("{a} and {b}", "{a} with {b}"), ("{a} as well as {b}", "{a} along with {b}"))
PREFIXES = (("", "", "", "a picture of ", "an image of ", "a drawing of "), ("a photo of ", "an illustration of "))


def wordings(table_entry, split: str) -> tuple[str, ...]:
    """The training or the held-out wordings of a table entry (the training ones when it has no
    held-out ones)."""
    train, held = table_entry
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    return train if split == "train" or not held else held


def pick(rng, options):
    options = list(options)
    return options[int(rng.integers(len(options)))]


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def plural(word: str) -> str:
    if " " in word:  # "plus sign" -> "plus signs"
        head, last = word.rsplit(" ", 1)
        return f"{head} {plural(last)}"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def color_word(rng, hue: str, split: str = "train", shade_prob: float = 0.0, base_prob: float = 0.0) -> str:
    """A word for a shape hue: with probability shade_prob a shade of its plain name ("dark red"),
    else with probability base_prob the plain name ("red"), else any word of the split."""
    if hue != "white" and rng.random() < shade_prob:
        return f"{pick(rng, wordings(SHADE_WORDS, split))} {COLOR_WORDS[hue][0][0]}"
    if rng.random() < base_prob:
        return COLOR_WORDS[hue][0][0]
    return pick(rng, wordings(COLOR_WORDS[hue], split))


def object_phrase(rng, obj: dict, *, split: str = "train", with_size: bool = True, color: str | None = None,
                  count: int = 1, count_split: str | None = None) -> str:
    """"a small red circle", "a heart in crimson", "three big blue stars" (count > 1)."""
    z = pick(rng, wordings(SIZE_WORDS[obj["size"]], split)) if with_size else ""
    c = color or color_word(rng, obj["color"])
    s = pick(rng, SHAPE_WORDS[obj["shape"]])
    if count > 1:
        n = pick(rng, wordings(COUNT_WORDS[count], count_split or "train"))
        text = pick(rng, wordings(GROUP_TEMPLATES, split)).format(n=n, z=z, c=c, s=plural(s))
    else:
        body = " ".join(pick(rng, wordings(OBJECT_TEMPLATES, split)).format(z=z, c=c, s=s).split())
        text = f"{article(body)} {body}"
    return " ".join(text.split())


def place_phrase(rng, region: str, split: str = "train") -> str:
    return pick(rng, wordings(REGION_WORDS[region], split))


def relation_phrase(rng, relation: str, split: str = "train") -> str:
    return pick(rng, wordings(RELATION_WORDS[relation], split))


def background_color_phrase(rng, color: str, split: str = "train", template_split: str | None = None) -> str:
    """"on a white background", "against a sky blue backdrop" (a plain background)."""
    word = pick(rng, wordings(BACKGROUND_WORDS[color], split))
    return pick(rng, wordings(BACKGROUND_TEMPLATES, template_split or split)).format(c=word)


def join(rng, a: str, b: str, split: str = "train") -> str:
    return pick(rng, wordings(JOIN_TEMPLATES, split)).format(a=a, b=b)


def listing(parts: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def prefix(rng, split: str = "train") -> str:
    return pick(rng, wordings(PREFIXES, split))


# strings that only the held-out templates produce (their words are in the tables' held-out halves)
HELD_OUT_TEMPLATE_MARKERS = ("in front of a", "against plain", "colored", "painted", "as well as", "along with",
                             "a photo of", "an illustration of")


def held_out_markers() -> list[str]:
    """Every word or phrase that only a held-out wording produces (match it as whole words)."""
    words = [w for table in (COLOR_WORDS, SIZE_WORDS, COUNT_WORDS, REGION_WORDS, RELATION_WORDS, BACKGROUND_WORDS)
             for _, held in table.values() for w in held]
    return sorted(set(words) | set(SHADE_WORDS[1]) | set(HELD_OUT_TEMPLATE_MARKERS))
