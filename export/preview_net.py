"""The learned live-preview decoder (`engine.preview_decoder`) as a bundle's `preview` role.

`preview/decoder.onnx`: input `latent_sample` [B, C, h, w] (scaled latents, as the sampler holds
them), output `sample` [B, 3, h*f, w*f] in [-1, 1]; batch, height and width dynamic; weights inside
the graph (the runtime refuses a preview network with external data). It replaces the linear map
(`preview/linear.json`) in a bundle's files.

`fit_preview_decoder` trains one on the model's own VAE (its data set's images, or random latents
when there are none) and measures it on latents of other images against the real decode, beside
the linear map: PSNR in dB (peak-to-peak 2). `write_preview_decoder` exports and checks it against
PyTorch (ONNX Runtime, batch 1 and 3). `add_preview_decoder(bundle)` does both for a finished latent
bundle, rebuilding its VAE from its graphs (`engine.bundle_weights`): the shipped models got theirs
this way (`scripts/add_preview_decoder.py`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from export import onnx_graphs, parity, preview_fit

PREVIEW_DECODER_FILE = "preview/decoder.onnx"
TRAIN_IMAGES, CHECK_IMAGES = 1024, 64
TRAIN_SEED, CHECK_SEED = 7919, 104_729


def preview_graph(net, latent_channels: int, latent_size: int) -> onnx_graphs.Graph:
    def make_inputs(batch, rng):
        return {"latent_sample": rng.standard_normal((batch, latent_channels, latent_size, latent_size)).astype(np.float32)}

    axes = {0: "batch", 2: "height", 3: "width"}
    return onnx_graphs.Graph("preview", net.eval(), ["latent_sample"], ["sample"],
                             {"latent_sample": axes, "sample": axes}, make_inputs)


def _images(data, image_size: int, channels: int, count: int, seed: int) -> tuple[np.ndarray | None, str]:
    images = preview_fit.source_images(data, (image_size, image_size), channels, count, seed)
    return images, (f"{len(images)} images of {data}" if images is not None else "random N(0, I) scaled latents")


def _pairs(vae, scale_factor: float, images, *, count: int, latent_shape, seed: int, noisy: bool):
    from engine.preview_decoder import training_pairs

    with torch.no_grad():
        if images is not None:
            return training_pairs(vae, scale_factor, images, noisy=noisy, seed=seed)
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(count, *latent_shape, generator=g)
        rgb = torch.cat([vae.decode(z[i:i + 32] / scale_factor).sample.clamp(-1, 1) for i in range(0, count, 32)])
        return z, rgb


def fit_preview_decoder(vae, scale_factor: float, image_size: int, *, data=None, steps: int = 1500,
                        width: int = 48, log=print):
    """(decoder, report): trained on TRAIN_IMAGES images of `data`, measured on CHECK_IMAGES others."""
    from engine.preview_decoder import psnr, train_preview_decoder

    from .onnx_graphs import vae_factor

    f, c = vae_factor(vae), int(vae.config.latent_channels)
    channels, h = int(vae.config.in_channels), image_size // vae_factor(vae)
    images, source = _images(data, image_size, channels, TRAIN_IMAGES, TRAIN_SEED)
    z, rgb = _pairs(vae, scale_factor, images, count=TRAIN_IMAGES, latent_shape=(c, h, h), seed=TRAIN_SEED, noisy=True)
    rgb = rgb.repeat(1, 3, 1, 1) if rgb.shape[1] == 1 else rgb
    log(f"preview        training a decoder on {len(z)} latents ({source}, half of them with noise)")
    net, report = train_preview_decoder(z, rgb, factor=f, steps=steps, width=width, log=log)
    check_images, _ = _images(data, image_size, channels, CHECK_IMAGES, CHECK_SEED)
    zc, rgbc = _pairs(vae, scale_factor, check_images, count=CHECK_IMAGES, latent_shape=(c, h, h), seed=CHECK_SEED,
                      noisy=False)
    rgbc = rgbc.repeat(1, 3, 1, 1) if rgbc.shape[1] == 1 else rgbc
    linear = preview_fit.fit_linear(z.numpy(), preview_fit.pool(rgb.numpy(), h, h))
    from desktop.runtime.preview import latent_preview

    with torch.no_grad():
        net_psnr = psnr(net(zc), rgbc)
    lin = np.clip(latent_preview(zc.numpy(), (np.asarray(linear["weight"], np.float32),
                                              np.asarray(linear["bias"], np.float32)), f), -1, 1)
    report.update({"latents": source, "psnr_vs_vae_decode": round(net_psnr, 2),
                   "linear_psnr_vs_vae_decode": round(psnr(torch.from_numpy(lin), rgbc), 2),
                   "check": f"{len(zc)} latents of other images (seed {CHECK_SEED})",
                   "parameters": sum(p.numel() for p in net.parameters()), "width": width})
    log(f"preview        decoder PSNR {net_psnr:.2f} dB vs the VAE decode (linear map "
        f"{report['linear_psnr_vs_vae_decode']:.2f} dB), {report['parameters']} parameters")
    return net, report


def write_preview_decoder(net, bundle_dir: Path, latent_channels: int, latent_size: int) -> dict:
    """Export `net` (fp32: it is tiny) to bundle_dir/PREVIEW_DECODER_FILE and check it against
    PyTorch; returns the parity result as a dict. A failed check removes the file."""
    graph = preview_graph(net, latent_channels, latent_size)
    path = Path(bundle_dir) / PREVIEW_DECODER_FILE
    onnx_graphs.export_graph(graph, path)
    try:
        return parity.require(parity.check_graph(graph, path), path).to_dict()
    except parity.ParityError:
        path.unlink(missing_ok=True)
        raise


def add_preview_decoder(bundle, *, data=None, steps: int = 1500, width: int = 48, log=print) -> dict:
    """Train, export and install a preview decoder in a finished latent bundle (in place: the new
    files are written, then the manifest is rewritten with their hashes; the linear map is removed)."""
    from engine.bundle_weights import vae_from_bundle

    bundle = Path(bundle)
    data_json = _latent_manifest(bundle)
    latent = data_json["latent"]
    vae, scale_factor = vae_from_bundle(bundle)
    data = data if data is not None else (data_json.get("provenance") or {}).get("data")
    net, report = fit_preview_decoder(vae, scale_factor, int(data_json["image"]["height"]), data=data, steps=steps,
                                      width=width, log=log)
    report["parity"] = write_preview_decoder(net, bundle, int(latent["channels"]), int(latent["height"]))
    _register(bundle, data_json, report)
    log(f"preview        {bundle / PREVIEW_DECODER_FILE} installed; {bundle} opens")
    return report


def _latent_manifest(bundle: Path) -> dict:
    """The manifest of `bundle` as JSON; ValueError unless it is a latent model's."""
    from desktop.runtime.manifest import MANIFEST_NAME

    data_json = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    if not data_json.get("latent"):
        raise ValueError(f"{bundle}: not a latent model; a pixel model's preview is its own x̂_0")
    return data_json


