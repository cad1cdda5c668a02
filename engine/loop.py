"""What the VAE and the diffusion trainers share around their own step.

- The run: the accelerator (`make_accelerator`), the run folder (`prepare_run_folder`: config.toml,
  resume or refuse to overwrite), Ctrl+C (`interrupt_flag`), the machine's name for provenance.
- The data: the configured data set (`make_dataset`), batches (`collate`), the data order
  (`batch_indices`, a pure function of seed and step; see engine.train) and `step_loader`.
- Each step's randomness (`step_generator`, seeded by seed, rank and step) and learning rate
  (`lr_at`, a pure function of the step), so a resumed run repeats the straight run exactly.
- Resuming from a checkpoint (`restore_state`) and writing one (`checkpointer`).
- The loop itself (`run_loop`): the trainer gives one function for its optimizer step; the loop
  does the bookkeeping after each step (`StepBookkeeping`): metrics (gathered across processes) to
  metrics.jsonl and the progress bar, Ctrl+C and the time budget (agreed across processes),
  periodic checkpoints and sample grids, and the final checkpoint.

Hook points (for callers and tools that watch a run): `hooks["on_batch"](step, rank, indices)`
before a step, `hooks["on_step"](step, loss)` after it, and every metrics record goes through
`StepBookkeeping.append_metrics(path, record)` (one JSON line per logged step). The progress
protocol (docs/TRAINING.md): `hooks["event"](kind, fields)` gets "start", "step", "sample",
"checkpoint" and "end" on the main process, and `hooks["should_stop"]()` is polled after every step
(True stops the run like Ctrl+C).
"""
from __future__ import annotations

import io
import json
import math
import os
import platform
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from desktop.runtime import fileio

from .checkpoint import CheckpointError, capture_rng, load_checkpoint, \
    restore_rng, save_checkpoint
from .config import dump_toml

CHECKPOINT = Path("checkpoints") / "last.safetensors"


class TrainError(RuntimeError):
    """A run that cannot start or continue; the message names the file or field."""


# ----------------------------------------------------------------------------- the run


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
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out} is a file, not a folder; choose a folder for the run")
    state = None
    if resume and ckpt.is_file():
        state = load_checkpoint(ckpt)
    elif ckpt.is_file():
        raise TrainError(f"{out} already holds a run ({ckpt}); pass --resume to continue it or choose another --out")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        fileio.write_text(out / "config.toml", dump_toml(cfg))
        if state is None:
            (out / "metrics.jsonl").unlink(missing_ok=True)
        else:
            trim_metrics(out / "metrics.jsonl", int(state["step"]))
    return state


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


def machine_name() -> str:
    """The machine a run trained on, for provenance: OS, CPU cores, and the GPU when there is one."""
    name = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores"
    if torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}, torch {torch.__version__}"
    return name


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


def batch_indices(n: int, batch: int, step: int, seed: int, *, rank: int = 0, world: int = 1) -> list[int]:
    """Indices for process `rank` at global `step`: slice of the stream perm(seed,0) ++ perm(seed,1) ++ ..."""
    start = (step * world + rank) * batch
    out, epoch_cache = [], {}
    for pos in range(start, start + batch):
        epoch = pos // n
        if epoch not in epoch_cache:
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
            epoch_cache[epoch] = torch.randperm(n, generator=g)
        out.append(int(epoch_cache[epoch][pos % n]))
    return out


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields batch_indices(...) for steps start..steps-1 (a DataLoader batch_sampler)."""

    def __init__(self, n: int, batch: int, *, start: int, steps: int, seed: int, rank: int, world: int):
        self.args = (n, batch, seed, rank, world)
        self.start, self.steps = start, steps

    def __len__(self):
        return max(0, self.steps - self.start)

    def __iter__(self):
        n, batch, seed, rank, world = self.args
        for step in range(self.start, self.steps):
            yield batch_indices(n, batch, step, seed, rank=rank, world=world)


class _Indexed(torch.utils.data.Dataset):
    """The data set's items with their "index" added, so a batch says which items it holds."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return {**self.ds[i], "index": i}


def step_loader(ds, tc: dict, *, step: int, rank: int, world: int, collate) -> torch.utils.data.DataLoader:
    """The batches of steps step..tc["steps"]-1 for process `rank` (`batch_indices`); each item
    carries its "index" for `collate`."""
    sampler = StepBatchSampler(len(ds), tc["batch"], start=step, steps=tc["steps"], seed=tc["seed"], rank=rank, world=world)
    return torch.utils.data.DataLoader(_Indexed(ds), batch_sampler=sampler, num_workers=tc["num_workers"],
                                       collate_fn=collate)


