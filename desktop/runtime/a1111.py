"""AUTOMATIC1111's `parameters` text ("infotext"), read as A1111 reads it and written as it writes it.

    a castle <lora:castleLora:0.8>
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 12345, Size: 512x768,
    Model hash: abc123def0, Model: dreamshaper_8, Clip skip: 2, Lora hashes: "castleLora: deadbeef", Version: v1.10.1

`parse(text)` follows A1111's own `parse_generation_parameters` (modules/infotext_utils.py): the
last line holds the parameters when A1111's `key: value` pattern matches it at least three times;
a value in double quotes is JSON; everything before is the prompt, from "Negative prompt:" on the
negative prompt. `to_request(params)` turns that into our request fields and lists, in plain
words, everything it could not apply (LoRA, clip skip, hires fix, a VAE, an unknown sampler, a
value it cannot read...): nothing is dropped silently. `write(recipe)` is the text our PNGs carry.
"""
from __future__ import annotations

import json
import math
import re

from diffusion.samplers import SAMPLER_SPECS, SAMPLERS

from .manifest import MAX_IMAGE_SIDE

# A1111's re_param and re_imagesize (modules/infotext_utils.py).
PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
SIZE = re.compile(r"^(\d+)x(\d+)$")
EXTRA_NETWORK = re.compile(r"<(lora|lyco|hypernet):([^:>]+)(?::([^:>]*))?(?::[^>]*)?>", re.IGNORECASE)
WEIGHTED = re.compile(r"\([^()]*:\s*-?\d+(?:\.\d+)?\s*\)")
MAX_SEED = 2**63 - 1

# Our sampler names <-> A1111's (Sampler, Schedule type), from the one sampler table; "Automatic" is
# the sampler's own schedule.
A1111_NAMES = {spec.name: spec.a1111 for spec in SAMPLER_SPECS}
SCHEDULE_SUFFIXES = ("karras", "exponential", "polyexponential", "sgm uniform", "uniform", "simple", "normal",
                     "beta", "align your steps", "kl optimal", "ddim")
# Fields that change nothing here when they hold A1111's default.
DEFAULTS = {"clip skip": "1", "schedule type": "automatic", "seed resize from": "-1x-1", "rng": "gpu"}
SILENT = {"version", "model hash", "model", "size", "steps", "sampler", "schedule type", "cfg scale", "seed",
          "class", "prompt", "negative prompt", "denoising strength"}


def quote(text) -> str:
    """A1111's quoting: JSON when the value holds a comma, a newline or a colon."""
    text = str(text)
    return json.dumps(text, ensure_ascii=False) if ("," in text or "\n" in text or ":" in text) else text


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse(text: str) -> dict[str, str]:
    """{"Prompt", "Negative prompt", and every "Key": "value" of the parameters line}, as A1111 reads them."""
    *lines, last = text.strip().split("\n")
    if len(PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].strip()
        (negative if in_negative else prompt).append(line)
    params = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in PARAM.findall(last):
        params.setdefault(key.strip(), unquote(value.strip()))
    return params


def sampler_from_a1111(sampler: str, schedule_type: str | None = None) -> tuple[str | None, str | None]:
    """(our sampler name or None, the schedule we could not apply or None) for A1111's names.

    "DPM++ 2M Karras" (A1111 before 1.9) is "DPM++ 2M" with "Schedule type: Karras"."""
    name = sampler.strip().lower()
    schedule = (schedule_type or "").strip().lower()
    for suffix in SCHEDULE_SUFFIXES:
        if not schedule and name.endswith(" " + suffix):
            name, schedule = name[: -len(suffix) - 1].strip(), suffix
    if schedule == "automatic":
        schedule = ""
    for ours, (a1111, a1111_schedule) in A1111_NAMES.items():
        if ours in SAMPLERS and a1111.lower() == name and (a1111_schedule or "").lower() == schedule:
            return ours, None
    for ours, (a1111, a1111_schedule) in A1111_NAMES.items():
        if ours in SAMPLERS and a1111.lower() == name and a1111_schedule is None:
            return ours, schedule or None  # the sampler exists; its schedule does not
    return None, None


def _int(value: str, lo: int, hi: int) -> int | None:
    return int(value) if re.fullmatch(r"\d{1,19}", value.strip()) and lo <= int(value) <= hi else None


def _number(value: str, lo: float, hi: float) -> float | None:
    try:
        v = float(value)
    except ValueError:
        return None
    return v if math.isfinite(v) and lo <= v <= hi else None


def _extra_networks(prompt: str, notes: list[str]) -> str:
    """Remove <lora:name:w> / <hypernet:...> tags (A1111 applies them outside the prompt) and note them."""
    for kind, name, weight in EXTRA_NETWORK.findall(prompt):
        label = "LoRA" if kind.lower() in ("lora", "lyco") else "hypernetwork"
        notes.append(f"{label} {name}" + (f" ({weight})" if weight else ""))
    return re.sub(r"\s+,", ",", re.sub(r"[ \t]{2,}", " ", EXTRA_NETWORK.sub("", prompt))).strip()


