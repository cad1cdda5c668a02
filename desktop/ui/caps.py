"""What a model accepts, read from its manifest, in the shape the controls need.

The manifest (`studio.json`, ARCHITECTURE.md) is turned into a plain dict first (`Manifest.to_dict()`),
so this module depends only on the documented JSON schema.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diffusion import defaults as fallback_table
from diffusion.samplers import SAMPLER_SPECS

SAMPLER_LABELS = {spec.name: spec.label for spec in SAMPLER_SPECS}  # the one sampler table's names


def manifest_dict(manifest) -> dict:
    """A Manifest as its JSON dict (`to_dict()`); a plain dict is taken as it is."""
    if manifest is None:
        return {}
    return manifest if isinstance(manifest, dict) else manifest.to_dict()


@dataclass
class Capabilities:
    name: str
    description: str = ""
    kind: str = "pixel"
    height: int = 32
    width: int = 32
    channels: int = 3
    text: bool = False
    class_names: list[str] | None = None
    mask_kind: str | None = None                 # None | "inpaint" | "semantic"
    labels: list[tuple[str, tuple[int, int, int]]] = field(default_factory=list)
    sampler: str = fallback_table.SAMPLER
    steps: int = fallback_table.STEPS
    max_steps: int = 1000                        # the schedule's num_train_timesteps: more steps are refused
    guidance: float = fallback_table.GUIDANCE_UNCONDITIONAL
    precision: str = "fp32"
    provenance: dict = field(default_factory=dict)

    @property
    def canvas_mode(self) -> str:
        """What the canvas paints first: "semantic" label maps, else an "inpaint" mask. Every model can
        inpaint: with mask channels (mask_kind "inpaint") or through the sampler's blend
        (diffusion.inpaint.inpaint_hook) plus the seamless composite; label-map models paint both."""
        return "semantic" if self.mask_kind == "semantic" else "inpaint"

    @property
    def class_optional(self) -> bool:
        """A text model with classes (shapes): the prompt says what to draw, so the class starts at
        "any" (None, the null class) and is an optional extra."""
        return self.text and bool(self.class_names)

    @property
    def guided(self) -> bool:
        """Classifier-free guidance applies to text, class and semantic conditioning."""
        return self.text or bool(self.class_names) or self.mask_kind == "semantic"


def capabilities(manifest, folder: Path | None = None) -> Capabilities:
    m = manifest_dict(manifest)
    image = m.get("image") or {}
    cond = m.get("conditioning") or {}
    cls = cond.get("class") or None
    mask = cond.get("mask") or None
    defaults = m.get("defaults") or {}
    schedule = m.get("schedule") if isinstance(m.get("schedule"), dict) else {}
    labels = []
    if mask and mask.get("kind") == "semantic":
        for item in mask.get("labels") or []:
            if isinstance(item, dict):
                labels.append((str(item.get("name", "")), tuple(int(c) for c in item.get("color", (128, 128, 128)))))
            else:  # a dataclass or tuple
                name = getattr(item, "name", None) or item[0]
                color = getattr(item, "color", None) or item[1]
                labels.append((str(name), tuple(int(c) for c in color)))
    return Capabilities(
        name=str(m.get("name") or (Path(folder).name if folder else "model")),
        description=str(m.get("description") or ""),
        kind=str(m.get("kind") or "pixel"),
        height=int(image.get("height") or 512),
        width=int(image.get("width") or 512),
        channels=int(image.get("channels") or 3),
        text=bool(cond.get("text")),
        class_names=[str(n) for n in (cls.get("names") if isinstance(cls, dict) else getattr(cls, "names", None) or [])] or None,
        mask_kind=(mask.get("kind") if isinstance(mask, dict) else getattr(mask, "kind", None)),
        labels=labels,
        sampler=str(defaults.get("sampler") or fallback_table.SAMPLER),
        steps=int(defaults.get("steps") or fallback_table.STEPS),
        max_steps=int(schedule.get("num_train_timesteps") or 1000),
        guidance=float(defaults.get("guidance") if defaults.get("guidance") is not None
                       else fallback_table.GUIDANCE_UNCONDITIONAL),
        precision=str(m.get("precision") or "fp32"),
        provenance=dict(m.get("provenance") or {}),
    )


def describe(c: Capabilities) -> str:
    """One line a user reads in the model picker's status: what the model takes."""
    return f"{c.kind} · {c.width}×{c.height} · {accepts(c)}"


def accepts(c: Capabilities) -> str:
    parts = []
    if c.text:
        parts.append("text prompt")
    if c.class_names:
        parts.append(f"{len(c.class_names)} classes")
    if c.mask_kind == "semantic":
        parts.append(f"label map ({len(c.labels)} labels)")
    if not parts:
        parts.append("unconditional")
    parts.append("inpainting mask (trained)" if c.mask_kind == "inpaint" else "inpainting")
    return " · ".join(parts)


def describe_html(c: Capabilities, path: Path | None = None, provider: str = "") -> str:
    """The model's card for the help dialog."""
    rows = [
        ("Name", c.name), ("What it is", c.description or "—"), ("Kind", c.kind),
        ("Image", f"{c.width}×{c.height}, {c.channels} channel(s)"), ("Accepts", accepts(c)),
        ("Defaults", f"{SAMPLER_LABELS.get(c.sampler, c.sampler)}, {c.steps} steps, guidance {c.guidance:g}"),
        ("Precision", c.precision),
    ]
    if c.class_names:
        rows.append(("Classes", ", ".join(c.class_names)))
    if c.labels:
        swatches = " ".join(
            f'<span style="background-color: rgb{tuple(col)}">&nbsp;&nbsp;&nbsp;</span> {name}' for name, col in c.labels
        )
        rows.append(("Labels", swatches))
    for key in ("source", "data", "steps", "train_seconds", "machine", "rebuild"):
        if c.provenance.get(key) not in (None, "", 0):
            rows.append((f"Provenance: {key}", str(c.provenance[key])))
    metrics = c.provenance.get("metrics") or {}
    if metrics:
        rows.append(("Metrics", ", ".join(f"{k} = {v}" for k, v in metrics.items())))
    if provider:
        rows.append(("Running on", provider))
    if path:
        rows.append(("Folder", str(path)))
    body = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    return f"<table cellspacing='4'>{body}</table>"
