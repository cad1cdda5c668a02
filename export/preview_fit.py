"""The live-preview decoder of a latent model: a linear map from a scaled latent pixel to RGB.

    rgb[:, y, x] ≈ weight.T @ z[:, y, x] + bias          (weight: C x 3, bias: 3)

fitted by least squares on pairs (z, downsampled D(z / scale_factor)) at latent resolution, where
D is the model's own VAE decoder. The latents z come from, in order of preference:
1. real images: when the model's provenance names a data folder that exists, up to `samples` of
   its images are encoded (z = E(x).mean * scale_factor) -- the latents the sampler will produce;
2. otherwise random scaled latents z ~ N(0, I), which is what a well-chosen scale factor makes
   the real latents look like to first and second order.
The target is the decode averaged over each latent pixel's f x f patch (f = the VAE's factor).
Stored as `preview/linear.json` = {"weight": [[C x 3]], "bias": [3]}.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from desktop.runtime.fileio import write_json
from desktop.runtime.preview import latent_preview
from export.onnx_graphs import size_hw, encode_mean, vae_factor

def fit_linear(latents: np.ndarray, rgb: np.ndarray) -> dict:
    """Least squares of rgb [N,3,h,w] on latents [N,C,h,w] (+ bias) -> {"weight": CxC3, "bias": 3}."""
    c = latents.shape[1]
    x = latents.transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float64)
    y = rgb.transpose(0, 2, 3, 1).reshape(-1, rgb.shape[1]).astype(np.float64)
    design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return {"weight": coef[:c].tolist(), "bias": coef[c].tolist()}


def apply_linear(preview: dict, latents: np.ndarray) -> np.ndarray:
    """rgb [N,3,h,w] = weight.T z + bias, clipped to [-1, 1] (what the runtime does)."""
    w = np.asarray(preview["weight"], dtype=np.float32)
    b = np.asarray(preview["bias"], dtype=np.float32)
    return np.clip(latent_preview(latents.astype(np.float32), (w, b), 1), -1.0, 1.0)


def pool(images: np.ndarray, h: int, w: int) -> np.ndarray:
    n, c, H, W = images.shape
    return images.reshape(n, c, h, H // h, w, W // w).mean(axis=(3, 5))


def _data_images(folder: Path, size: tuple[int, int], channels: int, limit: int) -> np.ndarray | None:
    """Up to `limit` images of an image folder, as training reads them (engine.data.folder's naming
    rule; unreadable files skipped as training skips them), in [-1, 1]."""
    from PIL import Image

    from engine.data.folder import find_images, open_image

    mode = "L" if channels == 1 else "RGB"
    arrays = []
    for p in find_images(folder):
        try:
            im = open_image(p).convert(mode).resize((size[1], size[0]), Image.BICUBIC)
        except Exception:  # noqa: BLE001 - PIL raises many kinds for bad files; training skipped it too
            continue
        a = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        if len(arrays) == limit:
            break
    return np.stack(arrays) if arrays else None


def _generated_images(name: str, size: int, channels: int, limit: int, seed: int = 7919) -> np.ndarray | None:
    """Up to `limit` images of one of our procedural data sets (provenance data "shapes", or a
    longer description starting with the set's name: "shapes (20,000 generated ...)")."""
    from engine.data.generated import GENERATORS, GeneratedDataset

    name = name.split(" ")[0] if name.split(" ")[0] in GENERATORS else name
    if name not in GENERATORS:
        return None
    ds = GeneratedDataset(name, count=limit, seed=seed, size=size)
    images = np.stack([ds[i]["image"].numpy() for i in range(len(ds))])
    return images if images.shape[1] == channels else None


def source_images(data_dir, size: tuple[int, int], channels: int, limit: int, seed: int = 7919) -> np.ndarray | None:
    """Up to `limit` images [N, C, H, W] in [-1, 1] of the model's data: a folder (also as
    provenance's "folder:<path>") or one of our procedural sets; None when there is none."""
    if isinstance(data_dir, str) and data_dir.startswith("folder:") and Path(data_dir[len("folder:"):]).is_dir():
        data_dir = data_dir[len("folder:"):]
    if data_dir is None:
        return None
    if Path(data_dir).is_dir():
        return _data_images(Path(data_dir), size, channels, limit)
    return _generated_images(str(data_dir), size[0], channels, limit, seed)


def training_pairs(vae, scale_factor: float, image_size, *, samples: int = 32, data_dir=None,
                   seed: int = 0, batch: int = 8) -> tuple[np.ndarray, np.ndarray, str]:
    """(scaled latents [N,C,h,w], pooled decodes [N,3,h,w], where the latents came from)."""
    H, W = size_hw(image_size)
    f = vae_factor(vae)
    c = int(vae.config.latent_channels)
    h, w = H // f, W // f
    images = source_images(data_dir, (H, W), int(vae.config.in_channels), samples)
    latents, decodes = [], []
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if images is not None:
            source = f"{len(images)} images of {data_dir}"
            for i in range(0, len(images), batch):
                x = torch.from_numpy(images[i:i + batch])
                latents.append(encode_mean(vae, x) * scale_factor)
        else:
            source = f"{samples} random N(0, I) scaled latents"
            for i in range(0, samples, batch):
                n = min(batch, samples - i)
                latents.append(torch.randn(n, c, h, w, generator=gen))
        for z in latents:
            decodes.append(vae.decode(z / scale_factor, return_dict=False)[0].clamp(-1, 1))
    z = torch.cat(latents).float().numpy()
    rgb = pool(torch.cat(decodes).float().numpy(), h, w)
    if rgb.shape[1] == 1:  # grey VAEs: the preview is still RGB
        rgb = np.repeat(rgb, 3, axis=1)
    return z, rgb, source


def fit_preview(vae, scale_factor: float, image_size, *, samples: int = 32, data_dir=None,
                seed: int = 0) -> tuple[dict, dict]:
    """Fits the linear preview; returns (preview dict for linear.json, fit report)."""
    z, rgb, source = training_pairs(vae, scale_factor, image_size, samples=samples, data_dir=data_dir, seed=seed)
    preview = fit_linear(z, rgb)
    residual = float(np.mean((apply_linear(preview, z) - rgb) ** 2))
    baseline = float(np.mean((rgb - rgb.mean(axis=(0, 2, 3), keepdims=True)) ** 2))
    return preview, {"latents": source, "mse": residual, "mean_colour_mse": baseline}


def write_preview(preview: dict, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, preview, indent=1)
    return path
