"""The generation history: every result with its recipe, persisted across restarts.

A JSON list (newest first) in `dirs.history_file()`, written atomically after every change. Each
entry names the PNG on disk and carries the recipe as `GenerationRequest.to_dict()` plus the model
and provider, so a click restores the parameters even when the PNG has been moved.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diffusion.checks import is_number

from . import dirs

MAX_ENTRIES = 1000


@dataclass
class HistoryEntry:
    path: str                  # the PNG written for this image
    recipe: dict               # GenerationRequest.to_dict() for this one image (its own seed, batch 1)
    model: str = ""            # bundle folder
    model_name: str = ""
    provider: str = ""
    created: float = field(default_factory=time.time)
    parent: str = ""           # a fork's parent (its PNG path), "" for a run of its own
    fork_step: int = 0         # the step a fork left its parent at (0: not a fork)

    @property
    def prompt(self) -> str:
        return str(self.recipe.get("prompt") or self.recipe.get("class_name") or "")

    @property
    def title(self) -> str:
        """What the image is, in a few words: its prompt, else its class, else what was painted (a
        fork says so first)."""
        return f"step {self.fork_step} fork: {self.what}" if self.fork_step else self.what

    @property
    def what(self) -> str:
        r = self.recipe
        if r.get("prompt"):
            return str(r["prompt"])
        if r.get("class_name") is not None:
            return f"class {r['class_name']}"
        inputs = r.get("inputs") or []
        if "labels" in inputs:
            return "label map" + (" + mask" if "mask" in inputs else "")
        if "mask" in inputs:
            return "inpainting"
        if "init_image" in inputs:
            return "from an image"
        return "unconditional"


def entry_from_json(item) -> HistoryEntry | None:
    """A history entry read back, or None when it is not one (history.json is read, not trusted)."""
    from desktop.runtime.pngmeta import RecipeError, check_request

    if not isinstance(item, dict):
        return None
    try:
        entry = HistoryEntry(**item)
    except TypeError:
        return None
    texts = (entry.path, entry.model, entry.model_name, entry.provider)
    if not (all(isinstance(t, str) and "\0" not in t for t in texts) and isinstance(entry.recipe, dict)
            and is_number(entry.created)
            and math.isfinite(entry.created)):
        return None
    try:
        check_request(entry.recipe, "history.json", decode_images=False)
    except RecipeError:
        return None
    return entry


class History:
    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path else dirs.history_file()
        self.entries: list[HistoryEntry] = []
        raw = dirs.read_json(self.path, [])
        for item in raw[:MAX_ENTRIES] if isinstance(raw, list) else []:
            entry = entry_from_json(item)
            if entry is not None:  # a damaged entry, or one from a future version: skip it, keep the rest
                self.entries.append(entry)

    def add(self, entries: list[HistoryEntry]) -> None:
        self.entries[:0] = list(reversed(entries))
        del self.entries[MAX_ENTRIES:]
        self.save()

    def remove(self, index: int) -> None:
        del self.entries[index]
        self.save()

    def save(self) -> None:
        dirs.write_json_atomic(self.path, [asdict(e) for e in self.entries])

    def __len__(self) -> int:
        return len(self.entries)
