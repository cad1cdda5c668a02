"""The DDPM / LDM trainer (DESIGN.md §1, Algorithm 1), readable top to bottom.

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
import io
import json
import math
import os
import platform
import signal
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import atomic_write_bytes, atomic_write_text, load_checkpoint
from .config import dump_toml, load_config
from .ema import EMA
from .loop import (StepBookkeeping, checkpointer, optimizer_step, progress_bar, restore_state, run_clock, set_lr,
                   step_loader)
from .models import build_unet, unet_forward

CHECKPOINT = Path("checkpoints") / "last.safetensors"
# Frozen text encoders: token states of up to this many captions stay cached (32 tokens x 384
# floats: about 1 GB, a whole 20,000-caption data set, so after one epoch no caption is re-encoded).
CAPTION_CACHE_ENTRIES = 20_000


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message names the file or field."""


# ----------------------------------------------------------------------------- data


def make_dataset(cfg: dict):
    """The configured data set (engine.data): a folder of images or a generated set."""
    d = cfg["dataset"]
    if d["name"] == "folder":
        from .data.folder import ImageFolderDataset

        return ImageFolderDataset(d["path"], size=d["size"], crop="random" if d["flip"] else "center", flip=d["flip"], channels=1 if d["grayscale"] else 3)
    from .data.generated import GeneratedDataset

    ds = GeneratedDataset(d["name"], count=d["count"], seed=d["seed"], size=d["size"], channels=1 if d["grayscale"] else 3)
    ds.prefill()  # all cores now, instead of one scene at a time inside the training loop
    return ds


def dataset_class_names(ds) -> list[str]:
    return list(getattr(ds, "classes", None) or [])


def dataset_label_spec(ds) -> list[dict]:
    """[{"name", "color"}] of the label maps (generated sets: `.labels`; folders: dataset.json)."""
    labels = getattr(ds, "labels", None)
    if labels is None:
        info = getattr(ds, "info", None) or {}
        labels = info.get("labels")
    out = []
    for entry in labels or []:
        if isinstance(entry, dict):
            out.append({"name": str(entry["name"]), "color": list(entry.get("color", [0, 0, 0]))})
        elif isinstance(entry, (list, tuple)):
            out.append({"name": str(entry[0]), "color": [int(c) for c in entry[1]]})
        else:
            out.append({"name": str(entry), "color": [0, 0, 0]})
    return out


def collate(items: list[dict]) -> dict:
    out = {"image": torch.stack([it["image"] for it in items]),
           "class": torch.tensor([int(it.get("class", -1)) for it in items], dtype=torch.int64),
           "caption": [str(it.get("caption", "")) for it in items]}
    if all("index" in it for it in items):  # the loader's items say which data set index they are
        out["index"] = [int(it["index"]) for it in items]
    if all("labels" in it for it in items):  # semantic maps; inpainting masks are drawn per step (random_inpaint_masks)
        out["labels"] = torch.stack([torch.as_tensor(it["labels"]) for it in items])
    return out


def step_generator(seed: int, rank: int, step: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, rank, step, 7]).generate_state(1)[0]))
    return g


def lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up from lr/warmup to lr over `warmup` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


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
    """Load the U-Net weights of a trained run (its model/ folder's EMA weights) or model folder
    into `unet` (fine-tuning); the architecture must match."""
    from safetensors.torch import load_file

    path = Path(path)
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


def load_vae(path: str | Path):
    """(AutoencoderKL, scale_factor) from a VAE run folder, its model/ folder or model/vae itself."""
    from diffusers import AutoencoderKL

    path = Path(path)
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


# ----------------------------------------------------------------------------- run folder helpers


def save_png_grid(path: Path, images: np.ndarray, cols: int = 8) -> None:
    """images [N,C,H,W] in [-1,1] -> one PNG grid, written atomically."""
    from PIL import Image

    x = ((np.clip(images, -1, 1) + 1) * 127.5).round().astype(np.uint8)
    n, c, h, w = x.shape
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * h, cols * w, c), np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        grid[r * h:(r + 1) * h, k * w:(k + 1) * w] = x[i].transpose(1, 2, 0)
    im = Image.fromarray(grid[:, :, 0] if c == 1 else grid)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines from steps after the checkpoint (they will be redone)."""
    if path.is_file():
        keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= step]
        atomic_write_text(path, "".join(l + "\n" for l in keep))


def append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def machine_name() -> str:
    """The machine a run trained on, for provenance: OS, CPU cores, and the GPU when there is one."""
    name = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    if torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}"
    return name


def loop_events(acc, hooks: dict, tc: dict, step: int, clock):
    """hooks["event"] on the main process (a no-op elsewhere), after reporting the loop's "start"."""
    from .progress import describe_device, no_event

    emit = hooks.get("event", no_event) if acc.is_main_process else no_event
    device, device_name = describe_device(acc.device)
    emit("start", {"step": step, "steps": tc["steps"], "max_seconds": tc["max_seconds"], "train_seconds": round(clock(), 3),
                   "device": device, "device_name": device_name, "batch": tc["batch"] * acc.num_processes})
    return emit


