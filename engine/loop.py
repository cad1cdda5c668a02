"""What the VAE and the diffusion trainers share around their own step: the data order
(`batch_indices`, a pure function of seed and step; see engine.train), resuming from a checkpoint,
writing one, and the bookkeeping after each optimizer step: metrics (gathered across processes) to
metrics.jsonl and the progress bar, Ctrl+C and the time budget (agreed across processes), periodic
checkpoints and sample grids."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import CheckpointError, capture_rng, restore_rng, save_checkpoint


def batch_indices(n: int, batch: int, step: int, seed: int, rank: int = 0, world: int = 1) -> list[int]:
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

    def __init__(self, n, batch, start, steps, seed, rank, world):
        self.args = (n, batch, seed, rank, world)
        self.start, self.steps = start, steps

    def __len__(self):
        return max(0, self.steps - self.start)

    def __iter__(self):
        n, batch, seed, rank, world = self.args
        for step in range(self.start, self.steps):
            yield batch_indices(n, batch, step, seed, rank, world)


class _Indexed(torch.utils.data.Dataset):
    """The data set's items with their "index" added, so a batch says which items it holds."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return {**self.ds[i], "index": i}


def step_loader(ds, tc: dict, step: int, rank: int, world: int, collate) -> torch.utils.data.DataLoader:
    """The batches of steps step..tc["steps"]-1 for process `rank` (`batch_indices`); each item
    carries its "index" for `collate`."""
    sampler = StepBatchSampler(len(ds), tc["batch"], step, tc["steps"], tc["seed"], rank, world)
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


def checkpointer(acc, path: Path, tc: dict, kind: str, name: str, step: Callable[[], int],
                 parts: Callable[[], dict], seconds: Callable[[], float], emit=None) -> Callable[[str], None]:
    """checkpoint(reason): the main process writes parts() + step, RNG, LR state and the run's
    training seconds to `path` (atomically) and reports a "checkpoint" event; every process waits for it."""
    def checkpoint(reason: str) -> None:
        acc.wait_for_everyone()
        if acc.is_main_process:
            s = step()
            save_checkpoint(path, {**parts(), "step": s, "rng": capture_rng(), "train_seconds": seconds(),
                                   "lr_scheduler": {"kind": "linear_warmup", "warmup": tc["warmup"], "last_step": s}},
                            summary={"step": s, "reason": reason, "time": time.time(), "kind": kind, "config": name,
                                     "train_seconds": round(seconds(), 1)})
            if emit is not None:
                emit("checkpoint", {"step": s, "path": str(path), "reason": reason})
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
    checkpoint: Callable[[str], None]
    sample: Callable[[Path], None]
    append_metrics: Callable[[Path, dict], None]
    bar: object = None               # tqdm or None
    t_start: float = field(default_factory=time.time)
    t_last: float = field(default_factory=time.time)
    steps_since: int = 0
    clock: Callable[[], float] | None = None     # the run's training seconds over all sessions (run_clock)
    emit: Callable[[str, dict], None] | None = None   # progress events (engine.progress)
    should_stop: Callable[[], bool] = lambda: False   # e.g. the app's pause request
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
        if self.emit is not None and acc.is_main_process:
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
            self.checkpoint("periodic")
        if tc["sample_every"] and step % tc["sample_every"] == 0 and acc.is_main_process:
            path = self.out / "samples" / f"step_{step:06d}.png"
            self.sample(path)
            if self.emit is not None and path.is_file():
                self.emit("sample", {"step": step, "path": str(path)})
        return None


def progress_bar(acc, enabled: bool, tc: dict, step: int, name: str):
    """A tqdm bar on the main process (None elsewhere or when disabled), resuming at `step`."""
    if not (enabled and acc.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=tc["steps"], initial=step, desc=f"train {name}", unit="step", dynamic_ncols=True)
