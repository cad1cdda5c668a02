"""What every evaluation shares: the sampler settings table, batch generation through the desktop
runtime (timed per image), and the printed table with machine and commit.

The generator is only ever reached through `desktop.runtime` (`open_bundle`, `generate`,
`GenerationRequest`), exactly as the app reaches it; the scorers never look inside it.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..report import commit, machine

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "assets" / "models"


@dataclass(frozen=True)
class SamplerSetting:
    """One row of the standard table: a display label, the runtime's sampler name, its steps."""

    label: str
    sampler: str
    steps: int


SAMPLER_SETTINGS: tuple[SamplerSetting, ...] = (
    SamplerSetting("DDPM-1000", "ddpm", 1000),
    SamplerSetting("DDIM-50", "ddim", 50),
    SamplerSetting("DPM-Solver++ 20", "dpmpp_2m", 20),
    SamplerSetting("DPM-Solver++ 10", "dpmpp_2m", 10),
)
DEFAULT_SETTING = SAMPLER_SETTINGS[2]

_ALIASES = {"ddpm": "ddpm", "ddim": "ddim", "dpmpp_2m": "dpmpp_2m", "dpmpp": "dpmpp_2m",
            "dpm++": "dpmpp_2m", "dpmsolver++": "dpmpp_2m", "dpmpp_2m_sde": "dpmpp_2m_sde",
            "dpm++sde": "dpmpp_2m_sde", "dpmpp_sde": "dpmpp_2m_sde"}
_LABELS = {"ddpm": "DDPM", "ddim": "DDIM", "dpmpp_2m": "DPM-Solver++", "dpmpp_2m_sde": "SDE-DPM-Solver++"}


def setting_label(sampler: str, steps: int) -> str:
    """"DDPM-1000", "DDIM-50", "DPM-Solver++ 20", "SDE-DPM-Solver++ 20"."""
    return f"{_LABELS[sampler]} {steps}" if sampler.startswith("dpmpp") else f"{_LABELS.get(sampler, sampler)}-{steps}"


def with_default(bundle, settings) -> tuple[SamplerSetting, ...]:
    """`settings` plus the bundle's own default sampler and steps (what a user gets) when it is not
    among them already; mock bundles without defaults get `settings` unchanged."""
    d = getattr(getattr(bundle, "manifest", None), "defaults", None)
    sampler, steps = getattr(d, "sampler", None), getattr(d, "steps", None)
    if not isinstance(sampler, str) or not isinstance(steps, int):
        return tuple(settings)
    if any(s.sampler == sampler and s.steps == steps for s in settings):
        return tuple(settings)
    return (*settings, SamplerSetting(f"{setting_label(sampler, steps)} (model default)", sampler, steps))


def parse_samplers(text: str | None) -> tuple[SamplerSetting, ...]:
    """`"ddpm:1000,ddim:50,dpmpp_2m:20"` -> settings; None or "" or "standard" -> the standard table."""
    if not text or text.strip() == "standard":
        return SAMPLER_SETTINGS
    settings = []
    for item in text.split(","):
        name, sep, steps = item.strip().partition(":")
        sampler = _ALIASES.get(name.strip().lower())
        if sampler is None or not sep or not steps.strip().isdigit() or int(steps) < 1:
            raise ValueError(
                f"--samplers item {item.strip()!r}: expected NAME:STEPS with NAME one of "
                f"ddpm, ddim, dpmpp_2m, dpmpp_2m_sde and STEPS a positive integer, e.g. 'ddim:50,dpmpp_2m:20'"
            )
        settings.append(SamplerSetting(setting_label(sampler, int(steps)), sampler, int(steps)))
    return tuple(settings)


# --------------------------------------------------------------------------- generation


def open_model(path: str | Path):
    """Open a bundle folder with the runtime (imported lazily: scorer tests need no runtime)."""
    from desktop.runtime.bundle import open_bundle

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"model bundle {path} does not exist; train and export it first "
            f"(the default models live under {MODELS})"
        )
    return open_bundle(path)


def make_request(**fields):
    """A `GenerationRequest` from the fields given; None values are left at their defaults.

    An unknown field is a clear error naming the field and the fields the runtime does take."""
    from desktop.runtime.pipeline import GenerationRequest

    known = {f.name for f in dataclasses.fields(GenerationRequest)}
    unknown = sorted(k for k, v in fields.items() if v is not None and k not in known)
    if unknown:
        raise TypeError(f"GenerationRequest has no field(s) {unknown}; it takes {sorted(known)}")
    return GenerationRequest(**{k: v for k, v in fields.items() if v is not None})


