"""Tiny random-initialised models for the export tests (seconds to export, no downloads)."""
from __future__ import annotations

import torch

SCHEDULE = {"name": "linear", "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "cosine_s": 0.008}
CAPTIONS = ["a red circle", "a blue square on green", "two small triangles", "a yellow sun over the sea"]


def tiny_unet2d(in_channels, out_channels, size, num_class_embeds=None, seed=0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size, in_channels=in_channels, out_channels=out_channels, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), attention_head_dim=4, num_class_embeds=num_class_embeds,
    ).eval()


def tiny_vae(seed=0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
        latent_channels=4, norm_num_groups=4, sample_size=16,
    ).eval()


def tiny_text_encoder(tmp_path, seed=0):
    from engine.text import ScratchTextEncoder, train_wordpiece

    tok = train_wordpiece(CAPTIONS, tmp_path / "tok.json", vocab_size=80)
    torch.manual_seed(seed)
    return ScratchTextEncoder(tokenizer_json=tok, max_length=8, dim=16, layers=1, heads=2, ff_mult=2).eval()


def loaded(**kw):
    from engine.loaded import LoadedModel

    base = dict(schedule=dict(SCHEDULE), prediction_type="epsilon", defaults={"steps": 10},
                provenance={"data": "none", "steps": 0})
    base.update(kw)
    return LoadedModel(**base)
