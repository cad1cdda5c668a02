"""Exponential moving average of weights: theta_ema <- d * theta_ema + (1 - d) * theta.

The decay warms up as d_k = min(decay, (1 + k) / (10 + k)) (as in the LDM / diffusers EMA), so
the average is not dominated by the random initial weights early in a run.
"""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        k = self.num_updates
        return min(self.decay, (1 + k) / (10 + k))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        shadows, weights = [], []
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.device != v.device:  # the model moved (e.g. prepared onto the GPU) after the EMA was made
                s = self.shadow[k] = s.to(v.device)
            if v.dtype.is_floating_point:
                shadows.append(s)
                weights.append(v.detach().float())
            else:
                s.copy_(v)
        if shadows:  # s <- s + (1 - d)(v - s) = d s + (1 - d) v, as a few fused kernels (not two per tensor)
            torch._foreach_lerp_(shadows, weights, 1 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into `model` (same architecture)."""
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) for k, v in self.shadow.items()})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor], num_updates: int) -> None:
        missing = set(self.shadow) - set(tensors)
        if missing:
            raise KeyError(f"EMA state lacks {sorted(missing)[:3]}...")
        for k in self.shadow:
            self.shadow[k].copy_(tensors[k])
        self.num_updates = int(num_updates)
