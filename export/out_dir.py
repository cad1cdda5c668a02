"""Where an export may write: `check_out_dir(out_dir, overwrite)` refuses, in one sentence, anything
that is not a folder holding exactly one of our bundles (`--overwrite` never deletes what is not
ours); `publish_bundle` puts a finished bundle there, OUT_DIR holding the old or the new bundle at
every instant. Used by export_bundle and by the int8 copy of a bundle (export.quantize)."""
from __future__ import annotations

from pathlib import Path

from desktop.runtime.fileio import replace_dir
from desktop.runtime.manifest import MANIFEST_NAME, MODEL_INDEX_NAME
from export.parity import ExportError

__all__ = ["BundleExistsError", "check_out_dir", "foreign_files", "publish_bundle"]


class BundleExistsError(ExportError, FileExistsError):
    """OUT_DIR exists and may not be replaced: overwrite was not asked for, or it is not a bundle."""


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Whether a new bundle may be written at `out_dir`; BundleExistsError (one sentence) if not.

    Nothing there: yes. An empty folder: yes. A bundle (a folder with studio.json whose every file is
    listed in it): only with `overwrite`. Anything else (a file, a link, a folder of other things, a
    bundle holding files of its own) is never replaced, since that would delete what is not ours.
    """
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    tail = "; choose another folder"
    if out_dir.is_symlink():
        raise BundleExistsError(f"{out_dir} is a symbolic link; --overwrite replaces only a bundle folder{tail}")
    if not out_dir.is_dir():
        raise BundleExistsError(f"{out_dir} is a file, not a model bundle; --overwrite replaces only a bundle folder{tail}")
    if not any(out_dir.iterdir()):
        return
    if not (out_dir / MANIFEST_NAME).is_file():
        raise BundleExistsError(f"{out_dir} is a folder that is not a model bundle (it has no {MANIFEST_NAME}); "
                                f"--overwrite replaces only a bundle{tail}")
    foreign = foreign_files(out_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise BundleExistsError(f"{out_dir} holds files that are not part of its bundle ({shown}); move them out "
                                f"or choose another folder")
    if not overwrite:
        raise BundleExistsError(f"{out_dir} already exists; pass --overwrite to replace it")


def foreign_files(bundle: Path) -> list[str]:
    """Files in a bundle folder that its studio.json does not list (names relative to it, sorted)."""
    from desktop.runtime.fileio import read_json

    try:
        data = read_json(bundle / MANIFEST_NAME)
    except (OSError, ValueError):
        data = {}
    listed = {MANIFEST_NAME, MODEL_INDEX_NAME}
    if isinstance(data, dict):
        for table in (data.get("files"), data.get("sha256")):
            if isinstance(table, dict):
                listed |= {str(v) for v in table.values()} | {str(k) for k in table}
    found = (p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if not p.is_dir() or p.is_symlink())
    return sorted(rel for rel in found if rel not in listed)


def publish_bundle(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Put the finished bundle folder `tmp` at OUT_DIR: checked again first (OUT_DIR may have changed
    during the minutes of an export), then `fileio.replace_dir`, so OUT_DIR holds the old or the new
    bundle at every instant (one atomic exchange on Linux and macOS)."""
    check_out_dir(out_dir, overwrite)
    replace_dir(tmp, out_dir)
