"""The DDPM / LDM trainer (docs/MATH.md, "Training", Algorithm 1), readable top to bottom.

Each step: x_0 from the data (latent runs: z_0 = E(x).mean * scale_factor with the frozen VAE),
t ~ U{0..T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (q_sample, with
`alphas_cumprod` from `diffusion.schedule.make_schedule`, never diffusers' schedulers), and a step on
||target - net(x_t, t, cond)||^2 with target eps ("epsilon") or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
("v_prediction"). Conditions are dropped with probability `cond_drop_prob` for classifier-free
guidance: class -> the null index len(names), text -> the empty prompt "", semantic -> all-zero
one-hot. Inpainting trains on random masks (boxes, brush strokes, and a share `inpaint_full_prob` of
full masks, i.e. plain generation); its channels are never dropped. AdamW, linear LR warm-up,
gradient clipping, EMA, bf16 autocast on CUDA.

Determinism and resume (decisions, also for multi-process runs):
- The data order is a pure function of (seed, step): the index stream is the concatenation of
  permutations perm(seed, epoch); global step s takes positions [s*G, (s+1)*G) with G = batch x
  processes, and process r takes its own `batch` of them (`batch_indices`). Resuming at step s
  therefore needs no skipping of loader state, and ranks never see the same example in a step.
  Accelerate prepares the model and optimizer; the data loader is not prepared, because this
  sharding already is the distributed sampler.
- Every random draw of a step (t, eps, condition dropout, masks, flips) comes from a generator
  seeded with (seed, rank, step), so a resumed run repeats the straight run exactly. The global
  torch / numpy / python RNG states are saved and restored as well.
- The learning rate is a pure function of the step (`lr_at`), so the "lr-scheduler state" is the step.
"""
from __future__ import annotations

import copy
import math
import json
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffusion.defaults import fallback_guidance

from .config import load_config, rebuild_command
from .ema import EMA
from .loop import (CHECKPOINT, TrainError, checkpointer, dataset_class_names, dataset_label_spec, make_accelerator,
                   make_dataset, machine_name, optimizer_step, prepare_run_folder, progress_bar, restore_state,
                   run_clock, run_loop, save_png_grid, step_loader, collate)
from .models import build_unet, unet_forward
from .vae import load_vae

__all__ = ["CHECKPOINT", "Conditioner", "TrainError", "diffusion_loss", "train"]

# Frozen text encoders: token states of up to this many captions stay cached (32 tokens x 384
# floats: about 1 GB, a whole 20,000-caption data set, so after one epoch no caption is re-encoded).
CAPTION_CACHE_ENTRIES = 20_000


# ----------------------------------------------------------------------------- conditions (torch)


