"""`diffusion-studio export SOURCE OUT_DIR`: a training run or diffusers folder -> a model bundle."""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffusion-studio export",
        description="Export a training run, model folder or diffusers folder to a model bundle for the app. "
                    "Every graph is checked in ONNX Runtime against PyTorch before anything is written.",
    )
    p.add_argument("source", metavar="SOURCE", help="a run folder, its model/ folder, or a diffusers folder")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the bundle folder to write")
    p.add_argument("--fp16", action="store_true", help="store weights in fp16 (half the size; computes in fp32)")
    p.add_argument("--gpu-fp16", action="store_true",
                   help="fp16 compute for the U-Net and text encoder (for CUDA; implies fp16 weights)")
    p.add_argument("--optimize", action="store_true",
                   help="ONNX Runtime fusions for the U-Net (CUDA only; checked on CUDA)")
    p.add_argument("--name", help="the model's name in the app (default: from the source)")
    p.add_argument("--description", help="one line a user reads")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it is a model bundle (a folder of other files is never replaced)")
    p.add_argument("--preview-samples", type=int, default=32, metavar="N",
                   help="latents used to fit the live-preview map (default 32)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pathlib import Path

    from engine.loaded import load_model
    from export.bundle_writer import BundleExistsError, check_out_dir, export_bundle
    from export.parity import ExportError

    out_dir = Path(args.out_dir)
    try:
        check_out_dir(out_dir.absolute(), args.overwrite)  # before minutes of work
    except BundleExistsError as exc:
        print(f"diffusion-studio export: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.source)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"diffusion-studio export: cannot load {args.source}: {exc}", file=sys.stderr)
        return 2
    try:
        export_bundle(model, out_dir, fp16=args.fp16, gpu_fp16=args.gpu_fp16, optimize=args.optimize,
                      name=args.name, description=args.description, overwrite=args.overwrite,
                      preview_samples=args.preview_samples, source=str(Path(args.source).absolute()))
    except BundleExistsError as exc:
        print(f"diffusion-studio export: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"diffusion-studio export: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