def to_request(params: dict[str, str]) -> tuple[dict, dict, list[str]]:
    """(request fields, {"name", "hash"}, notes: what could not be applied, in plain words)."""
    notes: list[str] = []
    fields = {k.lower(): (k, v) for k, v in params.items()}
    request: dict = {"prompt": _extra_networks(params.get("Prompt", ""), notes),
                     "negative_prompt": _extra_networks(params.get("Negative prompt", ""), notes)}
    if WEIGHTED.search(request["prompt"] + request["negative_prompt"]):
        notes.append("prompt weights such as (word:1.2), read here as plain words")

    def take(key, convert, target, *, what):
        if key in fields:
            value = convert(fields[key][1])
            if value is None:
                notes.append(f"{fields[key][0]}: {' '.join(fields[key][1].split())[:40]!r} ({what})")
            else:
                request[target] = value

    take("steps", lambda v: _int(v, 1, 10000), "steps", what="not a step count")
    take("cfg scale", lambda v: _number(v, 0.0, 100.0), "guidance", what="not a guidance scale from 0 to 100")
    take("seed", lambda v: _int(v, 0, MAX_SEED), "seed", what="not a seed from 0 to 2^63 - 1")
    take("class", lambda v: v, "class_name", what="")
    if "size" in fields:
        m = SIZE.match(fields["size"][1])
        if m and 0 < int(m[1]) <= MAX_IMAGE_SIDE and 0 < int(m[2]) <= MAX_IMAGE_SIDE:
            request["width"], request["height"] = int(m[1]), int(m[2])
        else:
            notes.append(f"Size: {fields['size'][1][:40]!r} (not a size)")
    if "sampler" in fields:
        schedule_type = fields.get("schedule type", ("", ""))[1]
        ours, unapplied = sampler_from_a1111(fields["sampler"][1], schedule_type)
        if ours is None:
            notes.append(f"sampler {fields['sampler'][1]}" + (f" ({schedule_type})" if schedule_type and
                                                               schedule_type.lower() != "automatic" else "")
                         + ", which is not available here (the model's default is used)")
        else:
            request["sampler"] = ours
            if unapplied:
                notes.append(f"the {unapplied.title()} schedule of {fields['sampler'][1]}")
    model = {"name": None, "hash": None}
    if "model" in fields and fields["model"][1].strip():
        model["name"] = fields["model"][1].strip()[:200]
    if "model hash" in fields and re.fullmatch(r"[0-9a-fA-F]{8,64}", fields["model hash"][1].strip()):
        model["hash"] = fields["model hash"][1].strip().lower()
    notes += _unapplied(fields)
    return request, model, notes


def _unapplied(fields: dict) -> list[str]:
    """Notes for the fields we do not use (those not at A1111's default value)."""
    notes, hires = [], []
    for key, (label, value) in fields.items():
        if key in SILENT or DEFAULTS.get(key) == value.strip().lower():
            continue
        if key.startswith("hires"):
            hires.append(f"{label[len('Hires '):] or label} {' '.join(value.split())[:40]}".strip())
        elif key in ("lora hashes", "ti hashes", "vae hash", "variation seed strength"):
            continue  # named by their main field (the prompt's tags, TI, VAE, variation seed)
        elif key == "clip skip":
            notes.append(f"clip skip {' '.join(value.split())[:20]}")
        elif key == "vae":
            notes.append(f"VAE {' '.join(value.split())[:60]}")
        else:
            notes.append(f"{label}: {' '.join(value.split())[:60]}")
    if hires:
        notes.append("hires fix (" + ", ".join(hires) + ")")
    if "denoising strength" in fields and not hires:
        notes.append(f"denoising strength {fields['denoising strength'][1]} (the start image is not in the PNG)")
    return notes


def write(recipe: dict) -> str:
    """The `parameters` text of one of our recipes (our JSON recipe dict)."""
    r = recipe["request"]
    sampler, schedule_type = A1111_NAMES.get(r["sampler"], (r["sampler"], None))
    parts = [f"Steps: {r['steps']}", f"Sampler: {sampler}"]
    if schedule_type:
        parts.append(f"Schedule type: {schedule_type}")
    parts += [f"CFG scale: {r['guidance']}", f"Seed: {r['seed']}", f"Size: {r['width']}x{r['height']}",
              f"Model hash: {recipe['model']['hash'][:10]}", f"Model: {quote(recipe['model']['name'])}"]
    if r.get("class_name") is not None:
        parts.append(f"Class: {quote(r['class_name'])}")
    if r.get("init_image") is not None and r.get("strength", 1.0) < 1.0:
        parts.append(f"Denoising strength: {r['strength']}")
    lines = [r.get("prompt") or ""]
    if r.get("negative_prompt"):
        lines.append(f"Negative prompt: {r['negative_prompt']}")
    lines.append(", ".join(parts))
    return "\n".join(lines)