def generate_images(bundle, setting: SamplerSetting, seed: int, count: int, batch_size: int = 8,
                    **condition) -> tuple[np.ndarray, float]:
    """Generate `count` images with one condition at seeds seed .. seed+count-1.

    Returns (images uint8 [count,H,W,3], seconds per image). `condition` holds the request fields
    (prompt, class, label map, init image + mask, guidance, ...)."""
    from desktop.runtime.pipeline import generate

    images, start = [], time.perf_counter()
    done = 0
    while done < count:
        n = min(batch_size, count - done)
        request = make_request(sampler=setting.sampler, steps=setting.steps, seed=seed + done,
                               batch_size=n, **condition)
        result = generate(bundle, request)
        images.extend(as_rgb_uint8(im) for im in result.images)
        done += n
    seconds = (time.perf_counter() - start) / max(count, 1)
    return np.stack(images[:count]), seconds


def image_size(bundle) -> tuple[int, int]:
    """(height, width) of the bundle's images, from its manifest."""
    return int(bundle.manifest.image.height), int(bundle.manifest.image.width)


def inpaint_fields(image: np.ndarray, mask: np.ndarray) -> dict:
    """The request fields of an inpainting job (mask 1 = generate, 0 = keep)."""
    return {"init_image": np.ascontiguousarray(image), "mask": np.asarray(mask, np.float64)}


def as_rgb_uint8(image) -> np.ndarray:
    """An HxWx3 uint8 array from a runtime image (array HxW, HxWx1, HxWx3, HxWx4 or a PIL image)."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64)), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected an image HxWx3, got shape {np.shape(image)}")
    return a


# --------------------------------------------------------------------------- reporting


def format_table(header: list[str], rows: list[list]) -> str:
    """A plain fixed-width table; floats with 3 decimals."""
    def cell(v):
        if isinstance(v, float):
            return "nan" if np.isnan(v) else f"{v:.3f}"
        return str(v)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def print_report(title: str, model: str | Path, header: list[str], rows: list[list], notes: str = "",
                 record: str | None = None) -> None:
    """Print the table; with `record` (the evaluation's name), also keep it in the bundle's manifest."""
    print(f"# {title}")
    print(f"model:   {model}")
    print(f"machine: {machine()}")
    print(f"commit:  {commit()}")
    if notes:
        print(notes)
    print()
    print(format_table(header, rows))
    if record:
        path = record_in_manifest(model, record, title, header, rows, notes)
        print(f"\nrecorded in {path} (provenance.evaluation.{record})")


def _plain(v):
    if isinstance(v, (float, np.floating)):
        return None if not np.isfinite(v) else round(float(v), 4)
    return v.item() if isinstance(v, np.generic) else v


def record_in_manifest(model: str | Path, name: str, title: str, header: list[str], rows: list[list],
                       notes: str = "") -> Path:
    """Write one evaluation's table into <model>/studio.json as provenance.evaluation[name] (with the
    command, machine, commit and date), atomically. The manifest's files and hashes are untouched, so
    the bundle stays valid and its model hash (the U-Net's) does not change."""
    import json
    from datetime import datetime, timezone

    from desktop.runtime.fileio import write_json
    from desktop.runtime.manifest import MANIFEST_NAME, validate_manifest

    path = Path(model) / MANIFEST_NAME
    d = json.loads(path.read_text(encoding="utf-8"))
    evaluation = d.setdefault("provenance", {}).setdefault("evaluation", {})
    evaluation[name] = {
        "title": title, "command": " ".join(["python"] + [Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "machine": machine(), "commit": commit(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "notes": notes, "rows": [{h: _plain(v) for h, v in zip(header, row)} for row in rows],
    }
    validate_manifest(d, Path(model))  # still a valid manifest
    write_json(path, d)
    return path


def run_main(main) -> None:
    """Run an evaluation's `main()`, turning a missing bundle or a bad option into a one-line error."""
    try:
        main()
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: {exc}")


def add_common_args(parser, model: str, n: int) -> None:
    parser.add_argument("--model", default=str(MODELS / model), help="bundle folder (default: %(default)s)")
    parser.add_argument("--n", type=int, default=n, help="images per condition / prompts (default: %(default)s)")
    parser.add_argument("--samplers", default="standard",
                        help="'standard' (DDPM-1000, DDIM-50, DPM-Solver++ 20 and 10) or e.g. 'ddim:50,dpmpp_2m:20'")
    parser.add_argument("--seed", type=int, default=10_000, help="first evaluation seed (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--record", action="store_true",
                        help="also write the table into the bundle's studio.json (provenance.evaluation)")


def floor_result(scores: dict, floors: dict) -> dict:
    """{"scores", "floors", "failures", "ok"}: a measure fails when it is below its floor
    (or above it, for floors given as ("max", value))."""
    failures = []
    for key, floor in floors.items():
        value = scores.get(key, float("nan"))
        if isinstance(floor, tuple):
            _, limit = floor
            if not value <= limit:
                failures.append(f"{key} = {value:.3f} > {limit}")
        elif not value >= floor:
            failures.append(f"{key} = {value:.3f} < {floor}")
    return {"scores": scores, "floors": floors, "failures": failures, "ok": not failures}
