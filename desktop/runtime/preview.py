"""Cheap live previews: float images -> uint8 RGB, and the latent -> RGB preview of latent bundles.

A latent bundle's `preview` role is one of two things (docs/ARCHITECTURE.md):
- `preview/linear.json` = `{"weight": [[C x 3]], "bias": [3]}`: rgb = z W + b for each scaled latent
  pixel z, giving RGB in about [-1, 1] at latent resolution;
- `preview/decoder.onnx`, a tiny learned decoder (`PreviewNetwork`; trained by the engine on the
  model's own VAE, `engine.preview_decoder`): `latent_sample` [B, C, h, w] (scaled latents) ->
  `sample` [B, 3, H', W'] in [-1, 1], run on the CPU. Its weights must be inside the graph (a few
  hundred kilobytes; at most `PREVIEW_NETWORK_MAX_BYTES`).
Either preview is brought to the image size by bilinear interpolation (`upsample_bilinear`: pixel
centres at half-integers, edges clamped, as PIL's and PyTorch's bilinear resize with
align_corners=False), so a 16×16 latent looks like a soft picture rather than 16×16 colour blocks.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .manifest import BundleError


def to_uint8(x: np.ndarray) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> [B, H, W, 3] uint8: round((clip(x) + 1) * 127.5); one channel -> grey RGB."""
    u = np.round((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    u = np.transpose(u, (0, 2, 3, 1))
    return np.repeat(u, 3, axis=3) if u.shape[3] == 1 else u[..., :3]


PREVIEW_NETWORK_MAX_BYTES = 16 * 1024 * 1024


class PreviewNetwork:
    """A learned preview decoder: `preview(x0 [B, C, h, w]) -> rgb [B, 3, H', W']` (ONNX Runtime, CPU)."""

    def __init__(self, session, rel: str):
        self.session, self.file = session, rel

    def __call__(self, x0: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"latent_sample": np.ascontiguousarray(x0, dtype=np.float32)})[0]


def read_preview(path: Path, rel: str, channels: int):
    """The bundle's preview: (weight, bias) for a linear map (.json), a PreviewNetwork for .onnx."""
    return read_preview_network(path, rel, channels) if rel.lower().endswith(".onnx") else \
        read_preview_map(path, rel, channels)


def read_preview_network(path: Path, rel: str, channels: int) -> PreviewNetwork:
    """A CPU session of the preview network; BundleError naming the file when it is not one."""
    from . import providers
    from .manifest import onnx_external_data

    file = Path(path) / rel
    if file.stat().st_size > PREVIEW_NETWORK_MAX_BYTES:
        raise BundleError(f"{rel}: a preview network of {file.stat().st_size} bytes is too large (at most "
                          f"{PREVIEW_NETWORK_MAX_BYTES})", rel, "files.preview")
    if onnx_external_data(Path(path), rel, "files.preview"):
        raise BundleError(f"{rel}: a preview network keeps its weights inside the graph (no external data)",
                          rel, "files.preview")
    try:
        session, _ = providers.create_session(file, "cpu")
    except Exception as exc:  # onnxruntime raises several unrelated classes for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BundleError(f"{rel}: not a valid ONNX model ({first[:300]})", rel, "files.preview") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    dims = inputs[0].shape if len(inputs) == 1 else []
    if len(inputs) != 1 or inputs[0].name != "latent_sample" or len(dims) != 4 or \
            (isinstance(dims[1], int) and dims[1] != channels) or len(outputs) != 1:
        raise BundleError(f"{rel}: a preview network takes one input 'latent_sample' [B, {channels}, h, w] and gives "
                          f"one output; it takes {[(i.name, i.shape) for i in inputs]}", rel, "files.preview")
    return PreviewNetwork(session, rel)


def read_preview_map(path: Path, rel: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """(weight [C, 3], bias [3]) float32 from a bundle's preview JSON; BundleError naming the file."""
    try:
        data = json.loads((Path(path) / rel).read_text(encoding="utf-8"))
        weight = np.asarray(data["weight"], dtype=np.float32)
        bias = np.asarray(data.get("bias", [0.0, 0.0, 0.0]), dtype=np.float32)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise BundleError(f"{rel}: not a preview map ({{'weight': [[C x 3]], 'bias': [3]}}): {exc}",
                          rel, "files.preview") from None
    if weight.shape != (channels, 3) or bias.shape != (3,):
        raise BundleError(f"{rel}: preview weight must be {channels}x3 and bias 3, got {weight.shape} and "
                          f"{bias.shape}", rel, "files.preview")
    return weight, bias


def interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] weights of 1-D linear interpolation from n_in to n_out samples (half-pixel centres,
    clamped at the edges)."""
    src = np.clip((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0.0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in), np.float64)
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def upsample_bilinear(x: np.ndarray, factor: int) -> np.ndarray:
    """[B, C, h, w] -> [B, C, h*factor, w*factor], bilinear (separable: two small matrix products)."""
    if factor <= 1:
        return x
    h, w = x.shape[2:]
    rows = interpolation_matrix(h, h * factor).astype(np.float32)
    cols = interpolation_matrix(w, w * factor).astype(np.float32)
    return np.einsum("Hh,bchw,Ww->bcHW", rows, x.astype(np.float32), cols, optimize=True)


def latent_preview(x0: np.ndarray, preview, factor: int) -> np.ndarray:
    """Scaled latent [B, C, h, w] -> RGB [B, 3, h*factor, w*factor] in about [-1, 1], smoothly upsampled.

    `preview`: the bundle's (weight, bias) map, a PreviewNetwork, or None (a bundle that ships
    none: the grey tanh of the channel mean)."""
    if isinstance(preview, PreviewNetwork):
        rgb = preview(x0)
        up = x0.shape[2] * factor // max(rgb.shape[2], 1)
        return upsample_bilinear(rgb, up) if up > 1 else rgb
    if preview is None:
        rgb = np.repeat(np.tanh(x0.mean(axis=1, keepdims=True)), 3, axis=1)
    else:
        weight, bias = preview
        rgb = np.einsum("bchw,ck->bkhw", x0, weight) + bias[None, :, None, None]
    return upsample_bilinear(rgb, factor)
