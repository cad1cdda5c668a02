"""Training throughput (images/s) per preset: a few steps after warm-up, on CPU or --device cuda.

    python benchmarks/bench_train.py tiny-pixel tiny-vae tiny-latent digits --steps 5 --warmup 2

Runs each preset's real trainer on its real (generated) data set into a temporary folder, reads the
images/s that metrics.jsonl logs for the steps after the warm-up steps, and prints a table with the
machine and the git commit. Latent presets use a tiny VAE trained for 2 steps first (throughput
does not depend on how good the VAE is).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import commit, machine  # noqa: E402


def bench(preset: str, cfg: dict, warmup: int, device: str, tmp: Path) -> dict:
    """Trains `cfg` (the preset loaded with the timing overrides and, latent presets, the VAE run)."""
    from engine.train_cli import trainer

    run = trainer(cfg["kind"])(cfg, tmp / preset, device=device, progress=False)
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    ips = [r["images_per_s"] for r in rows if r["step"] > warmup]
    return {"preset": preset, "kind": cfg["kind"], "size": cfg["dataset"]["size"], "batch": cfg["training"]["batch"],
            "images_per_s": sum(ips) / len(ips), "final_loss": rows[-1]["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("presets", nargs="*", default=["tiny-pixel", "tiny-vae", "tiny-latent", "digits"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        vae_runs: dict[int, Path] = {}
        from engine.config import load_config

        over = {"training": {"steps": args.warmup + args.steps, "log_every": 1, "checkpoint_every": 0,
                             "sample_every": 0}}
        for preset in args.presets:
            cfg = load_config(preset, over)
            if cfg["kind"] == "latent":
                vae_name = Path(cfg["vae"]).name if (Path(__file__).parent.parent / "engine" / "presets" / f"{Path(cfg['vae']).name}.toml").is_file() else "tiny-vae"
                if vae_name not in vae_runs:
                    from engine.vae import train_vae

                    vae_runs[vae_name] = train_vae(load_config(vae_name, {"training": {"steps": 2, "sample_every": 0, "checkpoint_every": 0}}),
                                               tmp / f"vae-{vae_name}", device=args.device, progress=False)
                cfg["vae"] = str(vae_runs[vae_name])
            results.append(bench(preset, cfg, args.warmup, args.device, tmp))
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else ""
    print(f"machine: {machine(f'{torch.get_num_threads()} torch threads', gpu)}\ncommit: {commit()}\ndevice: {args.device}, steps timed: {args.steps} after {args.warmup} warm-up\n")
    print(f"| {'preset':<14} | {'kind':<6} | {'size':>4} | {'batch':>5} | {'images/s':>9} |")
    print(f"|{'-' * 16}|{'-' * 8}|{'-' * 6}|{'-' * 7}|{'-' * 11}|")
    for r in results:
        print(f"| {r['preset']:<14} | {r['kind']:<6} | {r['size']:>4} | {r['batch']:>5} | {r['images_per_s']:>9.1f} |")


if __name__ == "__main__":
    main()
