"""Will a generation fit? An estimate of peak memory, what the machine has, and the largest size that fits.

    peak = weights + max(U-Net activations at batch x CFG, VAE decode of one image)

The bundle is open when a request is checked, so its weights are already in memory: a request
fits when MARGIN x the activations fit in what is still available.

- weights: the bytes of the bundle's ONNX files (and their external data), as the sessions hold them.
- U-Net activations, per image of the batch (doubled with classifier-free guidance), at each level
  l of the U-Net (N_l = h w / 4^l latent pixels, c_l channels): the attention scores and their softmax
  (heads x N_l² floats, twice), and about `LIVE_TENSORS` feature maps of c_l x N_l floats; the
  largest level counts, plus the skip connections of every level. ONNX Runtime's CPU provider
  materialises attention scores, so memory grows with the fourth power of the side.
- VAE decode, one image at a time: about `LIVE_TENSORS` maps of the decoder's widest full-resolution
  stage (c x H x W floats) and its mid-block attention over the latent (N_0² floats, twice).
- Architecture: from the U-Net's and VAE's config.json where the folder has them (SD folders);
  otherwise Stable Diffusion 1.x's shape scaled to nothing smaller than what the bundle needs: an
  over-estimate for our small models, which only matters at sizes far beyond theirs.

`available_bytes(provider)`: free GPU memory through NVML (ctypes, no torch) for the CUDA provider,
else available RAM (/proc/meminfo MemAvailable on Linux, GlobalMemoryStatusEx on Windows,
physical memory on macOS); None when unknown (then nothing is refused).
`check_fits(bundle, batch, height, width, *, guided, step)` raises MemoryEstimateError with one sentence
giving the largest size (same aspect, multiples of the size step) that fits.
The figures are first-order counts, not fitted to measured peaks (SD 1.5 at 512x512 with guidance:
2.3 GB of U-Net activations, 0.9 GB to decode). Against the peak RSS ONNX Runtime's CPU provider
reaches (benchmarks/bench_memory.py: the tiny SD fixture at 128-256 px, an SD-1.x-shaped U-Net and
SD 1.5's VAE decoder at 256-512 px) the estimate is 0.83-1.10 of what was measured, so `MARGIN`
(1.25) covers it, with ONNX Runtime's arenas and the Python side.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

FLOAT = 4  # bytes: activations are float32 on the CPU provider (fp16 graphs still upcast many)
LIVE_TENSORS = 6
MARGIN = 1.25
GIB = 1024 ** 3
SD1_UNET = {"block_out_channels": [320, 640, 1280, 1280], "attention_head_dim": 8,
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"]}
SD1_VAE = {"block_out_channels": [128, 256, 512, 512]}


class MemoryEstimateError(ValueError):
    """A request that cannot fit in the memory this machine has; the message gives the largest that fits."""


@dataclass(frozen=True)
class Estimate:
    weights: int
    unet: int
    vae: int

    @property
    def peak(self) -> int:
        """Everything at once: the weights and the larger of the two activation peaks."""
        return self.weights + max(self.unet, self.vae)

    @property
    def needed(self) -> int:
        """What must still be free once the model is loaded (activations, with the margin)."""
        return int(MARGIN * max(self.unet, self.vae))

    def describe(self) -> str:
        return (f"about {gib(self.needed)} beyond the loaded weights (U-Net activations {gib(self.unet)}, "
                f"VAE decode {gib(self.vae)})")


def gib(n: float) -> str:
    return f"{n / GIB:.1f} GB" if n >= 0.1 * GIB else f"{n / 1024 ** 2:.0f} MB"


def _config(bundle, role: str) -> dict:
    path = Path(bundle.path) / role / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() and path.stat().st_size < 10**6 else {}
    except (OSError, ValueError, RecursionError):
        data = {}
    return data if isinstance(data, dict) else {}


def _ints(value, fallback: list) -> list:
    ok = isinstance(value, list) and value and all(isinstance(v, int) and 0 < v < 100_000 for v in value)
    return list(value) if ok else fallback


def weight_bytes(bundle) -> int:
    """Bytes of every ONNX file the bundle's sessions were made from, with external data beside them."""
    total = 0
    for role in ("unet", "vae_decoder", "vae_encoder", "text_encoder"):
        rel = bundle.manifest.files.get(role)
        if rel:
            folder = (Path(bundle.path) / rel).parent
            total += sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix != ".json")
    return total


