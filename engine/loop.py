"""The bookkeeping a training loop does after each optimizer step, shared by the VAE and the
diffusion trainers: metrics (gathered across processes) to metrics.jsonl and the progress bar,
Ctrl+C and the time budget (agreed across processes), periodic checkpoints and sample grids."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch


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

    @property
    def world(self) -> int:
        return self.acc.num_processes

    def after_step(self, step: int, lr: float, losses: dict[str, torch.Tensor]) -> str | None:
        """Returns None to go on, "interrupted" (Ctrl+C) or "time_up" (training.max_seconds) to stop."""
        tc, acc = self.tc, self.acc
        self.steps_since += 1
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
        stop = self.flag["stop"]
        time_up = bool(tc["max_seconds"]) and time.time() - self.t_start >= tc["max_seconds"]
        if self.world > 1:
            flags = acc.reduce(torch.tensor([float(stop), float(time_up)], device=acc.device), "max")
            stop, time_up = bool(flags[0].item()), bool(flags[1].item())
        if stop:
            return "interrupted"
        if time_up:  # a time budget ends the run like its last step: the final model is written
            return "time_up"
        if tc["checkpoint_every"] and step % tc["checkpoint_every"] == 0 and step < tc["steps"]:
            self.checkpoint("periodic")
        if tc["sample_every"] and step % tc["sample_every"] == 0 and acc.is_main_process:
            self.sample(self.out / "samples" / f"step_{step:06d}.png")
        return None


def progress_bar(acc, enabled: bool, tc: dict, step: int, name: str):
    """A tqdm bar on the main process (None elsewhere or when disabled), resuming at `step`."""
    if not (enabled and acc.is_main_process):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=tc["steps"], initial=step, desc=f"train {name}", unit="step", dynamic_ncols=True)
