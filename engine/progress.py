"""Machine-readable training progress (docs/TRAINING.md): the events `train --progress json` writes,
the stop file that pauses a run, what a data set holds, and fitting a preset's conditioning to it.

The trainers know nothing of JSON or files. They call two hooks, which train_cli builds here:
`hooks["event"](kind, fields)` at the start of the loop, after steps, sample grids, checkpoints and
at the end; and `hooks["should_stop"]()` after every step (True = checkpoint and stop, like Ctrl+C).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable, TextIO

STEP_INTERVAL = 0.5     # seconds between "step" events that carry no loss
STAGE_EVENTS = ("stage", "start", "step", "sample", "checkpoint", "end")

Emit = Callable[[str, dict], None]


class EventStream:
    """Writes events as JSON lines to `stream`, each with "event", "time" and (training events) the
    current "stage", flushed at once. Loss-less "step" events are thinned to one per STEP_INTERVAL."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.stage = ""
        self.last_step = 0.0

    def __call__(self, kind: str, fields: dict | None = None) -> None:
        fields = dict(fields or {})
        now = time.time()
        if kind == "step" and "loss" not in fields:
            if now - self.last_step < STEP_INTERVAL:
                return
        if kind == "step":
            self.last_step = now
        if kind == "stage":
            self.stage = str(fields.get("stage", ""))
        record = {"event": kind, "time": round(now, 3)}
        if kind in STAGE_EVENTS and self.stage:
            record["stage"] = self.stage
        record.update(fields)
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()


def no_event(kind: str, fields: dict | None = None) -> None:
    """The event hook when nobody listens."""


def stop_file_hook(path: str | Path | None) -> Callable[[], bool]:
    """should_stop(): True once `path` exists (the file is removed when the run honours it)."""
    if not path:
        return lambda: False
    path = Path(path)

    def should_stop() -> bool:
        if path.exists():
            path.unlink(missing_ok=True)
            return True
        return False

    return should_stop


def describe_device(device) -> tuple[str, str]:
    """("cpu" | "cuda" | …, a name a person reads: 'CPU (2 cores)', 'NVIDIA H200')."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda" and torch.cuda.is_available():
        index = getattr(device, "index", None) or 0
        return kind, torch.cuda.get_device_name(index)
    if kind == "cpu":
        return kind, f"CPU ({os.cpu_count()} cores)"
    return kind, kind.upper()


# ----------------------------------------------------------------------------- data


def data_summary(ds, cfg: dict, label_spec: list) -> dict:
    """What a data set holds, for the data check: images, classes (with counts for folders),
    captions, masks, label maps, whether the labels are named, and the skipped files with why."""
    d = cfg["dataset"]
    common = {"size": d["size"], "channels": 1 if d["grayscale"] else 3, "labels_named": bool(label_spec)}
    if d["name"] != "folder":
        count = len(ds)
        return {"kind": "generated", "name": d["name"], "path": "", "images": count,
                "classes": {str(c): 0 for c in getattr(ds, "classes", [])}, "unclassified": 0,
                "captions": count, "masks": 0, "label_maps": count if getattr(ds, "labels", None) else 0,
                "skipped": [], **common}
    entries = ds.entries
    per_class = Counter(e.class_index for e in entries)
    return {"kind": "folder", "name": "folder", "path": str(ds.root), "images": len(entries),
            "classes": {name: per_class.get(i, 0) for i, name in enumerate(ds.classes)},
            "unclassified": per_class.get(-1, 0), "captions": sum(1 for e in entries if e.caption),
            "masks": sum(1 for e in entries if e.mask is not None),
            "label_maps": sum(1 for e in entries if e.labels is not None),
            "skipped": [{"path": str(s.path), "reason": s.reason} for s in ds.skipped], **common}


def fit_conditioning(conditioning: dict, summary: dict) -> dict:
    """The preset's [conditioning] fitted to the data (train --fit-data): class labels when there are
    two classes or more, text when there are captions (the preset's encoder, else the frozen MiniLM),
    label maps when every image has a named one, inpainting when the preset or the data has masks."""
    c = dict(conditioning)
    c["class"] = len(summary["classes"]) >= 2
    c["text"] = (conditioning["text"] or "minilm") if summary["captions"] else ""
    if summary["images"] and summary["label_maps"] == summary["images"] and summary["labels_named"]:
        c["mask"] = "semantic"
    elif conditioning["mask"] == "inpaint" or summary["masks"]:
        c["mask"] = "inpaint"
    else:
        c["mask"] = ""
    return c


def describe_summary(summary: dict, conditioning: dict) -> str:
    """The data check for people at a terminal (the app shows the same fields its own way)."""
    s = summary
    classes = ", ".join(f"{k} ({v})" if v else k for k, v in s["classes"].items()) or "none"
    lines = [f"data: {s['images']} images ({s['kind']}{': ' + s['path'] if s['path'] else ''})",
             f"classes: {classes}", f"captions: {s['captions']}, masks: {s['masks']}, label maps: {s['label_maps']}"
             + ("" if s["labels_named"] or not s["label_maps"] else " (not used: no dataset.json names their labels)")]
    lines += [f"skipped {x['path']}: {x['reason']}" for x in s["skipped"]]
    used = [k for k in ("class", "text", "mask") if conditioning.get(k)]
    lines.append("conditioning: " + (", ".join(f"{k}={conditioning[k]}" for k in used) or "none"))
    return "\n".join(lines)
