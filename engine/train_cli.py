"""`diffusion-studio train CONFIG`: train a VAE, pixel DDPM or latent diffusion model.

CONFIG is a preset name (see --list) or a .toml file. On many GPUs / machines the same command
runs under Accelerate: `accelerate launch -m desktop.cli train CONFIG ...`.
Ctrl+C finishes the current step, writes checkpoints/last.safetensors and exits; `--resume`
continues exactly where it stopped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffusion-studio train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", help="preset name (e.g. tiny-pixel, digits) or path to a .toml config")
    p.add_argument("--data", metavar="PATH", help="train on this image folder (sets dataset.name = 'folder')")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--steps", type=int, metavar="N", help="override training.steps")
    p.add_argument("--batch", type=int, metavar="N", help="override training.batch (per process)")
    p.add_argument("--lr", type=float, metavar="LR", help="override training.lr (e.g. higher with a larger --batch)")
    p.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds of training and write the final model")
    p.add_argument("--init", metavar="PATH", help="fine-tune: start the U-Net from a trained run or model folder of the same architecture")
    p.add_argument("--vae", metavar="PATH", help="latent runs: the VAE run folder to use")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.safetensors")
    p.add_argument("--device", choices=("cpu", "cuda"), help="force a device (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    return p


def trainer(kind: str):
    """The training function for a config's kind: the VAE trainer or the diffusion trainer."""
    if kind == "vae":
        from .vae import train_vae

        return train_vae
    from .train import train

    return train


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError, load_config, preset_names
    from .data.folder import DataError
    from .text import TextEncoderError
    from .loop import TrainError

    args = build_parser().parse_args(argv)
    if args.list:
        print("\n".join(preset_names()))
        return 0
    if not args.config:
        print("diffusion-studio train: give a preset name or a .toml config (--list shows presets)", file=sys.stderr)
        return 2
    overrides: dict = {}
    if args.data:
        overrides["dataset"] = {"name": "folder", "path": str(args.data)}
    training = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr), ("max_seconds", args.max_seconds), ("init", args.init)) if v is not None}
    if training:
        overrides["training"] = training
    if args.vae:
        overrides["vae"] = str(args.vae)
    try:
        cfg = load_config(args.config, overrides)
        out = Path(args.out) if args.out else Path("runs") / (cfg["name"] or "run")
        trainer(cfg["kind"])(cfg, out, resume=args.resume, device=args.device, progress=not args.no_progress)
    except (ConfigError, TrainError, CheckpointError, DataError, TextEncoderError) as exc:
        print(f"diffusion-studio train: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the run folder cannot be written (permissions, a full or read-only disk)
        print(f"diffusion-studio train: {exc.strerror or exc}: {exc.filename or out}", file=sys.stderr)
        return 2
    print(f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
