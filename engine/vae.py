"""The VAE trainer (first stage of latent diffusion; docs/MATH.md):

    L = L_recons + beta_KL * L_KL + beta_p * L_perceptual + beta_adv * lambda * L_adversarial

- L_recons: mean |x - D(z)| ("l1") or squared error ("l2") per pixel, z = mu + sigma * eps.
- L_KL: KL(N(mu, sigma^2) || N(0, I)) summed over latent elements and divided by the number of
  image pixels (the LDM loss sums both terms over pixels; dividing both by the pixel count keeps
  the LDM ratio with a per-pixel reconstruction term; default beta_KL = 1e-6 as in LDM).
- L_perceptual: LPIPS when `vae_loss.perceptual_weights` names a local weights file (VGG16
  `features.N.*` tensors as torchvision names them, plus optional LPIPS `lin{k}.model.1.weight`
  heads; read with safetensors or `torch.load(weights_only=True)`). We cannot download VGG, so
  without that file the substitute is a multi-scale structural loss: 1 - SSIM (3x3 windows) at three
  scales plus the L1 distance of image gradients. Like LPIPS it penalises blur and misplaced edges
  that a per-pixel loss averages away, needs no pretrained weights, and is 0 exactly when the
  images match.
- L_adversarial: a PatchGAN discriminator with the hinge loss, switched on after `adv_start` steps;
  its weight lambda is LDM's adaptive weight ||grad L_rec|| / ||grad L_adv|| at the decoder's last
  layer (clamped to [0, 1e4]), or 1 with `adaptive_weight = false`.

At the end, scale_factor = 1 / std(E(x).mean) over up to 512 training images (as LDM does), so
the diffused latents z * scale_factor have unit variance; the run writes model/vae (diffusers
`save_pretrained`) and model/studio_model.json {"kind": "vae", "scale_factor", ...}. Checkpoints,
data order, resume and Ctrl+C follow engine.train.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from desktop.runtime import fileio

from .config import load_config
from .loaded import vae_downscale
from .loop import (CHECKPOINT, TrainError, checkpointer, collate, machine_name, make_accelerator, make_dataset,
                   optimizer_step, prepare_run_folder, progress_bar, restore_state, run_clock, run_loop,
                   save_png_grid, step_loader)
from .models import PatchDiscriminator, build_vae


class VAEWithLoss(nn.Module):
    """One forward for DDP: x, eps -> (reconstruction, mu, logvar)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor):
        dist = self.vae.encode(x).latent_dist
        z = dist.mean + dist.std * eps  # reparameterisation
        return self.vae.decode(z).sample, dist.mean, dist.logvar


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor, pixels: int) -> torch.Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) = 0.5 * sum(mu^2 + e^logvar - 1 - logvar), per image pixel."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).flatten(1).sum(1).mean() / pixels


def _ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM with 3x3 uniform windows (images in [-1, 1], so L = 2)."""
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    pad = lambda a: F.pad(a, (1, 1, 1, 1), mode="replicate")
    mx, my = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    vx = F.avg_pool2d(pad(x * x), 3, 1) - mx**2
    vy = F.avg_pool2d(pad(y * y), 3, 1) - my**2
    cxy = F.avg_pool2d(pad(x * y), 3, 1) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()


def structural_loss(x: torch.Tensor, y: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Sum over scales of (1 - SSIM) + L1 of horizontal/vertical image gradients (LPIPS substitute)."""
    total = x.new_zeros(())
    for s in range(scales):
        if s:
            if min(x.shape[-2:]) < 4:
                break
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        total = total + (1 - _ssim(x, y))
        total = total + (x.diff(dim=-1) - y.diff(dim=-1)).abs().mean() + (x.diff(dim=-2) - y.diff(dim=-2)).abs().mean()
    return total


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
VGG16_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's numbering


class LPIPS(nn.Module):
    """LPIPS (Zhang et al. 2018) on VGG16 from a local weights file; frozen."""

    def __init__(self, path: str | Path):
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise TrainError(f"vae_loss.perceptual_weights: {path} not found")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        layers, c = [], 3
        for v in VGG16:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        self.features = nn.Sequential(*layers)
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(feats)
        except RuntimeError as exc:
            raise TrainError(f"{path}: not VGG16 'features.N.weight/bias' tensors ({exc})") from exc
        widths = (64, 128, 256, 512, 512)
        self.lins = nn.ParameterList(
            [nn.Parameter(state.get(f"lin{k}.model.1.weight", torch.ones(1, w, 1, 1) / w).float().reshape(1, w, 1, 1)) for k, w in enumerate(widths)])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        h = torch.cat([x, y]).sub(self.shift).div(self.scale)
        total, tap = 0.0, 0
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in VGG16_TAPS:
                f = h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                fx, fy = f.chunk(2)
                total = total + ((fx - fy) ** 2 * self.lins[tap]).sum(1).mean()
                tap += 1
            if i >= VGG16_TAPS[-1]:
                break
        return total


