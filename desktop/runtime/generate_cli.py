"""`diffusion-studio generate`: images from a model bundle on the command line (no torch, no Qt).

Errors a user can act on (bad model, bad request, missing file) print one line and exit with 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from .manifest import SAMPLERS, BundleError

PROG = "diffusion-studio generate"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Generate images with a model bundle; each PNG carries "
                                "its recipe (--from-png reproduces it).")
    p.add_argument("--model", help="model name (bundled or in your models folder) or a bundle folder")
    p.add_argument("--prompt", help="text prompt (text models)")
    p.add_argument("--negative", help="negative prompt (replaces the unconditional text)")
    p.add_argument("--class", dest="class_name", help="class name (class models)")
    p.add_argument("--init", help="PNG to start from (img2img / inpainting)")
    p.add_argument("--strength", type=float, help="img2img strength in (0, 1]: 1 ignores the init image's content")
    p.add_argument("--mask", help="PNG mask: white = generate, black = keep (needs --init)")
    p.add_argument("--no-seamless", dest="seamless", action="store_false", default=None,
                   help="inpainting: keep the raw composite (default: Poisson-blend the generated region into the kept pixels)")
    p.add_argument("--labels", help="PNG label map (semantic models): palette indices or the model's colours")
    p.add_argument("--sampler", help=f"{', '.join(SAMPLERS)} (default: the model's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--width", type=int, help="image width in pixels (size-flexible models; `info` says which sizes)")
    p.add_argument("--height", type=int, help="image height in pixels (default: the model's size)")
    p.add_argument("--seed", type=int, help="seed of the first image; image i uses seed + i (default 0)")
    p.add_argument("--batch", type=int, help="number of images (default 1)")
    p.add_argument("--out", help="output folder (default: your outputs folder), or a file name ending in .png "
                   "(with --batch, or when the name is taken, -1, -2, ... are added: nothing is overwritten)")
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda, directml, coreml, ...")
    p.add_argument("--from-png", help="reproduce a PNG's recipe (other options override it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_request(args, recipe: dict | None):
    """The request: the recipe's (if any) with the command line's options on top."""
    from .pipeline import GenerationRequest, RequestError
    request = GenerationRequest.from_dict(recipe["request"]) if recipe else GenerationRequest()
    changes = {k: v for k, v in {
        "prompt": args.prompt, "negative_prompt": args.negative, "class_name": args.class_name,
        "init_image": args.init, "strength": args.strength, "mask": args.mask, "labels": args.labels,
        "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "seed": args.seed,
        "batch_size": args.batch, "seamless": args.seamless, "width": args.width,
        "height": args.height}.items() if v is not None}
    if args.class_name is not None:
        changes["class_index"] = None
    if args.strength is not None and args.init is None and request.init_image is None:
        raise RequestError("--strength needs --init (the picture img2img starts from)")
    if args.init is not None and args.strength is None and not args.from_png and args.mask is None:
        changes["strength"] = 0.75
    return replace(request, **changes)


def choose_model(args, recipe: dict | None) -> tuple:
    """(model folder, notes): --model when given (a folder given by path is remembered, so its PNGs
    replay with --from-png alone); else the installed model the recipe names by hash and name."""
    from .paths import find_model, find_recipe_model, is_model_dir, remember_model
    from .pipeline import RequestError
    if args.model:
        folder = find_model(args.model)
        if Path(args.model).expanduser().is_dir() and is_model_dir(folder):
            remember_model(folder)
        return folder, []
    if recipe is None:
        raise RequestError("say which model to use with --model NAME_OR_FOLDER")
    model = recipe["model"]
    return find_recipe_model(model["name"] or recipe["request"].get("model"), model["hash"],
                             exact=recipe["source"] == "diffusion-studio")


def fit_size(request, bundle) -> tuple:
    """A recipe's size where the model allows it (a U-Net with dynamic height and width, sides that
    are multiples of 8 latent pixels and at most MAX_SIZE_SCALE times the model's own); the
    model's own size, with a note, where not."""
    m = bundle.manifest
    size = (request.width, request.height)
    if None in size or size == (m.image.width, m.image.height):
        return request, []
    shape = bundle.unet.inputs["sample"][1]
    fixed = len(shape) != 4 or any(isinstance(d, int) and d > 0 for d in shape[2:])
    step = m.vae_factor * 8
    from .pipeline import MAX_SIZE_SCALE
    fits = all(step <= v <= MAX_SIZE_SCALE * own and v % step == 0
               for v, own in zip(size, (m.image.width, m.image.height)))
    if fixed or not fits:
        note = f"size {size[0]}x{size[1]} (this model makes {m.image.width}x{m.image.height} images)"
        return replace(request, width=None, height=None), [note]
    return request, []


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from diffusion.samplers import Cancelled, NonFiniteError
    from .bundle import open_bundle
    from .fileio import check_writable_dir
    from .paths import RecipeModelError, outputs_dir
    from .pipeline import RequestError, generate, resolve_request
    from .pngmeta import RecipeError, SaveError, read_recipe_dict, save_result
    from .providers import ProviderError
    paths = []
    try:
        recipe = read_recipe_dict(args.from_png) if args.from_png else None
        request = build_request(args, recipe)
        folder, notes = choose_model(args, recipe)
        notes = (recipe["notes"] if recipe else []) + notes
        bundle = open_bundle(folder, provider=args.provider)
        if bundle.provider_note:
            print(f"note: {bundle.provider_note}", file=sys.stderr)
        if recipe and args.width is None and args.height is None:  # the user's own size is checked as given
            request, size_notes = fit_size(request, bundle)
            notes += size_notes
        # resolved once (pictures read once), so a bad request is named before the output folder's free space
        request, warnings = resolve_request(bundle, request)
        folder, stem = output_place(args.out)
        out_dir = check_writable_dir(folder or outputs_dir(), need_bytes=output_bytes(request))
        if notes:
            print(f"note: not applied from the recipe: {'; '.join(notes)}", file=sys.stderr)
        result = run(bundle, request, quiet=args.quiet, generate=generate)
        for w in warnings + result.warnings:
            print(f"note: {w}", file=sys.stderr)
        paths = save_result(result, out_dir, stem)
    except SaveError as exc:
        for p in exc.saved:
            print(p)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (BundleError, RequestError, RecipeError, RecipeModelError, ProviderError, NonFiniteError, ValueError,
            OSError) as exc:
        print(f"{PROG}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print(f"{PROG}: cancelled; nothing written", file=sys.stderr)
        return 130
    for p in paths:
        print(p)
    print(f"{len(paths)} image(s), {result.timings['total']:.2f} s on {bundle.provider_short}", file=sys.stderr)
    return 0


def one_line(exc: BaseException) -> str:
    """An error as one printable line (no terminal escapes from names that came from outside)."""
    from .paths import shown_name
    return shown_name(" ".join(str(exc).split()), limit=1000)


def output_place(out: str | None) -> tuple[Path | None, str | None]:
    """(folder, file stem) of `--out`: a path ending in ".png" that is not a folder names the file
    (`save_png` adds "-1", "-2", ... for a batch or a taken name); anything else is the folder, its
    images named by `output_stem`. (None, None) without `--out`."""
    if not out:
        return None, None
    path = Path(out)
    if path.suffix.lower() == ".png" and not out.endswith(("/", os.sep)) and not path.is_dir():
        return path.parent, path.stem
    return path, None


def output_bytes(request) -> int:
    """About what the PNGs of a resolved `request` take on disk (uncompressed pixels + the recipe):
    the free space `--out` must have before any work is done."""
    return request.batch_size * (request.height * request.width * 3 + (64 << 10))


def run(bundle, request, *, quiet: bool, generate):
    """`generate` with a progress bar on stderr (unless quiet)."""
    bar = None
    if not quiet:
        from tqdm import tqdm
        bar = tqdm(total=None, desc=bundle.name, unit="step", file=sys.stderr)

    def on_step(info):
        if bar is not None:
            bar.total = info.steps
            bar.update(info.step - bar.n)

    try:
        return generate(bundle, request, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()


if __name__ == "__main__":
    sys.exit(main())
