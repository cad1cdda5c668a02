"""`diffusion-studio export SOURCE OUT_DIR`: a training run, diffusers folder or single-file checkpoint -> a bundle.

A SOURCE that is a `.safetensors` file is a single-file checkpoint in the original LDM / A1111 layout
(`engine.single_file`): Stable Diffusion 1.x or 2.x, converted offline with the configs that ship
in engine/sd_configs (or `--config`); pickles (.ckpt, .pt, ...) are refused.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    from export.quantize import CALIBRATION_GENERATIONS

    p = argparse.ArgumentParser(
        prog="diffusion-studio export",
        description="Export a training run, model folder or diffusers folder to a model bundle for the app. "
                    "Every graph is checked in ONNX Runtime against PyTorch before anything is written.",
    )
    p.add_argument("source", metavar="SOURCE",
                   help="a run folder, its model/ folder, a diffusers folder, or a single-file .safetensors "
                        "checkpoint (Stable Diffusion 1.x / 2.x, original layout)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the bundle folder to write")
    p.add_argument("--fp16", action="store_true", help="store weights in fp16 (half the size; computes in fp32)")
    p.add_argument("--gpu-fp16", action="store_true",
                   help="fp16 compute for the U-Net and text encoder (for CUDA; implies fp16 weights)")
    p.add_argument("--optimize", choices=("cpu", "cuda", "auto"), metavar="cpu|cuda|auto",
                   help="fused graphs for one execution provider (attention, LayerNorm, GELU for the CPU; also "
                        "GroupNorm and channels-last convolutions for CUDA, checked on CUDA; auto: CUDA if this "
                        "machine has it, else the CPU). The bundle records where it runs")
    p.add_argument("--int8", action="store_true",
                   help="int8 U-Net for the CPU, calibrated on the model's own sampler inputs; refused unless the "
                        "images stay close to the float model's and the model clears its evaluation floors. "
                        "SOURCE may also be a bundle (studio.json) to quantise")
    p.add_argument("--int8-calibration", type=_positive, metavar="N",
                   help=f"with --int8: generations recorded to calibrate it (default {CALIBRATION_GENERATIONS}); "
                        "fewer is faster, e.g. 2 for an SD-class model on a few CPU cores, where the default "
                        "takes hours")
    p.add_argument("--int8-steps", type=_positive, metavar="S",
                   help="with --int8: sampler steps of each calibration and check generation (default: the "
                        "model's own)")
    p.add_argument("--name", help="the model's name in the app (default: from the source)")
    p.add_argument("--description", help="one line a user reads")
    p.add_argument("--overwrite", action="store_true",
                   help="replace OUT_DIR if it is a model bundle (a folder of other files is never replaced)")
    p.add_argument("--preview-samples", type=int, default=32, metavar="N",
                   help="latents used to fit the live-preview map (default 32)")
    p.add_argument("--preview-decoder", type=int, default=0, metavar="STEPS",
                   help="latent models: train a tiny learned preview decoder for STEPS steps (e.g. 1500, a few "
                        "minutes) instead of the linear preview map")
    sf = p.add_argument_group("single-file checkpoints")
    sf.add_argument("--prediction-type", choices=("epsilon", "v_prediction"),
                    help="override the rule (SD 1.x: epsilon; SD 2.x: v_prediction at 768x768, epsilon = "
                         "SD 2 base at 512x512)")
    sf.add_argument("--config", metavar="FOLDER",
                    help="diffusers config folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, "
                         "scheduler/) for a checkpoint that is not SD 1.x / 2.x shaped")
    sf.add_argument("--tokenizer", metavar="FOLDER",
                    help="CLIP tokenizer files (vocab.json + merges.txt), e.g. an SD folder's tokenizer/ "
                         "(default: from an installed open-clip-torch)")
    return p


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def int8_options(args) -> dict:
    """quantize_in_place's calibration settings the user gave (its defaults otherwise)."""
    options = {"calibration": args.int8_calibration, "steps": args.int8_steps}
    return {k: v for k, v in options.items() if v is not None}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if int8_options(args) and not args.int8:
        return _error("--int8-calibration and --int8-steps go with --int8", 2)
    from export.out_dir import BundleExistsError, check_out_dir

    out_dir = Path(args.out_dir)
    try:
        check_out_dir(out_dir.absolute(), args.overwrite)  # before minutes of work (and before PyTorch)
    except BundleExistsError as exc:
        return _error(exc, 2)
    if args.int8 and (Path(args.source) / "studio.json").is_file():
        return _quantize_bundle(args, out_dir)
    from desktop.runtime import fileio

    fileio.clean_leftovers(out_dir.absolute().parent, out_dir.name)  # what a killed export left
    work = fileio.temp_dir(out_dir.absolute(), "source")  # a single file's conversion: next to OUT_DIR
    try:
        try:
            model = _load_source(args, str(work))
        except (OSError, ValueError, RuntimeError) as exc:
            return _error(f"cannot load {args.source}: {exc}", 2)
        return _export(args, model, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _load_source(args, work: str):
    """The LoadedModel of SOURCE: a single-file checkpoint (converted under `work`) or a folder."""
    from engine.loaded import load_model
    from engine.single_file import is_single_file, load_single_file

    single = (args.prediction_type, args.config, args.tokenizer)
    if is_single_file(args.source):
        return load_single_file(args.source, work_dir=work, config=args.config, prediction_type=args.prediction_type,
                                tokenizer=args.tokenizer)
    if any(v is not None for v in single):
        raise ValueError("--prediction-type, --config and --tokenizer apply to single-file checkpoints only")
    return load_model(args.source)


def _error(message, code: int) -> int:
    """One sentence on stderr; returns the exit code."""
    print(f"diffusion-studio export: {message}", file=sys.stderr)
    return code


def _exit_code(action, *, refused: tuple[type[Exception], ...] = ()) -> int:
    """Runs `action` (writing a bundle): 0; 2 for an OUT_DIR that may not be replaced (or a `refused`
    input); 1 for an export that failed its checks (ExportError)."""
    from export.out_dir import BundleExistsError
    from export.parity import ExportError

    try:
        action()
    except (BundleExistsError, *refused) as exc:
        return _error(exc, 2)
    except ExportError as exc:
        return _error(exc, 1)
    return 0


def _export(args, model, out_dir: Path) -> int:
    from export.bundle_writer import export_bundle

    def run():
        gate = None
        if args.int8:
            from export.quantize import evaluation_gate, evaluations_of

            gate = evaluation_gate(evaluations_of(model.provenance or {}))
        export_bundle(model, out_dir, fp16=args.fp16, gpu_fp16=args.gpu_fp16, optimize=args.optimize,
                      int8=args.int8, int8_gate=gate, int8_options=int8_options(args), name=args.name,
                      description=args.description, overwrite=args.overwrite, preview_samples=args.preview_samples,
                      preview_decoder_steps=args.preview_decoder, source=str(Path(args.source).absolute()))

    return _exit_code(run)


def _quantize_bundle(args, out_dir) -> int:
    """`export BUNDLE OUT --int8`: an int8 copy of an existing bundle (no PyTorch needed)."""

    from desktop.runtime.manifest import BundleError
    from export.quantize import quantize_bundle

    if args.fp16 or args.gpu_fp16 or args.optimize:
        return _error("a bundle SOURCE only takes --int8 (the other options need the model it was exported from)", 2)
    return _exit_code(lambda: quantize_bundle(Path(args.source), out_dir, overwrite=args.overwrite,
                                              **int8_options(args)),
                      refused=(BundleError,))


if __name__ == "__main__":
    sys.exit(main())