def end_reason(stopped: bool, finalize: bool, books) -> str:
    """How a training loop ended, for the "end" event: paused | finalized | time_up | done."""
    if stopped:
        return "paused"
    if finalize:
        return "finalized"
    return "time_up" if books.ended == "time_up" else "done"


@contextmanager
def interrupt_flag():
    """SIGINT sets flag['stop'] (the step finishes, a checkpoint is written, the run exits cleanly)."""
    flag = {"stop": False}

    def handler(signum, frame):
        if flag["stop"]:  # a second Ctrl+C: stop now
            raise KeyboardInterrupt
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler
        previous = None
    try:
        yield flag
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def make_accelerator(cfg: dict, device: str | None):
    from accelerate import Accelerator

    cpu = device == "cpu" or not torch.cuda.is_available()
    mp = cfg["training"]["mixed_precision"]
    if mp == "auto":
        mp = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    if cpu:
        mp = "no"
    return Accelerator(cpu=cpu, mixed_precision=mp)


def prepare_run_folder(out: Path, cfg: dict, resume: bool, is_main: bool) -> dict | None:
    """Creates the folder; returns the checkpoint state when resuming, refuses to overwrite a run."""
    ckpt = out / CHECKPOINT
    state = None
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
    elif ckpt.is_file():
        raise TrainError(f"{out} already holds a run ({ckpt}); pass --resume to continue it or choose another --out")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.toml", dump_toml(cfg))
        if state is None:
            (out / "metrics.jsonl").unlink(missing_ok=True)
        else:
            trim_metrics(out / "metrics.jsonl", int(state["step"]))
    return state


# ----------------------------------------------------------------------------- trainer


