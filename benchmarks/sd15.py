"""A Stable-Diffusion-1.5-shaped pipeline with random weights, built from its configs (no hub).

`build(folder)` writes a diffusers pipeline folder: the U-Net (860M parameters) and VAE of SD 1.5
from the configs below (SD 1.5's published unet/vae config.json values), the CLIP ViT-L/14 text
encoder, tokenizer settings and PNDM scheduler from engine/sd_configs/sd1, CLIP's BPE vocabulary
from the open-clip-torch wheel (ours or the peers venv's). Weights are torch's default
initialisation under seed 0: the shapes and the work are SD 1.5's, the images are noise.
The folder is written beside its final name and renamed into place, so a cache never holds half.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "engine" / "sd_configs" / "sd1"

UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
VAE = {
    "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
    "sample_size": 512, "scaling_factor": 0.18215,
}


def bpe_file() -> Path:
    """CLIP's BPE vocabulary from open-clip-torch: this interpreter's, else the peers venv's."""
    from engine.clip_vocab import BPE_FILE, installed_bpe_file

    found = installed_bpe_file()
    if found is not None:
        return found
    for candidate in sorted((REPO / ".venv-peers").glob(f"lib/python*/site-packages/open_clip/{BPE_FILE}")):
        return candidate
    raise FileNotFoundError("CLIP's BPE vocabulary (open-clip-torch) is not installed here or in .venv-peers; "
                            "run `make .venv-peers`")


def build(folder: Path) -> Path:
    """The SD-1.5-shaped pipeline folder (made once; returned as is when it exists)."""
    if (folder / "model_index.json").is_file():
        return folder
    import torch
    import transformers
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from engine.clip_vocab import write_clip_vocabulary

    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(0)
    with torch.no_grad():
        UNet2DConditionModel(**UNET).save_pretrained(tmp / "unet")
        AutoencoderKL(**VAE).save_pretrained(tmp / "vae")
        text_cfg = json.loads((CONFIGS / "text_encoder" / "config.json").read_text())
        transformers.CLIPTextModel(transformers.CLIPTextConfig(**text_cfg)).save_pretrained(tmp / "text_encoder")
    write_clip_vocabulary(bpe_file(), tmp / "tokenizer")
    for rel in ("tokenizer/tokenizer_config.json", "scheduler/scheduler_config.json", "model_index.json"):
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(CONFIGS / rel, tmp / rel)
    tmp.rename(folder)
    return folder


def unet_parameters(folder: Path) -> int:
    """Parameters of the saved U-Net, from its safetensors header (no weights loaded)."""
    import struct

    total = 0
    for path in (folder / "unet").glob("*.safetensors"):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for d in entry["shape"]:
                    count *= d
                total += count
    return total


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    print(build(Path(sys.argv[1])))