def _register(bundle: Path, data_json: dict, report: dict) -> None:
    """Point the manifest `data_json` at the PREVIEW_DECODER_FILE now in `bundle` (its report under
    provenance.export.preview), remove a linear map it replaces, rewrite the manifest's hashes and
    check that the bundle opens."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.manifest import manifest_from_dict, write_manifest

    old = data_json["files"].get("preview")
    if old and old != PREVIEW_DECODER_FILE and (bundle / old).is_file():
        (bundle / old).unlink()
    data_json["files"]["preview"] = PREVIEW_DECODER_FILE
    data_json.setdefault("provenance", {}).setdefault("export", {})["preview"] = report
    data_json["sha256"] = {}
    write_manifest(bundle, manifest_from_dict(data_json), model_index=False)  # export.ecosystem's stays
    open_bundle(bundle)


def same_vae_decoder(a, b, *, samples: int = 4, tolerance: float = 1e-4) -> float:
    """max |Δ| between opened bundles a and b's VAE decoders on the same random latents; ValueError
    (naming both) when they are not the same decoder within `tolerance`."""
    m = a.manifest.latent
    if m != b.manifest.latent:
        raise ValueError(f"{a.path} and {b.path} have different latents (shape or scale factor)")
    z = np.random.default_rng(0).standard_normal((samples, m.channels, m.height, m.width)).astype(np.float32)
    da, db = (x.vae_decoder.run({"latent_sample": z}) for x in (a, b))
    delta = float(np.max(np.abs(da - db))) if da.shape == db.shape else float("inf")
    if not delta <= tolerance:
        raise ValueError(f"the VAE decoders of {a.path} and {b.path} differ (max |Δ| {delta:.3g}): "
                         "train a decoder for this bundle instead")
    return delta


def copy_preview_decoder(bundle, source, *, log=print) -> dict:
    """Install `source`'s preview decoder in `bundle` (in place) when both have the same VAE decoder,
    as a U-Net fine-tuned on the source's VAE has: the decoder only reads x̂_0 latents, so it stays
    right and no new binary is made. The source's report is kept, with where it came from."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.fileio import write_bytes

    bundle, source = Path(bundle), Path(source)
    opened = open_bundle(bundle, provider="cpu"), open_bundle(source, provider="cpu")  # manifests checked
    data_json, src = _latent_manifest(bundle), _latent_manifest(source)
    if src["files"].get("preview") != PREVIEW_DECODER_FILE:
        raise ValueError(f"{source} has no preview decoder ({PREVIEW_DECODER_FILE})")
    delta = same_vae_decoder(*opened)
    write_bytes(bundle / PREVIEW_DECODER_FILE, (source / PREVIEW_DECODER_FILE).read_bytes())
    report = ((src.get("provenance") or {}).get("export") or {}).get("preview") or {}
    _register(bundle, data_json, dict(report, copied_from=(
        f"{src.get('name', source.name)} (the same VAE decoder: max |Δ| {delta:.2g})")))
    log(f"preview        {bundle / PREVIEW_DECODER_FILE} copied from {source}; {bundle} opens")
    return data_json["provenance"]["export"]["preview"]