def train(cfg: dict | str | Path, out: str | Path, *, dataset=None, text_encoder=None, resume: bool = False,
          device: str | None = None, progress: bool = True, hooks: dict | None = None, finalize: bool = False) -> Path:
    """Train a pixel or latent diffusion model described by `cfg` into the run folder `out`.

    dataset / text_encoder replace the configured ones (tests, notebooks). hooks["on_batch"](step,
    rank, indices), hooks["on_step"](step, loss) and hooks["on_end"](model, ema) (every process, with
    its own live weights) are called if given; hooks["event"](kind, fields) gets the progress events
    and hooks["should_stop"]() is polled after every step (engine.progress). finalize (with resume):
    write model/ from the checkpoint without training. Returns `out`.
    """
    cfg = load_config(cfg) if not isinstance(cfg, dict) or "training" not in cfg else cfg
    if cfg["kind"] == "vae":
        from .vae import train_vae

        return train_vae(cfg, out, dataset=dataset, resume=resume, device=device, progress=progress, hooks=hooks,
                         finalize=finalize)
    from diffusion.schedule import make_schedule

    from .loaded import vae_downscale

    hooks = hooks or {}
    out = Path(out)
    tc, cc = cfg["training"], cfg["conditioning"]
    acc = make_accelerator(cfg, device)
    dev, rank, world = acc.device, acc.process_index, acc.num_processes
    state = prepare_run_folder(out, cfg, resume, acc.is_main_process)
    torch.manual_seed(tc["seed"])  # identical initial weights on every rank

    ds = dataset if dataset is not None else make_dataset(cfg)
    first = ds[0]
    channels = int(first["image"].shape[0])
    size = int(first["image"].shape[-1])
    class_names = dataset_class_names(ds) if cc["class"] else []
    if cc["class"] and not class_names:
        raise TrainError("conditioning.class = true but the data set has no classes (sub-folders or a generated set)")
    labels_spec = dataset_label_spec(ds) if cc["mask"] == "semantic" else []
    if cc["mask"] == "semantic" and not labels_spec:
        raise TrainError("conditioning.mask = 'semantic' but the data set names no labels (dataset.json 'labels')")

    vae, scale_factor = None, 1.0
    diff_channels, diff_size = channels, size
    if cfg["kind"] == "latent":
        vae, scale_factor = load_vae(cfg["vae"])
        vae.requires_grad_(False).eval().to(dev)
        diff_channels = int(vae.config.latent_channels)
        diff_size = size // vae_downscale(vae.config)

    text = None
    if cc["text"]:
        if text_encoder is None:
            from .text import load_text_encoder

            text_encoder = load_text_encoder(cc["text"])
        text = text_encoder
    text_trains = text is not None and any(p.requires_grad for p in text.parameters()) and not getattr(text, "frozen", False)

    unet = build_unet(cfg, sample_size=diff_size, channels=diff_channels, num_classes=len(class_names),
                      num_labels=len(labels_spec), text_dim=int(text.dim) if text is not None else 0)
    if tc["init"] and state is None:
        init_unet(unet, tc["init"])
    model = Denoiser(unet, text if text_trains else None)
    if text is not None and not text_trains:
        text.requires_grad_(False).eval().to(dev)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=tc["lr"], weight_decay=0.0)
    ema = EMA(model, tc["ema_decay"])

    step = restore_state(state, out / CHECKPOINT, {
        "model": model.load_state_dict, "optimizer": optimizer.load_state_dict,
        "ema": lambda s: ema.load_state_dict(s, state["ema_updates"])})
    model, optimizer = acc.prepare(model, optimizer)
    raw = acc.unwrap_model(model)

    sched = make_schedule(cfg["schedule"]["name"], cfg["schedule"]["T"], cfg["schedule"]["beta_start"],
                          cfg["schedule"]["beta_end"], cfg["schedule"]["cosine_s"])
    alphas_cumprod = torch.tensor(sched.alphas_cumprod, dtype=torch.float32, device=dev)
    T = len(alphas_cumprod)
    null_class = len(class_names)
    p_drop = cc["cond_drop_prob"]
    caption_cache: dict[str, torch.Tensor] = {}

    def frozen_text_states(captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in caption_cache]
        if missing:
            if len(caption_cache) + len(missing) > CAPTION_CACHE_ENTRIES:
                caption_cache.clear()
                missing = list(dict.fromkeys(captions))
            with torch.no_grad():
                enc = text.encode(missing).float()
            caption_cache.update(zip(missing, enc))
        return torch.stack([caption_cache[c] for c in captions])

    def encode_latent(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return vae.encode(x).latent_dist.mean * scale_factor

    # The VAE is frozen and a generated data set is the same image for the same index, so each
    # (index, flipped) latent is encoded once (a folder data set augments itself: no cache).
    latent_cache: dict | None = {} if vae is not None and cfg["dataset"]["name"] != "folder" else None

    def conditions(batch: dict, x_img: torch.Tensor, g: torch.Generator) -> tuple[list[torch.Tensor], dict]:
        """Condition channels and keyword inputs for one batch, with CFG dropout."""
        b = x_img.shape[0]
        channels_in, kw = [], {}
        drop = torch.rand(b, generator=g, device=dev) < p_drop
        if cc["class"]:
            labels = batch["class"].to(dev)
            labels = torch.where((labels < 0) | drop, torch.full_like(labels, null_class), labels)
            kw["class_labels"] = labels
        if cc["text"]:
            drop_text = torch.rand(b, generator=g, device=dev) < p_drop
            captions = ["" if d else c for c, d in zip(batch["caption"], drop_text.tolist())]
            if text_trains:
                toks = text.tokenize(captions)
                kw["input_ids"], kw["attention_mask"] = toks["input_ids"].to(dev), toks["attention_mask"].to(dev)
            else:
                kw["encoder_hidden_states"] = frozen_text_states(captions)
        if cc["mask"] == "semantic":
            oh = one_hot_labels(batch["labels"].to(dev), len(labels_spec), diff_size, diff_size)
            drop_map = torch.rand(b, generator=g, device=dev) < p_drop
            channels_in.append(oh * (~drop_map)[:, None, None, None].float())
        if cc["mask"] == "inpaint":
            m = random_inpaint_masks(b, size, size, g, dev, cc["inpaint_full_prob"])
            masked = x_img * (1 - m)  # diffusion.condition.masked_image
            channels_in += [mask_to_size(m, diff_size, diff_size), masked_latents(encode_latent, masked, m) if vae is not None else masked]
        return channels_in, kw

    flip = cfg["dataset"]["flip"] and cfg["dataset"]["name"] != "folder"  # folders flip themselves
    loader = step_loader(ds, {**tc, "steps": step} if finalize else tc, step, rank, world, collate)
    bar = progress_bar(acc, progress and not finalize, tc, step, cfg["name"] or cfg["kind"])
    clock = run_clock(state)
    emit = loop_events(acc, hooks, tc, step, clock)
    checkpoint = checkpointer(acc, out / CHECKPOINT, tc, cfg["kind"], cfg["name"], lambda: step, lambda: {
        "model": raw.state_dict(), "ema": ema.state_dict(), "ema_updates": ema.num_updates,
        "optimizer": optimizer.state_dict()}, clock, emit)

    sample_fn = _make_sampler(cfg, raw, ema, vae, scale_factor, text, text_trains, class_names, labels_spec,
                              ds, sched, diff_channels, diff_size, dev)
    t_start, stopped = time.time(), False
    model.train()
    with interrupt_flag() as flag:
        books = StepBookkeeping(acc, tc, out, flag=flag, checkpoint=checkpoint, sample=sample_fn,
                                append_metrics=append_metrics, bar=bar, t_start=t_start, clock=clock, emit=emit,
                                should_stop=hooks.get("should_stop", lambda: False))
        for batch in loader:
            g = step_generator(tc["seed"], rank, step, dev)
            indices = batch["index"]
            if "on_batch" in hooks:
                hooks["on_batch"](step, rank, indices)
            x = batch["image"].to(dev)
            flipped = [False] * x.shape[0]
            if x.shape[1] != channels:
                raise TrainError(f"data set image has {x.shape[1]} channels, expected {channels}")
            if flip:
                fl = torch.rand(x.shape[0], generator=g, device=dev) < 0.5
                x = torch.where(fl[:, None, None, None], x.flip(-1), x)
                flipped = fl.tolist()
                if "labels" in batch:
                    batch["labels"] = torch.where(fl.cpu()[:, None, None], batch["labels"].flip(-1), batch["labels"])
            cond_channels, kw = conditions(batch, x, g)
            if vae is None:
                x0 = x
            elif latent_cache is None:
                x0 = encode_latent(x)
            else:
                x0 = cached_latents(latent_cache, encode_latent, x, list(zip(indices, flipped)))
            t = torch.randint(0, T, (x0.shape[0],), generator=g, device=dev)
            eps = torch.randn(x0.shape, generator=g, device=dev)
            abar = alphas_cumprod[t].view(-1, 1, 1, 1)
            x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * eps  # q_sample
            target = eps if tc["prediction_type"] == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
            lr = lr_at(step, tc["lr"], tc["warmup"])
            set_lr(lr, optimizer)
            with acc.autocast():
                pred = model(torch.cat([x_t, *cond_channels], dim=1), t, **kw)
            loss = F.mse_loss(pred.float(), target)
            if not torch.isfinite(loss):
                raise TrainError(f"loss became {loss.item()} at step {step}; lower training.lr or check the data")
            optimizer_step(acc, loss, model, optimizer, tc["grad_clip"])
            ema.update(raw)
            step += 1
            if "on_step" in hooks:
                hooks["on_step"](step, float(loss))
            ended = books.after_step(step, lr, {"loss": loss})
            if ended:
                stopped = ended == "interrupted"
                break
    if bar is not None:
        bar.close()
    checkpoint("interrupted" if stopped else "end")
    if not stopped and acc.is_main_process:
        save_final_model(cfg, out, raw, ema, vae, scale_factor, text, text_trains, class_names, labels_spec,
                         sched, diff_size, channels, size, step, clock(), ds)
    acc.wait_for_everyone()
    emit("end", {"step": step, "train_seconds": round(clock(), 3), "reason": end_reason(stopped, finalize, books),
                 "model": None if stopped else str(out / "model")})
    if "on_end" in hooks:
        hooks["on_end"](raw, ema)
    return out


def ema_copy(raw: nn.Module, ema: EMA) -> nn.Module:
    model = copy.deepcopy(raw)
    ema.copy_to(model)
    return model.eval()


def _make_sampler(cfg, raw, ema, vae, scale_factor, text, text_trains, class_names, labels_spec, ds, sched,
                  diff_channels, diff_size, dev):
    """A function writing a DDIM sample grid (EMA weights) through diffusion.samplers."""
    cc, tc = cfg["conditioning"], cfg["training"]

    def write(path: Path, n: int = 8) -> None:
        from diffusion.samplers import sample_ddim

        from .torch_denoiser import torch_denoiser

        model = ema_copy(raw, ema)
        items = [ds[i % len(ds)] for i in range(n)]
        cond: dict = {}
        with torch.no_grad():
            if cc["class"]:
                cond["class_labels"] = np.array([i % len(class_names) for i in range(n)], np.int64)
            if cc["text"]:
                enc = model.text if text_trains else text
                cond["encoder_hidden_states"] = enc.encode([it.get("caption", "") for it in items]).float().cpu().numpy()
            concat = []
            if cc["mask"] == "semantic":
                lab = torch.stack([torch.as_tensor(it["labels"]) for it in items]).to(dev)
                concat.append(one_hot_labels(lab, len(labels_spec), diff_size, diff_size))
            if cc["mask"] == "inpaint":
                x = torch.stack([it["image"] for it in items]).to(dev)
                size = x.shape[-1]
                m = torch.zeros(n, 1, size, size, device=dev)
                m[:, :, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
                masked = x * (1 - m)
                concat += [mask_to_size(m, diff_size, diff_size),
                           vae.encode(masked).latent_dist.mean * scale_factor if vae is not None else masked]
            if concat:
                cond["concat"] = torch.cat(concat, 1).float().cpu().numpy()
        base = torch_denoiser(model.unet, dev)
        x_T = np.random.default_rng(tc["seed"]).standard_normal((n, diff_channels, diff_size, diff_size)).astype(np.float32)
        x0 = sample_ddim(lambda x, t: base(x, t, **cond), x_T, sched, steps=tc["sample_steps"],
                         prediction_type=tc["prediction_type"])
        x0 = np.asarray(x0, np.float32)
        if vae is not None:
            with torch.no_grad():
                x0 = vae.decode(torch.from_numpy(x0).to(dev) / scale_factor).sample.float().cpu().numpy()
        save_png_grid(path, x0, cols=4)  # 8 samples as 4 x 2: fits a preview pane

    def safe_write(path: Path) -> None:
        try:
            write(path)
        except Exception as exc:  # a preview must never end a run
            print(f"warning: sample grid {path} not written: {type(exc).__name__}: {exc}")

    return safe_write


def save_final_model(cfg, out, raw, ema, vae, scale_factor, text, text_trains, class_names, labels_spec, sched,
                     diff_size, channels, size, step, seconds, ds) -> Path:
    """model/ through engine.loaded.save_model, with the EMA weights."""
    from .loaded import LoadedModel, save_model

    model = ema_copy(raw, ema)
    cc, tc = cfg["conditioning"], cfg["training"]
    mask = None
    if cc["mask"] == "inpaint":
        mask = {"kind": "inpaint"}
    elif cc["mask"] == "semantic":
        mask = {"kind": "semantic", "labels": labels_spec}
    metrics = {}
    mpath = out / "metrics.jsonl"
    if mpath.is_file():
        lines = [json.loads(l) for l in mpath.read_text().splitlines() if l.strip()]
        if lines:
            metrics = {"final_loss": lines[-1]["loss"]}
    loaded = LoadedModel(
        kind=cfg["kind"], unet=model.unet.cpu(), vae=vae.cpu() if vae is not None else None, scale_factor=float(scale_factor),
        text_encoder=(model.text if text_trains else text), class_names=list(class_names) or None, mask=mask,
        schedule=sched.to_dict(), prediction_type=tc["prediction_type"], image_size=size, image_channels=channels,
        defaults={**cfg["defaults"], "guidance": cfg["defaults"]["guidance"]
                  or (3.0 if (cc["class"] or cc["text"] or cc["mask"] == "semantic") else 1.0)},
        provenance={"source": f"diffusion-studio train {cfg['name']}", "data": cfg["dataset"]["name"] + (f":{cfg['dataset']['path']}" if cfg["dataset"]["path"] else ""),
                    "steps": step, "train_seconds": round(seconds, 1), "machine": machine_name(), "metrics": metrics,
                    "rebuild": f"diffusion-studio train {cfg['name'] or 'config.toml'} --out {out.name}"},
    )
    save_model(loaded, out / "model")
    return out / "model"
