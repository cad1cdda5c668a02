"""The memory estimate (desktop/runtime/memory.py) against the peak RSS ONNX Runtime really reaches.

    nice -n 10 python benchmarks/bench_memory.py            # tiny SD fixture + a mid-size SD shape
    python benchmarks/bench_memory.py --shapes fixture      # only the committed fixture (seconds)

Per case, in a fresh process: the CPU session is created as the runtime creates it, its resident
memory noted, the kernel's peak-RSS mark reset (/proc/self/clear_refs, Linux), then one call: the
U-Net at batch 2 (classifier-free guidance) or the VAE decoder at batch 1, the shapes `generate`
feeds. Measured = peak RSS during the call - RSS before it: the activations and ONNX Runtime's arena
growth, which is what `memory.estimate` counts beyond the loaded weights (`unet`, `vae`; the check
asks for MARGIN x that to be free). Ratio = estimate / measured (above 1: the estimate is
cautious).

Shapes (`--shapes`):
- `fixture`: tests/fixtures/sd/optimum-sd1 (optimum's export of a tiny SD-1.x pipeline) at latent
  sides 64 and 128;
- `mid`: an SD-1.x-shaped U-Net with random weights (SD 1.5's four levels and attention layout,
  channels 160-320-640-640, one layer per block, 8 heads, 77 x 768 text context) and SD 1.5's
  real VAE decoder shape, exported by our exporter; latent 32 and 64 (256 and 512 pixels).
  Built once under benchmarks/.cache/memory (git-ignored).
Linux only (reads /proc/self/status).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CACHE = REPO / "benchmarks" / ".cache" / "memory"
FIXTURE = REPO / "tests" / "fixtures" / "sd" / "optimum-sd1"
MID_UNET = {
    "block_out_channels": [160, 320, 640, 640], "layers_per_block": 1, "attention_head_dim": 8,
    "cross_attention_dim": 768, "in_channels": 4, "out_channels": 4, "sample_size": 64, "norm_num_groups": 32,
    "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
}
SD_VAE = {  # Stable Diffusion 1.5's VAE
    "block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4, "norm_num_groups": 32,
    "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3, "out_channels": 3, "sample_size": 512,
}
MIB = 1024 ** 2


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def feeds_for(session, role: str, side: int) -> dict:
    """The inputs `generate` sends: U-Net batch 2 (guided), VAE decoder batch 1, latent side x side."""
    import numpy as np
    rng = np.random.default_rng(0)
    batch = 2 if role == "unet" else 1
    feeds = {}
    for inp in session.get_inputs():
        shape = inp.shape
        if inp.name in ("sample", "latent_sample"):
            c = shape[1] if isinstance(shape[1], int) else 4
            feeds[inp.name] = rng.standard_normal((batch, c, side, side)).astype(np.float32)
        elif inp.name == "timestep":
            dtype = np.float32 if "float" in inp.type else np.int64
            feeds[inp.name] = np.full([batch] if len(shape) else [], 500, dtype=dtype)
        elif inp.name == "encoder_hidden_states":
            seq = shape[1] if isinstance(shape[1], int) else 77
            feeds[inp.name] = rng.standard_normal((batch, seq, shape[2])).astype(np.float32)
        else:
            raise ValueError(f"{inp.name}: an input this benchmark does not feed")
    return feeds


def worker(path: str, role: str, side: int) -> dict:
    """One call in this process: RSS before, peak during (see the module docstring)."""
    from desktop.runtime.providers import create_session
    session, _ = create_session(path, "cpu", cache=False)
    feeds = feeds_for(session, role, side)
    before = status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    session.run(None, feeds)
    return {"before": before * 1024, "peak": status_kib("VmHWM") * 1024}


def estimate_for(config: dict, role: str, side: int, factor: int) -> int:
    from desktop.runtime import memory
    if role == "unet":
        return memory.unet_activation_bytes(config, 2, side, side)
    return memory.vae_decode_bytes(config, side * factor, side * factor, factor)


def build_mid() -> dict:
    """The mid-size SD-shaped U-Net and SD 1.5's VAE decoder as ONNX (cached); role -> path."""
    import types

    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from export.onnx_graphs import export_graph, unet_graph, vae_decoder_graph
    paths = {"unet": CACHE / "mid-unet" / "model.onnx", "vae_decoder": CACHE / "sd-vae-decoder" / "model.onnx"}
    if all(p.is_file() for p in paths.values()):
        return paths
    torch.manual_seed(0)
    if not paths["unet"].is_file():
        unet = UNet2DConditionModel(**MID_UNET).eval()
        text = types.SimpleNamespace(dim=768, max_length=77)
        export_graph(unet_graph(unet, sample_size=(32, 32), num_train_timesteps=1000, text_encoder=text),
                     paths["unet"])
        del unet
    if not paths["vae_decoder"].is_file():
        vae = AutoencoderKL(**SD_VAE).eval()
        export_graph(vae_decoder_graph(vae, 256, 0.18215), paths["vae_decoder"])
    return paths


def cases(shapes: list[str]) -> list[tuple]:
    """(label, onnx path, role, config, VAE factor, latent side)."""
    out = []
    if "fixture" in shapes:
        ucfg = json.loads((FIXTURE / "unet" / "config.json").read_text())
        vcfg = json.loads((FIXTURE / "vae_decoder" / "config.json").read_text())
        factor = 2 ** (len(vcfg["block_out_channels"]) - 1)
        for side in (64, 128):
            out.append(("fixture sd1 U-Net", FIXTURE / "unet" / "model.onnx", "unet", ucfg, factor, side))
            out.append(("fixture sd1 VAE", FIXTURE / "vae_decoder" / "model.onnx", "vae", vcfg, factor, side))
    if "mid" in shapes:
        paths = build_mid()
        for side in (32, 64):
            out.append(("mid SD U-Net", paths["unet"], "unet", MID_UNET, 8, side))
            out.append(("SD1.5 VAE decoder", paths["vae_decoder"], "vae", SD_VAE, 8, side))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=["fixture", "mid"], choices=["fixture", "mid"])
    ap.add_argument("--worker", nargs=3, metavar=("PATH", "ROLE", "SIDE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], int(args.worker[2]))))
        return 0
    from benchmarks.report import commit, machine
    print(f"machine: {machine()}\ncommit: {commit()}\n")
    print(f"{'case':<20} {'image':>9} {'batch':>5} {'RSS before':>11} {'measured':>10} {'estimate':>10} {'ratio':>6}")
    for label, path, role, cfg, factor, side in cases(args.shapes):
        done = subprocess.run([sys.executable, __file__, "--worker", str(path), role, str(side)], capture_output=True,
                              text=True, cwd=REPO, env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"})
        if done.returncode:
            print(f"{label:<20} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        measured = r["peak"] - r["before"]
        est = estimate_for(cfg, role, side, factor)
        size = f"{side * factor}x{side * factor}"
        print(f"{label:<20} {size:>9} {2 if role == 'unet' else 1:>5} {r['before'] / MIB:>9.0f}MB "
              f"{measured / MIB:>8.0f}MB {est / MIB:>8.0f}MB {est / max(measured, 1):>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