def restore_state(state: dict | None, path: Path, loaders: dict[str, Callable[[dict], object]]) -> int:
    """Resume: loaders[key](state[key]) for each part and the RNG states; returns the step (0 for a
    new run). A checkpoint that does not fit the model raises CheckpointError naming `path`."""
    if state is None:
        return 0
    try:
        for key, load in loaders.items():
            load(state[key])
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not match this config ({exc})") from exc
    restore_rng(state["rng"])
    return int(state["step"])


def run_clock(state: dict | None) -> Callable[[], float]:
    """Seconds this run has trained: its earlier sessions (the checkpoint's "train_seconds") plus this one."""
    before, start = float(state.get("train_seconds", 0.0)) if state is not None else 0.0, time.time()
    return lambda: before + time.time() - start


def checkpointer(acc, path: Path, tc: dict, *, kind: str, name: str, parts: Callable[[], dict],
                 seconds: Callable[[], float]) -> Callable[[str, int], None]:
    """checkpoint(reason, step): the main process writes parts() + step, RNG, LR state and the run's
    training seconds to `path` (atomically); every process waits for it."""
    def checkpoint(reason: str, s: int) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_checkpoint(path, {**parts(), "step": s, "rng": capture_rng(), "train_seconds": seconds(),
                                   "lr_scheduler": {"kind": "linear_warmup", "warmup": tc["warmup"], "last_step": s}},
                            summary={"step": s, "reason": reason, "time": time.time(), "kind": kind, "config": name,
                                     "train_seconds": round(seconds(), 1)})
        acc.wait_for_everyone()
    return checkpoint


def set_lr(lr: float, *optimizers) -> None:
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = lr


def optimizer_step(acc, loss: torch.Tensor, model, optimizer, grad_clip: float) -> None:
    """Backward through Accelerate, clip the gradient norm (grad_clip > 0), step, clear the gradients."""
    acc.backward(loss)
    if grad_clip > 0:
        acc.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@dataclass
class StepBookkeeping:
    acc: object                      # accelerate.Accelerator
    tc: dict                         # the config's [training] section
    out: Path                        # the run folder
    flag: dict                       # {"stop": bool}, set by the SIGINT handler
    checkpoint: Callable[[str, int], None]
    sample: Callable[[Path], None]
    append_metrics: Callable[[Path, dict], None]
    bar: object = None               # tqdm or None
    t_start: float = field(default_factory=time.time)
    t_last: float = field(default_factory=time.time)
    steps_since: int = 0
    clock: Callable[[], float] | None = None     # the run's training seconds over all sessions (run_clock)
    emit: Callable[[str, dict], None] = field(default=lambda kind, fields=None: None)  # progress events
    should_stop: Callable[[], bool] = lambda: False   # e.g. the app's pause request (engine.progress)
    ended: str = ""                  # "interrupted" | "time_up" once after_step said to stop

    @property
    def world(self) -> int:
        return self.acc.num_processes

    def seconds(self) -> float:
        return self.clock() if self.clock is not None else time.time() - self.t_start

    def after_step(self, step: int, lr: float, losses: dict[str, torch.Tensor]) -> str | None:
        """Returns None to go on, "interrupted" (Ctrl+C, should_stop) or "time_up" (training.max_seconds
        of training over all sessions) to stop."""
        tc, acc = self.tc, self.acc
        self.steps_since += 1
        record = None
        if tc["log_every"] and (step % tc["log_every"] == 0 or step == tc["steps"]):
            names = list(losses)
            values = acc.gather(torch.stack([losses[k].detach().float() for k in names]).reshape(1, -1)).mean(0)
            now = time.time()
            ips = self.steps_since * tc["batch"] * self.world / max(now - self.t_last, 1e-9)
            self.t_last, self.steps_since = now, 0
            record = {"step": step, **{k: float(v) for k, v in zip(names, values)}, "lr": lr, "images_per_s": ips}
            if acc.is_main_process:
                self.append_metrics(self.out / "metrics.jsonl", record)
            if self.bar is not None:
                self.bar.set_postfix({**{k: f"{float(v):.4f}" for k, v in zip(names, values)}, "img_s": f"{ips:.1f}"})
        if self.bar is not None:
            self.bar.update(1)
        self.emit("step", {"step": step, "steps": tc["steps"], "train_seconds": round(self.seconds(), 3),
                           **({k: v for k, v in record.items() if k != "step"} if record else {})})
        stop = self.flag["stop"] or self.should_stop()
        time_up = bool(tc["max_seconds"]) and self.seconds() >= tc["max_seconds"]
        if self.world > 1:
            flags = acc.reduce(torch.tensor([float(stop), float(time_up)], device=acc.device), "max")
            stop, time_up = bool(flags[0].item()), bool(flags[1].item())
        if stop:
            self.ended = "interrupted"
        elif time_up:  # a time budget ends the run like its last step: the final model is written
            self.ended = "time_up"
        if self.ended:
            return self.ended
        if tc["checkpoint_every"] and step % tc["checkpoint_every"] == 0 and step < tc["steps"]:
            self.checkpoint("periodic", step)
            self.emit("checkpoint", {"step": step, "path": str(self.out / CHECKPOINT), "reason": "periodic"})
        if tc["sample_every"] and step % tc["sample_every"] == 0 and acc.is_main_process:
            path = self.out / "samples" / f"step_{step:06d}.png"
            self.sample(path)
            if path.is_file():
                self.emit("sample", {"step": step, "path": str(path)})
        return None


