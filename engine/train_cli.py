"""`diffusion-studio train CONFIG`: train a VAE, pixel DDPM or latent diffusion model.

CONFIG is a preset name (see --list) or a .toml file. On many GPUs / machines the same command
runs under Accelerate: `accelerate launch -m desktop.cli train CONFIG ...`.
Ctrl+C finishes the current step, writes checkpoints/last.safetensors and exits; `--resume`
continues exactly where it stopped. `--progress json` reports machine-readable events on stdout
(docs/TRAINING.md: the protocol the app follows).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tomllib
from pathlib import Path

from .stages import trainer  # noqa: F401  (the training function for a config's kind; tests and benchmarks use it)

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 130        # stopped with a checkpoint (Ctrl+C or --stop-file), as a shell reports Ctrl+C


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffusion-studio train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", nargs="?", help="preset name (e.g. tiny-pixel, digits) or path to a .toml config")
    p.add_argument("--data", metavar="PATH", help="train on this image folder (sets dataset.name = 'folder')")
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<config name>)")
    p.add_argument("--steps", type=int, metavar="N", help="override training.steps")
    p.add_argument("--batch", type=int, metavar="N", help="override training.batch (per process)")
    p.add_argument("--lr", type=float, metavar="LR", help="override training.lr (e.g. higher with a larger --batch)")
    p.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds of training (over all sessions of the run) and write the final model")
    p.add_argument("--init", metavar="PATH", help="fine-tune: start the U-Net from a trained run or model folder of the same architecture")
    p.add_argument("--vae", metavar="PATH", help="latent runs: the VAE run folder to use")
    p.add_argument("--train-vae", action="store_true", help="latent presets: first train the preset's VAE preset on the same data into OUT/vae, then the latent model on it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="set any config field, e.g. --set training.sample_every=100 (VALUE is TOML; repeatable)")
    p.add_argument("--vae-set", action="append", default=[], metavar="KEY=VALUE", help="--set for the VAE stage of --train-vae")
    p.add_argument("--fit-data", action="store_true", help="fit the preset's conditioning to the data: classes, captions, label maps found there")
    p.add_argument("--check", action="store_true", help="check the config and the data, time a few training steps of every stage on this machine, report and exit")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.safetensors")
    p.add_argument("--finalize", action="store_true", help="with --resume: write model/ from the last checkpoint without training further")
    p.add_argument("--stop-file", metavar="PATH", help="checkpoint and stop (as Ctrl+C does) once PATH exists; the file is removed")
    p.add_argument("--device", choices=("cpu", "cuda"), help="force a device (default: cuda when available)")
    p.add_argument("--progress", choices=("bar", "json", "none"), default="bar", help="a progress bar (default), JSON events on stdout, or nothing")
    p.add_argument("--no-progress", action="store_true", help="same as --progress none")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    return p


def parse_setting(text: str) -> dict:
    """'training.steps=500' -> {"training": {"steps": 500}}; VALUE is TOML, a bare word a string."""
    from .config import ConfigError

    key, sep, value = text.partition("=")
    parts = [k.strip() for k in key.split(".")]
    if not sep or not all(parts):
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. training.steps=500")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    out: dict = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = parsed
    return out


def merged(*dicts: dict) -> dict:
    """Deep merge of nested override dicts (later wins)."""
    out: dict = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def cli_overrides(args) -> dict:
    overrides: dict = {}
    if args.data:
        overrides["dataset"] = {"name": "folder", "path": str(args.data)}
    training = {k: v for k, v in (("steps", args.steps), ("batch", args.batch), ("lr", args.lr), ("max_seconds", args.max_seconds), ("init", args.init)) if v is not None}
    if training:
        overrides["training"] = training
    if args.vae:
        overrides["vae"] = str(args.vae)
    return merged(overrides, *map(parse_setting, args.set))


def list_presets(json_events: bool) -> int:
    """--list: preset names, or one `preset` event each (no torch import either way)."""
    from .config import load_config, preset_names
    from .progress import EventStream
    from .stages import vae_preset_name

    if not json_events:
        print("\n".join(preset_names()))
        return 0
    emit = EventStream(sys.stdout)
    for name in preset_names():
        cfg = load_config(name)
        emit("preset", {"name": name, "description": cfg["description"], "kind": cfg["kind"],
                        "vae_preset": vae_preset_name(cfg) if cfg["kind"] == "latent" else None,
                        "steps": cfg["training"]["steps"], "batch": cfg["training"]["batch"],
                        "size": cfg["dataset"]["size"], "dataset": cfg["dataset"]["name"],
                        "conditioning": cfg["conditioning"]})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    json_events = args.progress == "json"
    if args.list:
        return list_presets(json_events)
    from .progress import EventStream, no_event

    emit = EventStream(sys.stdout) if json_events else no_event
    stdout = sys.stdout
    if json_events:  # stdout carries only events; anything else printed goes to stderr
        sys.stdout = sys.stderr
    try:
        return run(args, emit, list(sys.argv[1:] if argv is None else argv))
    finally:
        sys.stdout = stdout


def run(args, emit, argv: list[str]) -> int:
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data.folder import DataError
    from .loop import TrainError
    from .text import TextEncoderError

    if not args.config:
        return fail(emit, "give a preset name or a .toml config (--list shows presets)")
    emit("session", {"pid": os.getpid(), "argv": argv, "resume": bool(args.resume)})
    try:
        return train_or_check(args, emit)
    except (ConfigError, TrainError, CheckpointError, DataError, TextEncoderError) as exc:
        return fail(emit, str(exc))
    except OSError as exc:  # the run folder cannot be written (permissions, a full or read-only disk)
        return fail(emit, f"{exc.strerror or exc}: {exc.filename or args.out or 'the run folder'}")


def fail(emit, message: str) -> int:
    emit("error", {"message": message})
    print(f"diffusion-studio train: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def train_or_check(args, emit) -> int:
    from .config import load_config
    from .progress import describe_summary, stop_file_hook
    from .loop import CHECKPOINT, TrainError, make_dataset
    from .stages import CHECK_COUNT, check_stages, plan_stages, run_stages, with_count

    overrides = cli_overrides(args)
    vae_overrides = merged(*map(parse_setting, args.vae_set))
    cfg = load_config(args.config, overrides)
    out = (Path(args.out) if args.out else Path("runs") / (cfg["name"] or "run")).absolute()
    if args.finalize and not (args.resume and (out / CHECKPOINT).is_file()):
        raise TrainError(f"--finalize needs --resume and a checkpoint in {out} (it writes model/ from it)")
    plan = lambda c: plan_stages(c, args.config, out, train_vae=args.train_vae, vae_overrides=vae_overrides)  # noqa: E731
    stages = [with_count(s, CHECK_COUNT) for s in plan(cfg)] if args.check else plan(cfg)
    dataset = make_dataset(stages[-1].cfg)
    summary = None
    if args.fit_data or args.check:
        cfg, summary = fitted(args, cfg, overrides, dataset)
        stages = [with_count(s, CHECK_COUNT) for s in plan(cfg)] if args.check else plan(cfg)
    if args.check:
        report = {"data": summary, "conditioning": cfg["conditioning"],
                  **check_stages(stages, dataset=dataset, device=args.device)}
        emit("check", report)
        if args.progress != "json":
            print(describe_summary(summary, cfg["conditioning"]))
            for s in report["stages"]:
                print(f"{s['stage']} ({s['preset']}): {s['seconds_per_step']:.3g} s/step on {report['device_name']}, "
                      f"{s['steps']} steps ~ {s['steps'] * s['seconds_per_step'] / 60:.1f} min")
        return 0
    ended = run_stages(stages, dataset=dataset, resume=args.resume, device=args.device,
                       progress=args.progress == "bar" and not args.no_progress, emit=emit,
                       should_stop=stop_file_hook(args.stop_file), finalize=args.finalize)
    return report_end(ended, out, emit)


def fitted(args, cfg: dict, overrides: dict, dataset) -> tuple[dict, dict]:
    """(the config with --fit-data applied, the data summary)."""
    from .config import load_config
    from .data.generated import GeneratedDataset
    from .loop import dataset_label_spec
    from .progress import data_summary, fit_conditioning

    d = cfg["dataset"]
    full = dataset if d["name"] == "folder" else GeneratedDataset(d["name"], count=d["count"], seed=d["seed"], size=d["size"])
    summary = data_summary(full, cfg, dataset_label_spec(full))
    own = d["name"] != "folder" and load_config(args.config)["dataset"]["name"] == d["name"]
    if args.fit_data and not own:
        cfg = load_config(args.config, merged(overrides, {"conditioning": fit_conditioning(cfg["conditioning"], summary)}))
    return cfg, summary


def report_end(ended: str, out: Path, emit) -> int:
    from .loop import CHECKPOINT

    if ended in ("done", "time_up"):
        emit("done", {"run": str(out), "model": str(out / "model")})
        print(f"run folder: {out}")
        return 0
    if ended == "finalized":
        print(f"model written from the checkpoint: {out / 'model'} (training can resume with --resume)")
        return 0
    print(f"diffusion-studio train: stopped with a checkpoint at {out / CHECKPOINT}; continue with --resume",
          file=sys.stderr)
    return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
