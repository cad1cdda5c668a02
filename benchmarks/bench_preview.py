"""Live preview of latent models: the learned preview decoder vs the linear map, cost and quality.

    .venv/bin/python benchmarks/bench_preview.py [BUNDLE ...]     (default: the shipped latent models)

For each latent bundle, in one process, through the desktop runtime's ONNX sessions (CPU):
- quality: latents of `--images` images of the bundle's data set that no preview was fitted on
  (seed `CHECK_SEED`), z = E(x) * scale_factor by the bundle's vae_encoder; the reference is the
  bundle's own vae_decoder(z / scale_factor), the final image. PSNR (dB, peak-to-peak 2) of the
  bundle's preview (network or linear map, bilinearly upsampled to the image size) and of a
  linear map fitted here on other images (seed `FIT_SEED`), the baseline a network must beat;
- cost: median ms per call at batch 1 of the preview, the linear map and one U-Net call at the
  batch classifier-free guidance uses (2), alternated in one loop so the shared CPU's load hits all
  alike; the preview's share of a step;
- per image: the model's default request generated with the bundle's preview rendered every step,
  paced as the app's live view renders it, and without (as `generate` does), alternated: what the
  previews cost.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.evals.common import MODELS, format_table  # noqa: E402
from benchmarks.report import commit, machine  # noqa: E402

CHECK_SEED, FIT_SEED = 104_729, 7919


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(4.0 / max(float(np.mean((a - b) ** 2)), 1e-12)))


def _images(bundle, count: int, seed: int) -> np.ndarray:
    from export.preview_fit import source_images

    m = bundle.manifest
    data = (m.provenance or {}).get("data") or m.name
    images = source_images(data, (m.image.height, m.image.width), m.image.channels, count, seed)
    if images is None:
        raise ValueError(f"{bundle.path}: no data set to draw images from (provenance data {data!r})")
    return images.astype(np.float32)


def _latents_and_decodes(bundle, images: np.ndarray):
    m = bundle.manifest
    s = float(m.latent.scale_factor)
    z = np.concatenate([bundle.encode_latent(images[i:i + 8]) for i in range(0, len(images), 8)]) * s
    rgb = np.concatenate([bundle.vae_decoder.session.run(None, {"latent_sample": z[i:i + 8] / s})[0]
                          for i in range(0, len(z), 8)])
    return z.astype(np.float32), np.clip(rgb, -1, 1)


def _median_alternating(fns: dict, repeats: int) -> dict:
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def measure(bundle, images: int, repeats: int) -> list[list]:
    from desktop.runtime.preview import PreviewNetwork, latent_preview
    from export.preview_fit import fit_linear, pool

    m = bundle.manifest
    factor = m.image.height // m.latent.height
    z, ref = _latents_and_decodes(bundle, _images(bundle, images, CHECK_SEED))
    zf, rf = _latents_and_decodes(bundle, _images(bundle, 64, FIT_SEED))
    lin = fit_linear(zf, pool(rf, m.latent.height, m.latent.width))
    linear = (np.asarray(lin["weight"], np.float32), np.asarray(lin["bias"], np.float32))
    kind = "network" if isinstance(bundle.preview, PreviewNetwork) else "linear map"
    rows = {f"bundle preview ({kind})": bundle.preview, "linear map (fitted here)": linear}
    one = z[:1]
    unet = bundle.unet.session
    feeds = {i.name: _unet_input(i, m, 2) for i in unet.get_inputs()}
    costs = _median_alternating({"unet": lambda: unet.run(None, feeds),
                                 **{k: (lambda p=p: latent_preview(one, p, factor)) for k, p in rows.items()}}, repeats)
    out = []
    for name, preview in rows.items():
        rgb = np.clip(latent_preview(z, preview, factor), -1, 1)
        out.append([m.name, name, _psnr(rgb, ref), costs[name], costs[name] / costs["unet"] * 100, costs["unet"]])
    return out


def app_overhead(bundle, rounds: int) -> list:
    """Seconds per image of the model's default request with the preview rendered every step (the app
    before live pacing), paced as the app's worker paces it (`LivePacing`: at most one every
    LIVE_INTERVAL, and the last) and without previews (`generate`), alternated; the previews' share."""
    import json

    from benchmarks.bench_runtime import request_fields
    from desktop.runtime.pipeline import GenerationRequest, generate
    from desktop.ui.worker import LIVE_INTERVAL, LivePacing, frame_from_step

    fields = request_fields(json.loads((bundle.path / "studio.json").read_text()))
    if "labels" in fields:
        fields["labels"] = np.asarray(fields["labels"], np.int64)
    request = GenerationRequest(seed=1, batch_size=1, **fields)

    def app(pacing):   # the worker's frames: x̂_0 and x_t rendered for the steps the live view shows
        started = time.perf_counter()
        return generate(bundle, request, on_step=lambda info: frame_from_step(info, started, pacing))
    seconds = _median_alternating({"every": lambda: app(None), "paced": lambda: app(LivePacing(1, LIVE_INTERVAL)),
                                   "generate": lambda: generate(bundle, request)}, rounds)
    base = seconds["generate"]
    return [bundle.manifest.name, seconds["every"] / 1e3, seconds["paced"] / 1e3, base / 1e3,
            (seconds["every"] / base - 1) * 100, (seconds["paced"] / base - 1) * 100]


def _unet_input(info, m, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    dims = [batch if not isinstance(d, int) or k == 0 else d for k, d in enumerate(info.shape)]
    if info.name == "timestep":
        return np.full((batch,), 500, np.int64)
    if info.name == "class_labels":
        return np.zeros((batch,), np.int64)
    if info.name == "encoder_hidden_states":
        dims = [batch, m.conditioning.text.max_length, m.conditioning.text.hidden_size]
    if info.name == "sample":
        dims = [batch, m.unet.in_channels, m.latent.height, m.latent.width]
    return rng.standard_normal(dims).astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="*", type=Path, default=[MODELS / "landscapes", MODELS / "shapes"])
    p.add_argument("--images", type=int, default=64, help="check images per bundle (default %(default)s)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--rounds", type=int, default=6, help="images per variant for the per-image table")
    args = p.parse_args(argv)
    from desktop.runtime.bundle import open_bundle

    bundles = [open_bundle(path, provider="cpu") for path in args.bundles]
    rows = [row for b in bundles for row in measure(b, args.images, args.repeats)]
    per_image = [app_overhead(b, args.rounds) for b in bundles]
    print("# Live preview: PSNR vs the VAE decode, and cost per call")
    print(f"machine: {machine()} (shared; costs alternated in one loop)")
    print(f"commit:  {commit()}")
    print(f"{args.images} check images per bundle (seed {CHECK_SEED}); reference = the bundle's vae_decoder\n")
    print(format_table(["model", "preview", "PSNR dB", "ms/call", "% of a U-Net step", "U-Net ms (batch 2)"], rows))
    print(f"\nPer image (the model's default request, batch 1, median of {args.rounds} alternated): the bundle's "
          "preview rendered every step, paced as the app's live view (desktop/ui/worker.py LivePacing), none (`generate`)\n")
    print(format_table(["model", "s every step", "s paced (app)", "s none", "every step +%", "paced +%"], per_image))
    return 0


if __name__ == "__main__":
    sys.exit(main())
