"""A tiny learned live-preview decoder (TAESD-style) for a latent model, trained on its own VAE.

During sampling the app shows each step's predicted x̂_0. Running the real VAE decoder every step
is too slow, and the linear latent -> RGB map (`export.preview_fit`) is a blur of colour. This
network sits between them: a few hundred kilobytes that turn a scaled latent z [B, C, h, w] into
RGB [B, 3, h*f, w*f] in [-1, 1], trained to imitate the model's own VAE decoder:

    loss = | P(z) - D(z / scale_factor) |_1        (D clamped to [-1, 1], the final image)

on latents of the data set's images, z = E(x).mean * scale_factor, and on the same latents with
noise added (z + s * eps, s ~ U(0, `NOISE_MAX`)), because x̂_0 early in sampling is off the data's
latents and the preview should still look like what the VAE would make of it.

Architecture (`PreviewDecoder`): a 3x3 convolution to `width` channels at latent resolution, two
residual blocks there, then per factor of 2 a nearest-neighbour upsampling and a 3x3 convolution
(the last one narrowing to width / 3), a final 3x3 convolution to RGB and a tanh. Most of the work
is at latent resolution, so a call costs a small fraction of a U-Net step (benchmarks/bench_preview.py).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NOISE_MAX = 0.6


class _Res(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.a, self.b = nn.Conv2d(width, width, 3, padding=1), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.b(F.silu(self.a(F.silu(x))))


class PreviewDecoder(nn.Module):
    """Scaled latent [B, C, h, w] -> RGB [B, 3, h*factor, w*factor] in [-1, 1]."""

    def __init__(self, latent_channels: int = 4, factor: int = 4, width: int = 48, out_channels: int = 3):
        super().__init__()
        if factor < 1 or factor & (factor - 1):
            raise ValueError(f"the VAE factor must be a power of two, not {factor}")
        self.config = {"latent_channels": latent_channels, "factor": factor, "width": width,
                       "out_channels": out_channels}
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(_Res(width), _Res(width))
        ups, w = [], width
        for k in range(int(math.log2(factor))):
            narrow = max(width // 3, 8) if k == int(math.log2(factor)) - 1 else width
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, narrow, 3, padding=1), nn.SiLU()]
            w = narrow
        self.up = nn.Sequential(*ups)
        self.conv_out = nn.Conv2d(w, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv_out(self.up(self.blocks(F.silu(self.conv_in(z))))))


def parameter_bytes(net: nn.Module, bytes_per_weight: int = 4) -> int:
    return sum(p.numel() for p in net.parameters()) * bytes_per_weight


@torch.no_grad()
def training_pairs(vae, scale_factor: float, images: np.ndarray, *, noisy: bool = True, seed: int = 0,
                   batch: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(scaled latents, VAE decodes in [-1, 1]) for images [N, C, H, W] in [-1, 1]; with `noisy`, as
    many again with noise added to the latents (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    zs, xs = [], []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float()
        z = vae.encode(x).latent_dist.mean * scale_factor
        variants = [z]
        if noisy:
            s = torch.rand(len(z), 1, 1, 1, generator=g) * NOISE_MAX
            variants.append(z + s * torch.randn(z.shape, generator=g))
        for v in variants:
            zs.append(v)
            xs.append(vae.decode(v / scale_factor).sample.clamp(-1, 1))
    return torch.cat(zs), torch.cat(xs)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return float("inf") if mse == 0 else 10.0 * math.log10(4.0 / mse)


def train_preview_decoder(z: torch.Tensor, rgb: torch.Tensor, *, factor: int, steps: int = 1500, batch: int = 32,
                          lr: float = 2e-3, width: int = 48, seed: int = 0, log=None) -> tuple[PreviewDecoder, dict]:
    """Fit a PreviewDecoder to pairs (z [N,C,h,w], rgb [N,3,H,W]) by L1 with Adam (cosine learning
    rate); returns (decoder in eval mode, {"steps", "seconds", "l1", "psnr_train"})."""
    torch.manual_seed(seed)
    net = PreviewDecoder(int(z.shape[1]), factor, width, int(rgb.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    start, loss = time.time(), torch.tensor(0.0)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, len(z), (batch,), generator=g)
        loss = F.l1_loss(net(z[idx]), rgb[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if log is not None and (step + 1) % 100 == 0:
            log(f"preview decoder step {step + 1}/{steps}: L1 {loss.item():.4f}")
    net.eval()
    with torch.no_grad():
        fit = psnr(torch.cat([net(z[i:i + 64]) for i in range(0, min(len(z), 256), 64)]), rgb[:min(len(z), 256)])
    return net, {"steps": steps, "seconds": round(time.time() - start, 1), "l1": float(loss.detach()), "psnr_train": fit}
