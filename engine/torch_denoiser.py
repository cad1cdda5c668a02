"""A PyTorch U-Net as a numpy *denoiser* for the `diffusion/` samplers.

`diffusion.samplers` take any callable `model(x [B,C,h,w] float32, t [B] int64, **cond) -> output`.
`torch_denoiser(unet)` wraps a diffusers U-Net so that one sampler serves the ONNX session in the
app, this module in training previews, and test oracles. Condition keyword arguments are numpy
arrays batched like `x` (so `diffusion.guidance.cfg_denoiser` can concatenate them):
`encoder_hidden_states [B,S,D]`, `class_labels [B]` int64 and `concat [B,K,h,w]` (inpainting or
semantic channels, appended after x_t as in ARCHITECTURE "Conventions").
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .models import unet_forward


def torch_denoiser(unet: torch.nn.Module, device: str | torch.device | None = None, autocast_dtype: torch.dtype | None = None) -> Callable:
    device = torch.device(device) if device is not None else next(unet.parameters()).device

    @torch.no_grad()
    def denoise(x: np.ndarray, t: np.ndarray, encoder_hidden_states=None, class_labels=None, concat=None) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
        if concat is not None:
            xt = torch.cat([xt, torch.from_numpy(np.ascontiguousarray(concat, dtype=np.float32)).to(device)], dim=1)
        tt = torch.from_numpy(np.asarray(t, dtype=np.int64).reshape(-1)).to(device)
        if tt.numel() == 1 and xt.shape[0] > 1:
            tt = tt.expand(xt.shape[0])
        ehs = None if encoder_hidden_states is None else torch.from_numpy(np.asarray(encoder_hidden_states, dtype=np.float32)).to(device)
        cls = None if class_labels is None else torch.from_numpy(np.asarray(class_labels, dtype=np.int64)).to(device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            out = unet_forward(unet, xt, tt, encoder_hidden_states=ehs, class_labels=cls)
        return out.float().cpu().numpy()

    return denoise