def adaptive_weight(rec_loss, g_loss, last_layer: torch.Tensor) -> torch.Tensor:
    """LDM: lambda = ||grad_last L_rec|| / (||grad_last L_adv|| + 1e-4), clamped to [0, 1e4]."""
    g_rec = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_adv = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (g_rec.norm() / (g_adv.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def compute_scale_factor(vae: nn.Module, ds, device, count: int = 512, batch: int = 32) -> float:
    """1 / std of the latent means E(x).mean over the first `count` images (LDM's scale_factor)."""
    vae.eval()
    means = []
    with torch.no_grad():
        n = min(count, len(ds))
        for i in range(0, n, batch):
            x = torch.stack([ds[j]["image"] for j in range(i, min(n, i + batch))]).to(device)
            means.append(vae.encode(x).latent_dist.mean.float().cpu())
    std = torch.cat(means).std().item()
    if not std > 0:
        raise TrainError("latent std is 0: the VAE collapsed; the scale factor cannot be computed")
    return 1.0 / std


def save_vae_model(vae: nn.Module, folder: Path, info: dict) -> Path:
    """model/vae (diffusers save_pretrained) + model/studio_model.json, via a temporary folder + rename."""
    fileio.clean_leftovers(folder.parent, folder.name)
    tmp = fileio.temp_dir(folder, "build")
    try:
        vae.save_pretrained(str(tmp / "vae"), safe_serialization=True)
        fileio.write_json(tmp / "studio_model.json", info)
        fileio.replace_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_vae(path: str | Path):
    """(AutoencoderKL, scale_factor) from a VAE run folder, its model/ folder, model/vae itself, or
    a latent bundle (its VAE graphs, `engine.bundle_weights`)."""
    from diffusers import AutoencoderKL

    from .bundle_weights import BundleWeightsError, is_bundle, vae_from_bundle

    path = Path(path)
    if is_bundle(path):
        try:
            return vae_from_bundle(path)
        except BundleWeightsError as exc:
            raise TrainError(f"vae: {exc}") from None
    for folder in (path / "model", path, path.parent):
        meta = folder / "studio_model.json"
        if (folder / "vae" / "config.json").is_file() and meta.is_file():
            info = json.loads(meta.read_text())
            if "scale_factor" not in info:
                raise TrainError(f"{meta}: no 'scale_factor'; was the VAE run finished?")
            vae = AutoencoderKL.from_pretrained(str(folder / "vae"), use_safetensors=True)
            return vae, float(info["scale_factor"])
    raise TrainError(f"no trained VAE at {path}: expected a VAE run folder with model/vae/ and model/studio_model.json "
                     "(train one first, e.g. 'diffusion-studio train tiny-vae --out runs/tiny-vae')")


def train_vae(cfg, out, *, dataset=None, resume: bool = False, device: str | None = None, progress: bool = True,
              hooks: dict | None = None, finalize: bool = False) -> Path:
    """Train an AutoencoderKL described by `cfg` (kind = "vae") into the run folder `out`.

    hooks and finalize as engine.train.train's (on_step gets the reconstruction loss). Returns `out`."""
    cfg = load_config(cfg) if not isinstance(cfg, dict) or "training" not in cfg else cfg
    tc, lc = cfg["training"], cfg["vae_loss"]
    out = Path(out)
    acc = make_accelerator(cfg, device)
    dev = acc.device
    state = prepare_run_folder(out, cfg, resume, acc.is_main_process)
    torch.manual_seed(tc["seed"])

    ds = dataset if dataset is not None else make_dataset(cfg)
    channels, size = int(ds[0]["image"].shape[0]), int(ds[0]["image"].shape[-1])
    vae = build_vae(cfg, channels, size)
    model = VAEWithLoss(vae)
    disc = PatchDiscriminator(channels, cfg["model"]["disc_channels"])
    perceptual = LPIPS(lc["perceptual_weights"]).to(dev) if lc["perceptual_weights"] else structural_loss
    opt = torch.optim.AdamW(model.parameters(), lr=tc["lr"], betas=(0.5, 0.9), weight_decay=0.0)
    opt_d = torch.optim.AdamW(disc.parameters(), lr=tc["lr"], betas=(0.5, 0.9), weight_decay=0.0)
    step = restore_state(state, out / CHECKPOINT, {
        "model": model.load_state_dict, "disc": disc.load_state_dict,
        "optimizer": opt.load_state_dict, "optimizer_disc": opt_d.load_state_dict})
    model, disc, opt, opt_d = acc.prepare(model, disc, opt, opt_d)
    raw, raw_disc = acc.unwrap_model(model), acc.unwrap_model(disc)
    clock = run_clock(state)
    checkpoint = checkpointer(acc, out / CHECKPOINT, tc, kind="vae", name=cfg["name"], seconds=clock, parts=lambda: {
        "model": raw.state_dict(), "disc": raw_disc.state_dict(), "optimizer": opt.state_dict(),
        "optimizer_disc": opt_d.state_dict()})
    train_step = vae_step(cfg, acc=acc, model=model, disc=disc, opt=opt, opt_d=opt_d, perceptual=perceptual,
                          image_pixels=channels * size * size,
                          latent_shape=(cfg["model"]["latent_channels"], *[size // vae_downscale(raw.vae.config)] * 2))
    model.train()
    disc.train()

    def finish(step: int) -> Path:
        scale_factor = compute_scale_factor(raw.vae, ds, dev)
        raw.vae.to("cpu")
        return save_vae_model(raw.vae, out / "model", {
            "kind": "vae", "scale_factor": scale_factor, "image_size": size, "image_channels": channels,
            "latent_channels": cfg["model"]["latent_channels"],
            "provenance": {"source": f"diffusion-studio train {cfg['name']}", "data": cfg["dataset"]["name"], "steps": step,
                           "train_seconds": round(clock(), 1), "machine": machine_name()},
        })

    run_loop(acc, tc, out, loader=step_loader(ds, tc, step=step, rank=acc.process_index, world=acc.num_processes, collate=collate),
             step=step, train_step=train_step, optimizers=(opt, opt_d), checkpoint=checkpoint,
             sample=reconstruction_grid_writer(raw, ds, dev), hook_loss="rec_loss",
             bar=progress_bar(acc, progress and not finalize, tc, step, cfg["name"] or "vae"), hooks=hooks,
             clock=clock, finish=finish, finalize=finalize)
    acc.wait_for_everyone()
    return out


def vae_step(cfg: dict, *, acc, model, disc, opt, opt_d, perceptual: Callable, image_pixels: int,
             latent_shape: tuple) -> Callable:
    """train_step(batch, g, step) for engine.loop.run_loop: the VAE's loss and step, then the
    discriminator's hinge-loss step once the adversarial term is on; returns the three losses."""
    tc, lc = cfg["training"], cfg["vae_loss"]
    raw = acc.unwrap_model(model)
    last_layer = raw.vae.decoder.conv_out.weight

    def train_step(batch: dict, g: torch.Generator, step: int) -> dict:
        x = batch["image"].to(acc.device)
        use_adv = lc["adv_weight"] > 0 and step >= lc["adv_start"]
        with acc.autocast():
            eps = torch.randn((x.shape[0], *latent_shape), generator=g, device=acc.device)
            rec, mu, logvar = model(x, eps)
            rec = rec.float()
            rec_loss = (rec - x).abs().mean() if lc["recon"] == "l1" else (rec - x).pow(2).mean()
            p_loss = perceptual(rec, x) if lc["perceptual_weight"] > 0 else rec.new_zeros(())
            nll = rec_loss + lc["perceptual_weight"] * p_loss
            loss = nll + lc["kl_weight"] * kl_loss(mu.float(), logvar.float(), image_pixels)
            if use_adv:
                g_loss = -disc(rec).float().mean()
                weight = adaptive_weight(nll, g_loss, last_layer) if lc["adaptive_weight"] else 1.0
                loss = loss + lc["adv_weight"] * weight * g_loss
        if not torch.isfinite(loss):
            raise TrainError(f"VAE loss became {loss.item()} at step {step}; lower training.lr")
        optimizer_step(acc, loss, model, opt, tc["grad_clip"])
        opt_d.zero_grad(set_to_none=True)
        d_loss = torch.zeros((), device=acc.device)
        if use_adv:  # hinge loss: relu(1 - D(x)) + relu(1 + D(x_rec))
            with acc.autocast():
                d_loss = 0.5 * (F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean())
            acc.backward(d_loss)
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
        return {"loss": loss, "rec_loss": rec_loss, "disc_loss": d_loss}
    return train_step


def reconstruction_grid_writer(raw: VAEWithLoss, ds, device) -> Callable[[Path], None]:
    """write(path): 8 data images above their reconstructions D(E(x).mean)."""
    def write(path: Path, n: int = 8) -> None:
        with torch.no_grad():
            x = torch.stack([ds[i % len(ds)]["image"] for i in range(n)]).to(device)
            raw.eval()
            rec = raw.vae.decode(raw.vae.encode(x).latent_dist.mean).sample
            raw.train()
        save_png_grid(path, torch.cat([x, rec]).float().cpu().numpy(), cols=n)
    return write