def unet_activation_bytes(cfg: dict, images: int, h: int, w: int) -> int:
    """Peak U-Net activations for `images` latents of h x w (see the module docstring)."""
    channels = _ints(cfg.get("block_out_channels"), SD1_UNET["block_out_channels"])
    downs = cfg.get("down_block_types") if isinstance(cfg.get("down_block_types"), list) else \
        SD1_UNET["down_block_types"][:len(channels)]
    heads = cfg.get("attention_head_dim", 8)
    heads = _ints(heads, [8] * len(channels)) if isinstance(heads, list) else [heads if isinstance(heads, int) and heads > 0 else 8] * len(channels)
    peak = skips = 0
    for level, c in enumerate(channels):
        n = max(1, (h >> level) * (w >> level))
        attn = 2 * heads[min(level, len(heads) - 1)] * n * n if "Attn" in str(downs[min(level, len(downs) - 1)]) else 0
        peak = max(peak, attn + LIVE_TENSORS * c * n)
        skips += 3 * c * n
    return FLOAT * images * (peak + skips)


def vae_decode_bytes(cfg: dict, height: int, width: int, factor: int) -> int:
    """Peak VAE-decoder activations for one height x width image."""
    channels = _ints(cfg.get("block_out_channels"), SD1_VAE["block_out_channels"])
    n0 = max(1, (height // factor) * (width // factor))
    return FLOAT * (LIVE_TENSORS * channels[0] * height * width + 2 * n0 * n0)


def estimate(bundle, batch: int, height: int, width: int, *, guided: bool) -> Estimate:
    """Peak memory of one generation (see the module docstring)."""
    m = bundle.manifest
    factor = m.vae_factor
    h, w = height // factor, width // factor
    images = batch * (2 if guided else 1)
    vae = vae_decode_bytes(_config(bundle, "vae_decoder"), height, width, factor) if m.latent else 0
    return Estimate(weight_bytes(bundle), unet_activation_bytes(_config(bundle, "unet"), images, h, w), vae)


# ------------------------------------------------------------------------------------- the machine


def available_bytes(provider: str = "CPUExecutionProvider") -> int | None:
    """Free memory where the model runs: VRAM for CUDA (NVML), else available RAM; None if unknown."""
    if provider == "CUDAExecutionProvider":
        free = nvml_free_bytes()
        if free is not None:
            return free
    return ram_available_bytes()


def ram_available_bytes() -> int | None:
    if sys.platform.startswith("linux"):
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            return None
    if sys.platform == "win32":
        return _windows_available()
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _windows_available() -> int | None:
    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]
    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    try:
        ok = ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    return int(status.ullAvailPhys) if ok else None


def nvml_free_bytes(device: int = 0) -> int | None:
    """Free memory of GPU `device` from NVIDIA's NVML library (loaded with ctypes), or None."""
    class NvmlMemory(ctypes.Structure):
        _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
    for name in ("libnvidia-ml.so.1", "nvml.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        handle, memory = ctypes.c_void_p(), NvmlMemory()
        if lib.nvmlInit_v2() != 0:
            return None
        try:
            if lib.nvmlDeviceGetHandleByIndex_v2(device, ctypes.byref(handle)) != 0:
                return None
            if lib.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
                return None
            return int(memory.free)
        finally:
            lib.nvmlShutdown()
    return None


# ---------------------------------------------------------------------------------------- checks


def largest_fitting(bundle, batch: int, height: int, width: int, *, guided: bool, budget: int, step: int):
    """The largest (height, width) with the same aspect, in multiples of `step`, whose estimate fits; or None."""
    scale = 1.0
    while scale > 0:
        h = max(step, int(height * scale) // step * step)
        w = max(step, int(width * scale) // step * step)
        if estimate(bundle, batch, h, w, guided=guided).needed <= budget:
            return h, w
        if h == step and w == step:
            return None
        scale -= 1 / 64
    return None


def check_fits(bundle, batch: int, height: int, width: int, *, guided: bool, step: int,
               available: int | None = None) -> Estimate:
    """The estimate, or MemoryEstimateError naming what it needs, what there is and the largest size that fits."""
    est = estimate(bundle, batch, height, width, guided=guided)
    budget = available_bytes(bundle.provider) if available is None else available
    if budget is None or est.needed <= budget:
        return est
    where = "free GPU memory" if bundle.provider == "CUDAExecutionProvider" else "available memory"
    fit = largest_fitting(bundle, batch, height, width, guided=guided, budget=budget, step=step)
    advice = (f"the largest size of this shape that fits is {fit[1]}x{fit[0]}" if fit
              else "even the smallest size does not fit; try a smaller batch")
    raise MemoryEstimateError(
        f"{width}x{height} at batch {batch} needs {est.describe()} but this machine has {gib(budget)} of "
        f"{where}: {advice}")