def run_loop(acc, tc: dict, out: Path, *, loader, step: int, train_step: Callable, optimizers: tuple,
             checkpoint: Callable[[str, int], None], sample: Callable[[Path], None], bar=None,
             hooks: dict | None = None, hook_loss: str = "loss", clock: Callable[[], float] | None = None,
             finish: Callable[[int], Path] | None = None, finalize: bool = False) -> tuple[int, bool]:
    """The loop both trainers run, from `step` until the loader ends, Ctrl+C, a stop request or the
    time budget.

    Each step: the step's generator and learning rate, then `train_step(batch, g, step)` (the
    trainer's forward, backward and optimizer step) returns its losses {name: tensor}; then the
    hooks and the bookkeeping. Ends with the final checkpoint ("end" or "interrupted") and, unless
    stopped, `finish(step)` on the main process (the trainer's final model; finalize=True goes there
    at once, without a step). Progress events go to hooks["event"] (engine.progress), stop requests
    come from hooks["should_stop"]. Returns (the step reached, whether it was stopped).
    """
    hooks = hooks or {}
    rank, dev = acc.process_index, acc.device
    emit = loop_events(acc, hooks, tc, step, clock)
    stopped = False
    with interrupt_flag() as flag:
        books = StepBookkeeping(acc, tc, out, flag=flag, checkpoint=checkpoint, sample=sample,
                                append_metrics=append_metrics, bar=bar, t_start=time.time(), clock=clock, emit=emit,
                                should_stop=hooks.get("should_stop", lambda: False))
        for batch in ([] if finalize else loader):
            g = step_generator(tc["seed"], rank, step, dev)
            if "on_batch" in hooks:
                hooks["on_batch"](step, rank, batch["index"])
            lr = lr_at(step, tc["lr"], tc["warmup"])
            set_lr(lr, *optimizers)
            losses = train_step(batch, g, step)
            step += 1
            if "on_step" in hooks:
                hooks["on_step"](step, float(losses[hook_loss]))
            ended = books.after_step(step, lr, losses)
            if ended:
                stopped = ended == "interrupted"
                break
    if bar is not None:
        bar.close()
    checkpoint("interrupted" if stopped else "end", step)
    emit("checkpoint", {"step": step, "path": str(out / CHECKPOINT), "reason": "interrupted" if stopped else "end"})
    model = finish(step) if finish is not None and not stopped and acc.is_main_process else None
    reason = "paused" if stopped else "finalized" if finalize else "time_up" if books.ended == "time_up" else "done"
    emit("end", {"step": step, "train_seconds": round(books.seconds(), 3), "reason": reason,
                 "model": str(model) if model is not None else None})
    return step, stopped


def loop_events(acc, hooks: dict, tc: dict, step: int, clock) -> Callable[[str, dict], None]:
    """hooks["event"] on the main process (a no-op elsewhere), after reporting the loop's "start"."""
    from .progress import describe_device, no_event

    emit = hooks.get("event", no_event) if acc.is_main_process else no_event
    device, device_name = describe_device(acc.device)
    emit("start", {"step": step, "steps": tc["steps"], "max_seconds": tc["max_seconds"],
                   "train_seconds": round(clock(), 3) if clock is not None else 0.0, "device": device,
                   "device_name": device_name, "batch": tc["batch"] * acc.num_processes})
    return emit


def progress_bar(acc, enabled: bool, tc: dict, step: int, name: str):
    """A tqdm bar on the main process (None elsewhere or when disabled), resuming at `step`."""
    if not (enabled and acc.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=tc["steps"], initial=step, desc=f"train {name}", unit="step", dynamic_ncols=True)


# ----------------------------------------------------------------------------- per step


def step_generator(seed: int, rank: int, step: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, rank, step, 7]).generate_state(1)[0]))
    return g


def lr_at(step: int, lr: float, warmup: int) -> float:
    """Linear warm-up from lr/warmup to lr over `warmup` steps, then constant."""
    return lr * min(1.0, (step + 1) / max(1, warmup))


# ----------------------------------------------------------------------------- run folder files


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
    fileio.write_bytes(path, buf.getvalue())


def trim_metrics(path: Path, step: int) -> None:
    """On resume, drop metric lines from steps after the checkpoint (they will be redone)."""
    if path.is_file():
        keep = [l for l in path.read_text().splitlines() if l.strip() and json.loads(l).get("step", 0) <= step]
        fileio.write_text(path, "".join(l + "\n" for l in keep))


def append_metrics(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
