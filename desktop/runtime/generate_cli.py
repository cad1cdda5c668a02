"""`diffusion-studio generate`: images from a model bundle on the command line (no torch, no Qt).

Errors a user can act on (bad model, bad request, missing file) print one line and exit with 2.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from .manifest import BundleError

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
    p.add_argument("--sampler", help="ddpm, ddim, dpmpp_2m or dpmpp_2m_sde (default: the model's)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--seed", type=int, help="seed of the first image; image i uses seed + i (default 0)")
    p.add_argument("--batch", type=int, help="number of images (default 1)")
    p.add_argument("--out", help="output folder (default: your outputs folder)")
    p.add_argument("--provider", default="auto", help="auto, cpu, cuda, directml, coreml, ...")
    p.add_argument("--from-png", help="reproduce a PNG's recipe (other options override it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def build_request(args):
    from .pipeline import GenerationRequest
    from .pngmeta import read_recipe
    request = read_recipe(args.from_png) if args.from_png else GenerationRequest()
    changes = {k: v for k, v in {
        "prompt": args.prompt, "negative_prompt": args.negative, "class_name": args.class_name,
        "init_image": args.init, "strength": args.strength, "mask": args.mask, "labels": args.labels,
        "sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "seed": args.seed,
        "batch_size": args.batch, "seamless": args.seamless}.items() if v is not None}
    if args.class_name is not None:
        changes["class_index"] = None
    if args.init is not None and args.strength is None and not args.from_png and args.mask is None:
        changes["strength"] = 0.75
    return replace(request, **changes)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from diffusion.samplers import Cancelled, NonFiniteError
    from .bundle import open_bundle
    from .fileio import check_writable_dir
    from .paths import find_model, outputs_dir
    from .pipeline import RequestError, generate
    from .pngmeta import RecipeError, SaveError, save_result
    from .providers import ProviderError
    paths = []
    try:
        request = build_request(args)
        model = args.model or request.model
        if not model:
            raise RequestError("say which model to use with --model NAME_OR_FOLDER")
        bundle = open_bundle(find_model(model), provider=args.provider)
        out_dir = check_writable_dir(args.out or outputs_dir(), need_bytes=output_bytes(bundle, request))
        result = run(bundle, request, quiet=args.quiet, generate=generate)
        for w in result.warnings:
            print(f"note: {w}", file=sys.stderr)
        paths = save_result(result, out_dir)
    except SaveError as exc:
        for p in exc.saved:
            print(p)
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (BundleError, RequestError, RecipeError, ProviderError, NonFiniteError, ValueError, OSError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (Cancelled, KeyboardInterrupt):
        print(f"{PROG}: cancelled; nothing written", file=sys.stderr)
        return 130
    for p in paths:
        print(p)
    print(f"{len(paths)} image(s), {result.timings['total']:.2f} s on {bundle.provider_short}", file=sys.stderr)
    return 0


def output_bytes(bundle, request) -> int:
    """About what the PNGs of `request` take on disk (uncompressed pixels + the recipe): the free
    space `--out` must have before any work is done."""
    m = bundle.manifest
    height = request.height if isinstance(request.height, int) else m.image.height
    width = request.width if isinstance(request.width, int) else m.image.width
    batch = request.batch_size if isinstance(request.batch_size, int) and request.batch_size > 0 else 1
    return batch * (height * width * 3 + (64 << 10))


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
