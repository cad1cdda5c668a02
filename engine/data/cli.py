"""``diffusion-studio make-dataset``: write a procedural or built-in data set as an image folder.

    diffusion-studio make-dataset {shapes,landscapes,digits} OUT_DIR [--count N] [--seed S] [--size PX]

The folder follows ``engine.data.folder``'s naming rule, so ``ImageFolderDataset(OUT_DIR)`` reads it
back: ``OUT_DIR/<class>/<index>.png`` with ``<index>.txt`` (caption) and, for sets with label maps,
``<index>.labels.png`` (mode P: the pixel is the label index, the palette paints it with ``LABELS``'
colours). ``dataset.json`` records the generator, seed, count, size, classes and labels; shapes and
landscapes also write ``scenes.jsonl`` (one structured description per line, in index order, with
the image's relative ``file``).

Everything is written into a temporary sibling folder that is renamed to OUT_DIR at the end, so an
interrupted run leaves no half-written OUT_DIR. An existing non-empty OUT_DIR is never touched.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from desktop.runtime import fileio

from .generated import GENERATORS, generator_module

PROG = "diffusion-studio make-dataset"
DEFAULT_COUNT = {"shapes": 2000, "landscapes": 1000, "digits": 1797}


class UserError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Write a procedural or built-in data set as an image folder.")
    p.add_argument("name", choices=GENERATORS, help="which data set")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to create (must not exist or be empty)")
    p.add_argument("--count", type=int, default=None,
                   help="number of images (default: shapes 2000, landscapes 1000, digits all 1797)")
    p.add_argument("--seed", type=int, default=0, help="random seed; item i depends only on (seed, i)")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default: 64; digits 16)")
    p.add_argument("--include-held-out", action="store_true",
                   help="shapes: also generate the held-out (colour, shape) pairs (for evaluation sets)")
    return p


def _palette(labels) -> list[int]:
    flat = [v for _, rgb in labels for v in rgb]
    return flat + [0] * (768 - len(flat))


def write_dataset(name: str, out_dir: Path, count: int, *, seed: int = 0, size: int | None = None,
                  include_held_out: bool = False, progress: bool = True) -> Path:
    """Write the folder (see the module docstring); returns OUT_DIR. Raises UserError."""
    module = generator_module(name)
    if count < 1:
        raise UserError(f"--count must be at least 1, not {count}")
    limit = getattr(module, "MAX_COUNT", None)
    if limit is not None and count > limit:
        raise UserError(f"{name} has only {limit} images; --count {count} is too many")
    if size is not None and not 1 <= size <= 4096:
        raise UserError(f"--size must be between 1 and 4096 pixels, not {size}")
    if seed < 0:
        raise UserError(f"--seed must be a non-negative integer, not {seed}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        what = "a file" if not out_dir.is_dir() else "a folder that is not empty"
        raise UserError(f"{out_dir} already exists and is {what}; choose a new folder or delete it first")
    parent = out_dir.absolute().parent
    if not parent.is_dir():
        raise UserError(f"{parent} does not exist; create it first")
    options = {"holdout": not include_held_out} if name == "shapes" else {}
    if include_held_out and name != "shapes":
        raise UserError("--include-held-out applies to shapes only")

    fileio.clean_leftovers(parent, out_dir.name)
    tmp = fileio.temp_dir(out_dir, "build")
    try:
        width = max(6, len(str(count - 1)))
        scenes = []
        for i in tqdm(range(count), desc=f"{name} -> {out_dir}", unit="img", disable=not progress):
            item = module.make_item(seed, i, size=size, **options)
            folder = tmp / module.CLASSES[item.class_index]
            folder.mkdir(exist_ok=True)
            stem = f"{i:0{width}d}"
            image = item.image[:, :, 0] if item.image.shape[2] == 1 else item.image
            Image.fromarray(image).save(folder / f"{stem}.png")
            (folder / f"{stem}.txt").write_text(item.caption + "\n", encoding="utf-8")
            if item.labels is not None:
                lab = Image.fromarray(item.labels).convert("P")
                lab.putpalette(_palette(module.LABELS))
                lab.save(folder / f"{stem}.labels.png")
            if name != "digits":
                scenes.append({"index": i, "file": f"{folder.name}/{stem}.png", **item.scene})
        if scenes:
            with open(tmp / "scenes.jsonl", "w", encoding="utf-8") as f:
                for s in scenes:
                    f.write(json.dumps(s) + "\n")
        info = {
            "generator": name, "seed": seed, "count": count,
            "size": int(item.image.shape[0]), "channels": int(item.image.shape[2]),
            "classes": list(module.CLASSES),
            "labels": [{"name": n, "color": list(c)} for n, c in module.LABELS] if module.LABELS else None,
            "held_out": sorted(list(p) for p in module.HOLDOUT) if name == "shapes" else None,
            "includes_held_out": include_held_out,
            "rebuild": " ".join([PROG, name, str(out_dir), "--count", str(count), "--seed", str(seed)]
                                + (["--size", str(size)] if size else [])
                                + (["--include-held-out"] if include_held_out else [])),
        }
        (tmp / "dataset.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        if out_dir.is_dir():
            out_dir.rmdir()  # empty (checked above); rename over a folder is not portable
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed by argparse
        return int(exc.code or 0)
    count = args.count if args.count is not None else DEFAULT_COUNT[args.name]
    try:
        out = write_dataset(args.name, Path(args.out_dir), count, seed=args.seed, size=args.size,
                            include_held_out=args.include_held_out)
    except (UserError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {count} {args.name} images to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
