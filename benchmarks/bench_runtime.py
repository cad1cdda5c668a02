"""U-Net step latency: PyTorch eager vs ONNX Runtime, end-to-end time per image, preview cost.

    python benchmarks/bench_runtime.py --source tiny-latent          # a preset -> random weights
    python benchmarks/bench_runtime.py --source runs/shapes-ldm      # a run or diffusers folder

For one model, in one process: the model is exported to a temporary bundle (fp32, checked), then
- per-step U-Net latency in PyTorch eager (torch.no_grad) and in ONNX Runtime (the bundle's
  session) on the same inputs at batch 1, 2 and 4: median of --repeats calls after 2 warm-up calls,
  and the ratio torch / onnx (> 1: ONNX Runtime is faster);
- end-to-end seconds per image through desktop.runtime.pipeline.generate (--steps, batch 1,
  including text encoding, guidance's doubled batch and the VAE decode);
- the live preview's cost as a share of one U-Net step at batch 1 (latent models: the linear
  map on the predicted x0 plus upsampling; pixel models need none).
Threads: torch and ONNX Runtime both use --threads (default: all cores).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import commit, machine  # noqa: E402


def model_from_preset(name: str):
    """A LoadedModel with random weights in the architecture of an engine preset."""
    from engine.config import load_config
    from engine.loaded import LoadedModel
    from engine.models import build_unet, build_vae

    cfg = load_config(name)
    cc, size = cfg["conditioning"], int(cfg["dataset"]["size"])
    torch.manual_seed(0)
    text = None
    if cc["text"]:
        from engine.text import load_text_encoder

        text = load_text_encoder(cc["text"]).eval()
    class_names = [f"class {i}" for i in range(4)] if cc["class"] else None
    labels = [{"name": f"label {i}", "color": [40 * i, 100, 200 - 40 * i]} for i in range(4)] \
        if cc["mask"] == "semantic" else None
    channels = 1 if cfg["dataset"].get("grayscale") else 3
    vae, diff_channels, diff_size = None, channels, size
    if cfg["kind"] == "latent":
        vae_cfg = load_config(Path(cfg["vae"]).name)  # latent configs always name their VAE
        vae = build_vae(vae_cfg, channels, size).eval()
        diff_channels = int(vae.config.latent_channels)
        diff_size = size // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = build_unet(cfg, sample_size=diff_size, channels=diff_channels, num_classes=len(class_names or []),
                      num_labels=len(labels or []), text_dim=int(text.dim) if text is not None else 0).eval()
    mask = {"kind": "semantic", "labels": labels} if labels else ({"kind": cc["mask"]} if cc["mask"] else None)
    s = cfg["schedule"]
    return LoadedModel(
        kind=cfg["kind"], unet=unet, vae=vae, scale_factor=1.0, text_encoder=text, class_names=class_names,
        mask=mask, image_size=size, image_channels=channels, prediction_type=cfg["training"]["prediction_type"],
        schedule={"name": s["name"], "num_train_timesteps": s["T"], "beta_start": s["beta_start"],
                  "beta_end": s["beta_end"], "cosine_s": s["cosine_s"]},
        name=f"random-{name}", provenance={"data": "random weights (benchmark)"},
    )


def load_source(source: str):
    if Path(source).exists():
        from engine.loaded import load_model

        return load_model(source)
    return model_from_preset(source)


def median_seconds(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="tiny-latent", help="run / diffusers folder, or an engine preset name")
    p.add_argument("--batches", default="1,2,4")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--steps", type=int, default=20, help="sampler steps for the end-to-end figure")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate
    from export.bundle_writer import export_bundle, model_graphs

    model = load_source(args.source)
    graph = model_graphs(model)[0]
    with tempfile.TemporaryDirectory() as tmp:
        out = export_bundle(model, Path(tmp) / "bundle", log=lambda s: None, preview_samples=16)
        bundle = open_bundle(out, provider="cpu")
        bundle_session = bundle.unet.session
        rows = []
        rng = np.random.default_rng(0)
        for b in [int(x) for x in args.batches.split(",")]:
            feeds = graph.make_inputs(b, rng)
            args_t = tuple(torch.from_numpy(feeds[n]) for n in graph.input_names)

            def run_torch():
                with torch.no_grad():
                    graph.module(*args_t)

            def run_onnx():
                bundle_session.run(None, feeds)

            t_torch = median_seconds(run_torch, args.repeats)
            t_onnx = median_seconds(run_onnx, args.repeats)
            rows.append((b, t_torch * 1e3, t_onnx * 1e3, t_torch / t_onnx))

        req = GenerationRequest(prompt="a red circle on blue", steps=args.steps, seed=0, batch_size=1,
                                sampler="dpmpp_2m")
        generate(bundle, GenerationRequest(prompt="warm up", steps=2, seed=1))
        t0 = time.perf_counter()
        generate(bundle, req)
        e2e = time.perf_counter() - t0

        preview_share = None
        if bundle.preview is not None:
            from desktop.runtime.preview import latent_preview

            m = bundle.manifest
            x0 = rng.standard_normal((1, m.latent.channels, m.latent.height, m.latent.width)).astype(np.float32)
            factor = m.image.height // m.latent.height
            t_prev = median_seconds(lambda: latent_preview(x0, bundle.preview, factor), max(args.repeats, 20))
            preview_share = t_prev / (rows[0][2] / 1e3)

    print(f"# U-Net step latency, PyTorch eager vs ONNX Runtime ({args.source})")
    print(f"machine: {machine()}; threads {args.threads}")
    print(f"commit: {commit()}; torch {torch.__version__}; onnxruntime {__import__('onnxruntime').__version__}")
    print(f"model: {model.kind}, image {model.image_size}, unet inputs {graph.input_names}, "
          f"{sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters")
    print()
    print("| batch | torch eager ms/step | onnxruntime ms/step | torch / onnx |")
    print("|------:|--------------------:|--------------------:|-------------:|")
    for b, tt, to, r in rows:
        print(f"| {b} | {tt:.2f} | {to:.2f} | {r:.2f} |")
    print()
    print(f"end to end (desktop.runtime.pipeline.generate, dpmpp_2m {args.steps} steps, 1 image): {e2e:.3f} s/image")
    if preview_share is not None:
        print(f"live preview (linear map + upsample): {preview_share * 100:.2f}% of a batch-1 U-Net step")
    else:
        print("live preview: pixel model, the predicted x0 is the preview (no cost)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
