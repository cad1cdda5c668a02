"""Networks built from a config: the diffusion U-Net, the VAE and the VAE's patch discriminator.

- Text-conditioned models use diffusers' `UNet2DConditionModel` (cross-attention on the text
  encoder's token states); all others use `UNet2DModel` (pixel or latent). Both take class labels
  through `num_class_embeds = len(class_names) + 1`; the last index is the null class used for
  classifier-free guidance.
- Condition channels are concatenated after the diffused channels (ARCHITECTURE "Conventions"):
  inpainting adds `1 + C` (mask, masked image/latent), semantic maps add `K` (one-hot labels).
- `unet_forward` hides the two U-Net classes' different call signatures.
"""
from __future__ import annotations

import torch
from torch import nn


def condition_channels(mask: str, channels: int, num_labels: int) -> int:
    """Channels concatenated after x_t: inpaint -> mask (1) + masked (C); semantic -> K one-hot."""
    if mask == "inpaint":
        return 1 + channels
    if mask == "semantic":
        if num_labels < 1:
            raise ValueError("a semantic-map model needs the number of labels (got 0)")
        return num_labels
    return 0


def build_unet(cfg: dict, *, sample_size: int, channels: int, num_classes: int = 0, num_labels: int = 0, text_dim: int = 0) -> nn.Module:
    """The denoiser eps_theta(x_t, t, cond) for `channels` diffused channels at `sample_size`."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    m, cond = cfg["model"], cfg["conditioning"]
    in_channels = channels + condition_channels(cond["mask"], channels, num_labels)
    class_embeds = num_classes + 1 if cond["class"] else None
    common = dict(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=channels,
        block_out_channels=tuple(m["block_out_channels"]),
        layers_per_block=m["layers_per_block"],
        norm_num_groups=m["norm_num_groups"],
        num_class_embeds=class_embeds,
    )
    if cond["text"]:
        if text_dim < 1:
            raise ValueError("a text-conditioned model needs the text encoder's hidden size")
        return UNet2DConditionModel(
            **common,
            down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in m["attention"]),
            up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m["attention"])),
            mid_block_type="UNetMidBlock2DCrossAttn",
            cross_attention_dim=m["cross_attention_dim"] or text_dim,
            attention_head_dim=m["attention_head_dim"],
            class_embed_type=None,
        )
    return UNet2DModel(
        **common,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in m["attention"]),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(m["attention"])),
        attention_head_dim=m["attention_head_dim"],
    )


def unet_forward(unet: nn.Module, x: torch.Tensor, t: torch.Tensor, encoder_hidden_states=None, class_labels=None) -> torch.Tensor:
    """One network call: x [B,Cin,h,w] (x_t plus condition channels), t int64 [B] -> output [B,C,h,w]."""
    inner = getattr(unet, "module", unet)  # DDP wraps the module
    if "cross_attention_dim" in inner.config:  # UNet2DConditionModel
        if encoder_hidden_states is None:
            raise ValueError("this U-Net is text-conditioned: pass encoder_hidden_states")
        return unet(x, t, encoder_hidden_states=encoder_hidden_states, class_labels=class_labels).sample
    return unet(x, t, class_labels=class_labels).sample


def build_vae(cfg: dict, channels: int, sample_size: int) -> nn.Module:
    """AutoencoderKL: len(block_out_channels)-1 halvings, `latent_channels` latent channels."""
    from diffusers import AutoencoderKL

    m = cfg["model"]
    levels = len(m["block_out_channels"])
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(m["block_out_channels"]),
        layers_per_block=m["layers_per_block"],
        latent_channels=m["latent_channels"],
        norm_num_groups=m["norm_num_groups"],
        sample_size=sample_size,
    )


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (pix2pix / LDM's NLayerDiscriminator): one real/fake logit per patch."""

    def __init__(self, channels: int, base: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(channels, base, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = base
        for i in range(1, layers):
            out = base * min(2**i, 8)
            stride = 2 if i < layers - 1 else 1
            mods += [nn.Conv2d(width, out, 4, stride, 1), nn.GroupNorm(min(32, out // 4) or 1, out), nn.LeakyReLU(0.2)]
            width = out
        mods.append(nn.Conv2d(width, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