def mask_to_size(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Torch twin of diffusion.condition.mask_to_size: mean pooling when the size divides, else bilinear."""
    H, W = mask.shape[-2:]
    if (H, W) == (h, w):
        return mask
    if H % h == 0 and W % w == 0:
        return F.avg_pool2d(mask, (H // h, W // w))
    return F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False)


def one_hot_labels(labels: torch.Tensor, K: int, h: int, w: int) -> torch.Tensor:
    """Torch twin of diffusion.condition.one_hot_labels: [B,H,W] int -> soft one-hot [B,K,h,w]."""
    oh = F.one_hot(labels.long().clamp(0, K - 1), K).permute(0, 3, 1, 2).float()
    oh = oh * (labels >= 0)[:, None].float() * (labels < K)[:, None].float()
    return mask_to_size(oh, h, w)


def random_inpaint_masks(b: int, h: int, w: int, g: torch.Generator, device, full_prob: float = 0.1) -> torch.Tensor:
    """[B,1,H,W] in {0,1}, 1 = generate: everything (`full_prob`, i.e. plain generation), else a
    random box or brush strokes (half of the rest each).

    Vectorised over the batch (no per-image Python loop, no device syncs): a stroke is discs of one
    radius at 8 points along each of 2..5 random segments of a polyline.
    """
    segments, points = 5, 8
    u = torch.rand(b, 10, generator=g, device=device)
    moves = torch.rand(b, segments, 2, generator=g, device=device)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w)
    col = lambda v: v.view(b, 1, 1, 1)  # noqa: E731
    # boxes
    bh, bw = (1 + u[:, 1] * (h - 1)).floor(), (1 + u[:, 2] * (w - 1)).floor()
    y0, x0 = (u[:, 3] * (h - bh + 1)).floor(), (u[:, 4] * (w - bw + 1)).floor()
    box = (ys >= col(y0)) & (ys < col(y0 + bh)) & (xs >= col(x0)) & (xs < col(x0 + bw))
    # strokes along a polyline that stays inside the image
    radius = (u[:, 5] * 0.15 * min(h, w) + 1).clamp_min(1.0)
    n_segments = (2 + u[:, 6] * (segments - 1)).floor()  # 2..5
    scale = torch.tensor([h, w], device=device, dtype=torch.float32)
    limit = scale - 1
    p = u[:, 7:9] * scale
    centres, valid = [], []
    s = torch.linspace(0, 1, points, device=device).view(1, points, 1)
    for k in range(segments):
        q = torch.minimum(torch.clamp(p + (moves[:, k] - 0.5) * scale, min=0.0), limit)
        centres.append(p[:, None, :] + (q - p)[:, None, :] * s)
        valid.append((k < n_segments).view(b, 1).expand(b, points))
        p = q
    c = torch.cat(centres, 1)  # [B, segments*points, 2]
    v = torch.cat(valid, 1)
    d2 = (ys - c[..., 0, None, None]) ** 2 + (xs - c[..., 1, None, None]) ** 2  # [B, K, H, W]
    stroke = ((d2 <= col(radius) ** 2) & v[..., None, None]).any(1, keepdim=True)
    kinds = col(u[:, 0])
    masks = torch.where(kinds < full_prob, torch.ones_like(box),
                        torch.where(kinds < full_prob + (1 - full_prob) / 2, box, stroke))
    return masks.float()


def cached_latents(cache: dict, encode, x: torch.Tensor, keys: list) -> torch.Tensor:
    """encode(x) row by row through `cache` (key -> latent): only the rows not seen before are encoded."""
    todo = [i for i, k in enumerate(keys) if k not in cache]
    if todo:
        cache.update(zip((keys[i] for i in todo), encode(x[todo])))
    return torch.stack([cache[k] for k in keys])


def masked_latents(encode, masked: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """encode(masked) row by row, where a fully masked row (an all-zero image) is encoded once for all."""
    full = m.flatten(1).amin(1) > 0.5
    if not full.any():
        return encode(masked)
    z_zero = encode(torch.zeros_like(masked[:1]))
    z = z_zero.expand(masked.shape[0], *z_zero.shape[1:]).clone()
    if (~full).any():
        z[~full] = encode(masked[~full])
    return z


# ----------------------------------------------------------------------------- the model


class Denoiser(nn.Module):
    """What is optimised: the U-Net, plus a text encoder when it trains jointly ("scratch").

    One forward (one DDP call) computes token states from ids and runs the U-Net.
    """

    def __init__(self, unet: nn.Module, text: nn.Module | None = None):
        super().__init__()
        self.unet = unet
        self.text = text

    def forward(self, x, t, class_labels=None, encoder_hidden_states=None, input_ids=None, attention_mask=None):
        if input_ids is not None:
            encoder_hidden_states = self.text(input_ids, attention_mask)
        return unet_forward(self.unet, x, t, encoder_hidden_states=encoder_hidden_states, class_labels=class_labels)


def init_unet(unet: nn.Module, path: str | Path) -> None:
    """Load the U-Net weights of a trained run (its model/ folder's EMA weights), a model folder or
    a bundle (its ONNX graph, `engine.bundle_weights`) into `unet` (fine-tuning); the architecture
    must match."""
    from safetensors.torch import load_file

    from .bundle_weights import BundleWeightsError, is_bundle, unet_from_bundle

    path = Path(path)
    if is_bundle(path):
        try:
            return unet_from_bundle(unet, path)
        except BundleWeightsError as exc:
            raise TrainError(f"training.init: {exc}") from None
    for folder in (path / "model" / "unet", path / "unet", path):
        weights = folder / "diffusion_pytorch_model.safetensors"
        if weights.is_file():
            break
    else:
        raise TrainError(f"training.init: no U-Net weights at {path} (expected a run folder with "
                         "model/unet/diffusion_pytorch_model.safetensors)")
    current = unet.state_dict()
    sd = load_file(str(weights))
    wrong = sorted(set(sd) ^ set(current)) + sorted(k for k in set(sd) & set(current) if sd[k].shape != current[k].shape)
    if wrong:
        raise TrainError(f"training.init: {weights} does not fit this config's U-Net "
                         f"({len(wrong)} tensors differ, e.g. {wrong[0]}); use the same [model] settings")
    unet.load_state_dict({k: v.to(current[k].dtype) for k, v in sd.items()})


def diffusion_loss(model: Callable, x0: torch.Tensor, alphas_cumprod: torch.Tensor, g: torch.Generator, *,
                   prediction_type: str = "epsilon", channels: list | tuple = (), autocast=nullcontext,
                   **cond) -> torch.Tensor:
    """||target - model([x_t, *channels], t, **cond)||^2 for one batch (Algorithm 1's loss).

    t ~ U{0..T-1} and eps ~ N(0, I) are drawn from `g` (in that order), x_t = q_sample(x0, t, eps) =
    sqrt(abar_t) x0 + sqrt(1 - abar_t) eps; the target is eps ("epsilon") or
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 ("v_prediction"). `channels` are the condition
    channels appended after x_t; `cond` the model's keyword inputs (class labels, text).
    """
    T = len(alphas_cumprod)
    t = torch.randint(0, T, (x0.shape[0],), generator=g, device=g.device)
    eps = torch.randn(x0.shape, generator=g, device=g.device)
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps  # q_sample
    target = eps if prediction_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
    with autocast():
        pred = model(torch.cat([x_t, *channels], dim=1), t, **cond)
    return F.mse_loss(pred.float(), target)


@dataclass
class RunData:
    """The data set and what the model learns from it."""

    dataset: object
    channels: int  # image channels
    size: int  # image size (square)
    class_names: list
    labels: list  # [{"name", "color"}] of the label maps (semantic models)


def describe_data(cfg: dict, dataset=None) -> RunData:
    """The configured (or given) data set, checked against what the config conditions on."""
    cc = cfg["conditioning"]
    ds = dataset if dataset is not None else make_dataset(cfg)
    first = ds[0]
    class_names = dataset_class_names(ds) if cc["class"] else []
    if cc["class"] and not class_names:
        raise TrainError("conditioning.class = true but the data set has no classes (sub-folders or a generated set)")
    labels = dataset_label_spec(ds) if cc["mask"] == "semantic" else []
    if cc["mask"] == "semantic" and not labels:
        raise TrainError("conditioning.mask = 'semantic' but the data set names no labels (dataset.json 'labels')")
    return RunData(dataset=ds, channels=int(first["image"].shape[0]), size=int(first["image"].shape[-1]),
                   class_names=class_names, labels=labels)


@dataclass
class Networks:
    """The frozen VAE (latent runs) and text encoder, and the trained Denoiser with its EMA."""

    model: nn.Module  # the Denoiser (prepared by Accelerate later)
    ema: EMA
    vae: nn.Module | None
    scale_factor: float
    text: nn.Module | None
    text_trains: bool  # the text encoder trains with the U-Net ("scratch")
    diff_channels: int  # channels of the diffused x (latent channels for latent runs)
    diff_size: int


def build_networks(cfg: dict, data: RunData, device, *, text_encoder=None, fresh: bool) -> Networks:
    """VAE, text encoder, U-Net (from `training.init` on a fresh run) and the EMA of the Denoiser."""
    from .loaded import vae_downscale

    tc, cc = cfg["training"], cfg["conditioning"]
    vae, scale_factor = None, 1.0
    diff_channels, diff_size = data.channels, data.size
    if cfg["kind"] == "latent":
        vae, scale_factor = load_vae(cfg["vae"])
        vae.requires_grad_(False).eval().to(device)
        diff_channels = int(vae.config.latent_channels)
        diff_size = data.size // vae_downscale(vae.config)
    text = None
    if cc["text"]:
        if text_encoder is None:
            from .text import load_text_encoder

            text_encoder = load_text_encoder(cc["text"])
        text = text_encoder
    text_trains = text is not None and any(p.requires_grad for p in text.parameters()) and not getattr(text, "frozen", False)
    unet = build_unet(cfg, sample_size=diff_size, channels=diff_channels, num_classes=len(data.class_names),
                      num_labels=len(data.labels), text_dim=int(text.dim) if text is not None else 0)
    if tc["init"] and fresh:
        init_unet(unet, tc["init"])
    model = Denoiser(unet, text if text_trains else None)
    if text is not None and not text_trains:
        text.requires_grad_(False).eval().to(device)
    return Networks(model=model, ema=EMA(model, tc["ema_decay"]), vae=vae, scale_factor=scale_factor, text=text,
                    text_trains=text_trains, diff_channels=diff_channels, diff_size=diff_size)


# ----------------------------------------------------------------------------- conditioning


class Conditioner:
    """The U-Net's inputs besides x_t, built once per run: for training batches (with the
    classifier-free dropout) and for the sample grids (without).

    It keeps the caches: token states of a frozen text encoder per caption, and the latent of each
    (index, flipped) image of a generated data set (the VAE is frozen and a generated set gives the
    same image for the same index; a folder data set augments itself, so it is not cached).
    """

    def __init__(self, cfg: dict, data: RunData, nets: Networks, device):
        self.cc = cfg["conditioning"]
        self.data, self.device = data, device
        self.vae, self.scale_factor = nets.vae, nets.scale_factor
        self.text, self.text_trains = nets.text, nets.text_trains
        self.diff_size = nets.diff_size
        self.caption_cache: dict[str, torch.Tensor] = {}
        self.latent_cache: dict | None = {} if nets.vae is not None and cfg["dataset"]["name"] != "folder" else None

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """z = E(x).mean * scale_factor (no gradients: the VAE is frozen)."""
        with torch.no_grad():
            return self.vae.encode(x).latent_dist.mean * self.scale_factor

    def x0(self, x: torch.Tensor, indices: list, flipped: list) -> torch.Tensor:
        """What is diffused: the images, or their latents (cached per (index, flipped) when allowed)."""
        if self.vae is None:
            return x
        if self.latent_cache is None:
            return self.encode_latent(x)
        return cached_latents(self.latent_cache, self.encode_latent, x, list(zip(indices, flipped)))

    def frozen_text_states(self, captions: list[str]) -> torch.Tensor:
        cache = self.caption_cache
        missing = [c for c in dict.fromkeys(captions) if c not in cache]
        if missing:
            if len(cache) + len(missing) > CAPTION_CACHE_ENTRIES:
                cache.clear()
                missing = list(dict.fromkeys(captions))
            with torch.no_grad():
                enc = self.text.encode(missing).float()
            cache.update(zip(missing, enc))
        return torch.stack([cache[c] for c in captions])

    def training(self, batch: dict, x_img: torch.Tensor, g: torch.Generator) -> tuple[list, dict]:
        """(condition channels, keyword inputs) for one batch, each condition dropped with
        probability cond_drop_prob (class -> the null class, text -> "", map -> all zeros);
        inpainting channels on random masks, never dropped."""
        cc, dev, b = self.cc, self.device, x_img.shape[0]
        p_drop = cc["cond_drop_prob"]
        channels, kw = [], {}
        drop = torch.rand(b, generator=g, device=dev) < p_drop
        if cc["class"]:
            labels = batch["class"].to(dev)
            null_class = len(self.data.class_names)
            kw["class_labels"] = torch.where((labels < 0) | drop, torch.full_like(labels, null_class), labels)
        if cc["text"]:
            drop_text = torch.rand(b, generator=g, device=dev) < p_drop
            kw.update(self.text_inputs(["" if d else c for c, d in zip(batch["caption"], drop_text.tolist())]))
        if cc["mask"] == "semantic":
            oh = one_hot_labels(batch["labels"].to(dev), len(self.data.labels), self.diff_size, self.diff_size)
            drop_map = torch.rand(b, generator=g, device=dev) < p_drop
            channels.append(oh * (~drop_map)[:, None, None, None].float())
        if cc["mask"] == "inpaint":
            size = self.data.size
            m = random_inpaint_masks(b, size, size, g, dev, cc["inpaint_full_prob"])
            masked = x_img * (1 - m)  # diffusion.condition.masked_image
            kept = masked_latents(self.encode_latent, masked, m) if self.vae is not None else masked
            channels += [mask_to_size(m, self.diff_size, self.diff_size), kept]
        return channels, kw

    def text_inputs(self, captions: list[str]) -> dict:
        """Token ids for a text encoder that trains (it runs inside the Denoiser), else cached states."""
        if self.text_trains:
            toks = self.text.tokenize(captions)
            return {"input_ids": toks["input_ids"].to(self.device), "attention_mask": toks["attention_mask"].to(self.device)}
        return {"encoder_hidden_states": self.frozen_text_states(captions)}

    def sampling(self, items: list[dict], text: nn.Module | None) -> dict:
        """numpy conditioning for a sample grid of len(items) images (no dropout): classes in turn,
        the items' captions through `text` (the EMA copy when it trains), their label maps, and a
        centred box to inpaint."""
        cc, dev, n, s = self.cc, self.device, len(items), self.diff_size
        cond: dict = {}
        with torch.no_grad():
            if cc["class"]:
                cond["class_labels"] = np.array([i % len(self.data.class_names) for i in range(n)], np.int64)
            if cc["text"]:
                cond["encoder_hidden_states"] = text.encode([it.get("caption", "") for it in items]).float().cpu().numpy()
            concat = []
            if cc["mask"] == "semantic":
                lab = torch.stack([torch.as_tensor(it["labels"]) for it in items]).to(dev)
                concat.append(one_hot_labels(lab, len(self.data.labels), s, s))
            if cc["mask"] == "inpaint":
                concat += self._centre_box_channels(items)
            if concat:
                cond["concat"] = torch.cat(concat, 1).float().cpu().numpy()
        return cond

    def _centre_box_channels(self, items: list[dict]) -> list:
        x = torch.stack([it["image"] for it in items]).to(self.device)
        n, size = len(items), x.shape[-1]
        m = torch.zeros(n, 1, size, size, device=self.device)
        m[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
        masked = x * (1 - m)
        kept = self.vae.encode(masked).latent_dist.mean * self.scale_factor if self.vae is not None else masked
        return [mask_to_size(m, self.diff_size, self.diff_size), kept]


# ----------------------------------------------------------------------------- trainer


def train(cfg: dict | str | Path, out: str | Path, *, dataset=None, text_encoder=None, resume: bool = False,
          device: str | None = None, progress: bool = True, hooks: dict | None = None, finalize: bool = False) -> Path:
    """Train a pixel or latent diffusion model described by `cfg` into the run folder `out`.

    dataset / text_encoder replace the configured ones (tests, notebooks). hooks["on_batch"](step,
    rank, indices), hooks["on_step"](step, loss) and hooks["on_end"](model, ema) (every process, with
    its own live weights) are called if given; hooks["event"](kind, fields) gets the progress events
    and hooks["should_stop"]() is polled after every step (engine.progress). finalize (with resume):
    write model/ from the checkpoint without training. Returns `out`. VAE configs train with
    engine.vae.train_vae (the `train` command picks by the config's kind).
    """
    from diffusion.schedule import make_schedule

    cfg = load_config(cfg) if not isinstance(cfg, dict) or "training" not in cfg else cfg
    if cfg["kind"] == "vae":
        raise TrainError("a VAE config (kind = 'vae') trains with engine.vae.train_vae")
    hooks, out, tc = hooks or {}, Path(out), cfg["training"]
    acc = make_accelerator(cfg, device)
    dev = acc.device
    state = prepare_run_folder(out, cfg, resume, acc.is_main_process)
    torch.manual_seed(tc["seed"])  # identical initial weights on every rank
    data = describe_data(cfg, dataset)
    nets = build_networks(cfg, data, dev, text_encoder=text_encoder, fresh=state is None)
    model, ema = nets.model, nets.ema
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc["lr"], weight_decay=0.0)
    step = restore_state(state, out / CHECKPOINT, {
        "model": model.load_state_dict, "optimizer": optimizer.load_state_dict,
        "ema": lambda s: ema.load_state_dict(s, state["ema_updates"])})
    model, optimizer = acc.prepare(model, optimizer)
    raw = acc.unwrap_model(model)
    s = cfg["schedule"]
    sched = make_schedule(s["name"], s["T"], s["beta_start"], s["beta_end"], s["cosine_s"])
    conditioner = Conditioner(cfg, data, nets, dev)
    train_step = diffusion_step(cfg, data, conditioner, acc=acc, model=model, raw=raw, ema=ema, optimizer=optimizer,
                                alphas_cumprod=torch.tensor(sched.alphas_cumprod, dtype=torch.float32, device=dev))
    clock = run_clock(state)
    checkpoint = checkpointer(acc, out / CHECKPOINT, tc, kind=cfg["kind"], name=cfg["name"], seconds=clock, parts=lambda: {
        "model": raw.state_dict(), "ema": ema.state_dict(), "ema_updates": ema.num_updates,
        "optimizer": optimizer.state_dict()})
    sample = sample_grid_writer(cfg, conditioner, raw=raw, ema=ema, sched=sched, nets=nets)
    model.train()
    run_loop(acc, tc, out, loader=step_loader(data.dataset, tc, step=step, rank=acc.process_index, world=acc.num_processes,
                                      collate=collate),
             step=step, train_step=train_step, optimizers=(optimizer,), checkpoint=checkpoint, sample=sample,
             bar=progress_bar(acc, progress and not finalize, tc, step, cfg["name"] or cfg["kind"]), hooks=hooks,
             clock=clock, finalize=finalize,
             finish=lambda step: save_final_model(cfg, out, raw=raw, ema=ema, nets=nets, data=data, sched=sched,
                                                  step=step, seconds=clock()))
    acc.wait_for_everyone()
    if "on_end" in hooks:
        hooks["on_end"](raw, ema)
    return out


def diffusion_step(cfg: dict, data: RunData, conditioner: Conditioner, *, acc, model, raw, ema, optimizer,
                   alphas_cumprod: torch.Tensor) -> Callable:
    """train_step(batch, g, step) for engine.loop.run_loop: flips, conditions, x_0, the loss, one
    optimizer step and the EMA update; returns {"loss": loss}."""
    tc = cfg["training"]
    flip = cfg["dataset"]["flip"] and cfg["dataset"]["name"] != "folder"  # folders flip themselves

    def train_step(batch: dict, g: torch.Generator, step: int) -> dict:
        x = batch["image"].to(acc.device)
        flipped = [False] * x.shape[0]
        if x.shape[1] != data.channels:
            raise TrainError(f"data set image has {x.shape[1]} channels, expected {data.channels}")
        if flip:
            x, flipped = random_flips(batch, x, g)
        if cfg["dataset"]["augment"] == "affine":  # pixel models only (config.validate)
            x = random_affine(x, g)
        channels, kw = conditioner.training(batch, x, g)
        x0 = conditioner.x0(x, batch["index"], flipped)
        loss = diffusion_loss(model, x0, alphas_cumprod, g, prediction_type=tc["prediction_type"], channels=channels,
                              autocast=acc.autocast, **kw)
        if not torch.isfinite(loss):
            raise TrainError(f"loss became {loss.item()} at step {step}; lower training.lr or check the data")
        optimizer_step(acc, loss, model, optimizer, tc["grad_clip"])
        ema.update(raw)
        return {"loss": loss}
    return train_step


AFFINE = {"degrees": 8.0, "scale": 0.08, "shift": 0.06}  # dataset.augment = "affine": the largest changes


def random_affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image [B,C,H,W] rotated by up to AFFINE["degrees"], scaled by up to +-AFFINE["scale"] and
    shifted by up to AFFINE["shift"] of its side (bilinear, edges repeated: the background)."""
    b = x.shape[0]
    u = torch.rand(b, 4, generator=g, device=x.device) * 2 - 1
    angle = u[:, 0] * math.radians(AFFINE["degrees"])
    scale = 1 + u[:, 1] * AFFINE["scale"]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, u[:, 2] * 2 * AFFINE["shift"]], 1),
                         torch.stack([sin, cos, u[:, 3] * 2 * AFFINE["shift"]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flips(batch: dict, x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, list]:
    """Mirror each image (and its label map) left-right with probability 1/2; (x, flipped per image)."""
    fl = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
    x = torch.where(fl[:, None, None, None], x.flip(-1), x)
    if "labels" in batch:
        batch["labels"] = torch.where(fl.cpu()[:, None, None], batch["labels"].flip(-1), batch["labels"])
    return x, fl.tolist()


def ema_copy(raw: nn.Module, ema: EMA) -> nn.Module:
    model = copy.deepcopy(raw)
    ema.copy_to(model)
    return model.eval()


def sample_grid_writer(cfg: dict, conditioner: Conditioner, *, raw, ema, sched, nets: Networks) -> Callable[[Path], None]:
    """write(path): a DDIM sample grid with the EMA weights through diffusion.samplers; a failure is a
    warning, never the end of a run."""
    tc, dev = cfg["training"], conditioner.device
    ds = conditioner.data.dataset

    def write(path: Path, n: int = 8) -> None:
        from diffusion.grid import spaced_grid
        from diffusion.samplers import sample_ddim

        from .torch_denoiser import torch_denoiser

        model = ema_copy(raw, ema)
        items = [ds[i % len(ds)] for i in range(n)]
        cond = conditioner.sampling(items, model.text if nets.text_trains else nets.text)
        base = torch_denoiser(model.unet, dev)
        shape = (n, nets.diff_channels, nets.diff_size, nets.diff_size)
        x_T = np.random.default_rng(tc["seed"]).standard_normal(shape).astype(np.float32)
        x0 = sample_ddim(lambda x, t: base(x, t, **cond), x_T, spaced_grid(sched, steps=tc["sample_steps"]),
                         prediction_type=tc["prediction_type"])
        x0 = np.asarray(x0, np.float32)
        if nets.vae is not None:
            with torch.no_grad():
                x0 = nets.vae.decode(torch.from_numpy(x0).to(dev) / nets.scale_factor).sample.float().cpu().numpy()
        save_png_grid(path, x0, cols=4)  # 8 samples as 4 x 2: fits a preview pane

    def safe_write(path: Path) -> None:
        try:
            write(path)
        except Exception as exc:  # a preview must never end a run
            print(f"warning: sample grid {path} not written: {type(exc).__name__}: {exc}")

    return safe_write


def save_final_model(cfg: dict, out: Path, *, raw, ema, nets: Networks, data: RunData, sched, step: int,
                     seconds: float) -> Path:
    """model/ through engine.loaded.save_model, with the EMA weights."""
    from .loaded import LoadedModel, save_model

    model = ema_copy(raw, ema)
    cc, tc = cfg["conditioning"], cfg["training"]
    mask = None
    if cc["mask"] == "inpaint":
        mask = {"kind": "inpaint"}
    elif cc["mask"] == "semantic":
        mask = {"kind": "semantic", "labels": data.labels}
    vae = nets.vae
    loaded = LoadedModel(
        kind=cfg["kind"], unet=model.unet.cpu(), vae=vae.cpu() if vae is not None else None,
        scale_factor=float(nets.scale_factor), text_encoder=(model.text if nets.text_trains else nets.text),
        class_names=list(data.class_names) or None, mask=mask, schedule=sched.to_dict(),
        prediction_type=tc["prediction_type"], image_size=data.size, image_channels=data.channels,
        defaults={**cfg["defaults"], "guidance": cfg["defaults"]["guidance"]
                  or fallback_guidance(bool(cc["class"] or cc["text"] or cc["mask"] == "semantic"))},
        provenance=run_provenance(cfg, out, step=step, seconds=seconds),
    )
    save_model(loaded, out / "model")
    return out / "model"


def run_provenance(cfg: dict, out: Path, *, step: int, seconds: float) -> dict:
    """Where a model came from: the command, the data, steps, seconds, the machine, the final loss."""
    metrics = {}
    mpath = out / "metrics.jsonl"
    if mpath.is_file():
        lines = [json.loads(l) for l in mpath.read_text().splitlines() if l.strip()]
        if lines:
            metrics = {"final_loss": lines[-1]["loss"]}
    d = cfg["dataset"]
    return {"source": f"diffusion-studio train {cfg['name']}", "data": d["name"] + (f":{d['path']}" if d["path"] else ""),
            "steps": step, "train_seconds": round(seconds, 1), "machine": machine_name(), "metrics": metrics,
            "rebuild": rebuild_command(cfg, out.name)}
