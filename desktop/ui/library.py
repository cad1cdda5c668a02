"""The user's model library: which model folders exist, what each accepts, and managing the user's own.

Bundled models (the install's assets/models) are read-only; the user's models live in
`paths.user_models_dir()`. Adding a folder copies it there (atomically, after the bundle validated);
adding a model that is already in the library (the same U-Net weights, by the manifest's sha256)
selects the one there instead of making a second copy. Rename gives a user model a display name
(kept in settings; the folder and its manifest stay as exported, so recipes still name the model);
remove deletes a user model's folder.
"""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from desktop.runtime import fileio, paths
from desktop.runtime.manifest import MANIFEST_NAME, MODEL_INDEX_NAME, read_manifest

from .caps import Capabilities, capabilities, manifest_dict

BUNDLED, USER = "bundled", "user"


@dataclass
class ModelEntry:
    path: Path
    source: str                        # BUNDLED | USER
    caps: Capabilities | None = None
    error: str = ""
    fingerprint: str = ""              # the U-Net's sha256 from the manifest: the model's identity
    alias: str = ""                    # the user's display name for it ("" = the manifest's name)

    @property
    def name(self) -> str:
        return self.alias or (self.caps.name if self.caps else self.path.name)


def find_model_folders(root: Path) -> list[Path]:
    """Model folders in `root`; the bundled default (PREFERRED_MODELS) first, then by name."""
    if not root.is_dir():
        return []
    rank = {name: i for i, name in enumerate(paths.PREFERRED_MODELS)}
    return sorted((p for p in root.iterdir() if paths.is_model_dir(p)), key=lambda p: (rank.get(p.name, len(rank)), p.name))


def fingerprint(folder: Path, manifest=None) -> str:
    """The model's identity without hashing gigabytes: the U-Net's sha256 as the manifest records it;
    for an SD-style folder (no studio.json) a hash of model_index.json and the U-Net file's size."""
    if manifest is not None:
        m = manifest_dict(manifest)
        unet = (m.get("files") or {}).get("unet", "")
        return str((m.get("sha256") or {}).get(unet, ""))
    index, unet = folder / MODEL_INDEX_NAME, folder / "unet" / "model.onnx"
    try:
        return "sd:" + hashlib.sha256(index.read_bytes() + str(unet.stat().st_size).encode()).hexdigest()
    except OSError:
        return ""


def read_entry(path: Path, source: str, friendly_error, aliases: dict | None = None) -> ModelEntry:
    """Describe a model folder from its manifest without loading any network."""
    alias = str((aliases or {}).get(str(path), ""))
    if not (path / MANIFEST_NAME).exists():
        caps = capabilities({"name": path.name, "conditioning": {"text": True}}, path)
        return ModelEntry(path, source, caps, fingerprint=fingerprint(path), alias=alias)
    try:
        manifest = read_manifest(path)
        return ModelEntry(path, source, capabilities(manifest, path), fingerprint=fingerprint(path, manifest), alias=alias)
    except Exception as exc:  # noqa: BLE001 - listed with its error, never a crash
        return ModelEntry(path, source, None, friendly_error(exc), alias=alias)


def list_entries(friendly_error, aliases: dict | None = None) -> list[ModelEntry]:
    bundled = paths.bundled_models_dir()
    return [read_entry(p, BUNDLED if p.parent == bundled else USER, friendly_error, aliases) for p in paths.list_models()]


def same_model(entries: list[ModelEntry], print_: str) -> ModelEntry | None:
    """The library's entry with this fingerprint, if any."""
    return next((e for e in entries if print_ and e.fingerprint == print_), None)


def copy_into_library(folder: Path) -> Path:
    """Copy a (validated) model folder into the user's models folder under a free name; its new path."""
    root = paths.user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    target, n = root / folder.name, 2
    while target.exists():
        target = root / f"{folder.name}-{n}"
        n += 1
    fileio.clean_leftovers(root)  # copies and removals a crash interrupted
    tmp = fileio.temp_dir(target, "copy")  # hidden: a half copy is never listed as a model
    try:
        shutil.copytree(folder, tmp, dirs_exist_ok=True)
        fileio.replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def remove_from_library(entry: ModelEntry) -> None:
    """Delete a user model's folder (first renamed away, so a failure never leaves half a model listed)."""
    root = paths.user_models_dir().resolve()
    folder = entry.path.resolve()
    if entry.source != USER or folder.parent != root:
        raise PermissionError(f"{entry.name} ships with the app and cannot be removed; only your own models can.")
    doomed = fileio.temp_path(folder, "removing")  # what a crash leaves is cleaned by the next copy
    folder.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)
