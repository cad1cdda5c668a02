"""The stages one `train` command runs, and `train --check`.

A latent preset trained with `--train-vae` has two stages, each a complete run folder: its VAE
preset (the last part of its `vae` path, e.g. runs/shapes-vae -> shapes-vae) into OUT/vae, on the
diffusion stage's [dataset] (the VAE must encode exactly the images the diffusion model sees), then
the latent model into OUT with vae = OUT/vae. Any other run is one stage. With resume, a finished
VAE stage (its model/ written) is not trained again.

`check_stages` trains CHECK_STEPS steps of every stage in a temporary folder and times them: the
expected time on this machine, measured rather than guessed.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import ConfigError, load_config, preset_names
from .progress import Emit, no_event

CHECK_STEPS = 4          # the first step warms up; the others are timed
CHECK_COUNT = 256        # generated images made for a check (speed does not depend on the count)


@dataclass(frozen=True)
class Stage:
    name: str            # "vae" | "diffusion"
    preset: str          # the preset (or config file) it comes from
    cfg: dict
    out: Path


def vae_preset_name(cfg: dict) -> str | None:
    """The VAE preset a latent config trains on, named by the last part of its `vae` path."""
    name = Path(cfg["vae"]).name if cfg.get("vae") else ""
    return name if name in preset_names() else None


def plan_stages(cfg: dict, source: str, out: Path, *, train_vae: bool, vae_overrides: dict | None = None) -> list[Stage]:
    """[Stage] for one command: (VAE, diffusion) for a latent config with train_vae, else one."""
    if cfg["kind"] == "vae":
        return [Stage("vae", source, cfg, out)]
    if not (train_vae and cfg["kind"] == "latent"):
        return [Stage("diffusion", source, cfg, out)]
    vae_name = vae_preset_name(cfg)
    if vae_name is None:
        raise ConfigError(f"--train-vae: the config's vae = {cfg['vae']!r} names no VAE preset "
                          f"(presets: {', '.join(preset_names())})")
    vae_cfg = load_config(vae_name, {"dataset": dict(cfg["dataset"]), **(vae_overrides or {})})
    if vae_cfg["kind"] != "vae":
        raise ConfigError(f"--train-vae: preset {vae_name} is a {vae_cfg['kind']} config, not a VAE")
    diffusion = load_config({**cfg, "vae": str(out / "vae")})
    return [Stage("vae", vae_name, vae_cfg, out / "vae"), Stage("diffusion", source, diffusion, out)]


def trainer(kind: str):
    """The training function for a config's kind: the VAE trainer or the diffusion trainer."""
    if kind == "vae":
        from .vae import train_vae

        return train_vae
    from .train import train

    return train


def stage_finished(stage: Stage) -> bool:
    """A VAE stage is finished once its model/ is written (only the end of its training does that)."""
    return stage.name == "vae" and (stage.out / "model" / "studio_model.json").is_file()


def run_stages(stages: list[Stage], *, dataset=None, resume: bool = False, device: str | None = None,
               progress: bool = True, emit: Emit = no_event, should_stop=lambda: False,
               finalize: bool = False) -> str:
    """Train the stages in order; returns how the last one ended ("done", "time_up", "paused",
    "finalized"). A stage that pauses stops the command (the next session resumes it)."""
    ended = "done"
    for index, stage in enumerate(stages, 1):
        last = index == len(stages)
        emit("stage", {"stage": stage.name, "index": index, "of": len(stages), "run": str(stage.out),
                       "preset": stage.preset, "kind": stage.cfg["kind"]})
        if resume and stage_finished(stage):
            emit("end", {"step": stage.cfg["training"]["steps"], "reason": "done", "model": str(stage.out / "model")})
            continue
        reasons: list[str] = []

        def hook(kind: str, fields: dict | None = None) -> None:
            if kind == "end":
                reasons.append(str((fields or {}).get("reason")))
            emit(kind, fields)

        trainer(stage.cfg["kind"])(stage.cfg, stage.out, dataset=dataset, resume=resume, device=device,
                                   progress=progress, hooks={"event": hook, "should_stop": should_stop},
                                   finalize=finalize and last)
        ended = reasons[-1] if reasons else "done"
        if ended not in ("done", "time_up"):
            return ended
    return ended


def check_stages(stages: list[Stage], *, dataset=None, device: str | None = None) -> dict:
    """Train CHECK_STEPS steps of each stage in a temporary folder and time them. Returns
    {"device", "device_name", "stages": [{stage, preset, steps, batch, seconds_per_step, setup_seconds}]}."""
    short = {"training": {"steps": CHECK_STEPS, "checkpoint_every": 0, "sample_every": 0, "log_every": 1,
                          "max_seconds": 0.0, "init": ""}}
    report: dict = {"device": "", "device_name": "", "stages": []}
    with tempfile.TemporaryDirectory(prefix="diffusion-studio-check-") as tmp:
        vae_run = None
        for stage in stages:
            cfg = {**stage.cfg, "vae": str(vae_run)} if stage.cfg["kind"] == "latent" and vae_run else stage.cfg
            out = Path(tmp) / stage.name
            timed = _timed_run(trainer(cfg["kind"]), load_config(cfg, short), out, dataset, device)
            report["device"], report["device_name"] = timed.pop("device"), timed.pop("device_name")
            tc = stage.cfg["training"]
            report["stages"].append({"stage": stage.name, "preset": stage.preset, "steps": tc["steps"],
                                     "batch": tc["batch"], **timed})
            if stage.name == "vae":
                vae_run = out
    return report


def _timed_run(train, cfg: dict, out: Path, dataset, device) -> dict:
    marks: list[float] = []
    seen: dict = {}

    def hook(kind: str, fields: dict | None = None) -> None:
        if kind == "step":
            marks.append(time.perf_counter())
        elif kind == "start":
            seen.update(device=(fields or {}).get("device", ""), device_name=(fields or {}).get("device_name", ""))

    started = time.perf_counter()
    train(cfg, out, dataset=dataset, device=device, progress=False, hooks={"event": hook})
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    per_step = statistics.median(gaps) if gaps else (marks[0] - started if marks else 0.0)
    setup = max(0.0, (marks[0] - started) - per_step) if marks else 0.0
    return {"seconds_per_step": round(per_step, 5), "setup_seconds": round(setup, 2), **seen}


def with_count(stage: Stage, count: int) -> Stage:
    """The stage on at most `count` generated images (folders are kept whole)."""
    d = stage.cfg["dataset"]
    if d["name"] == "folder" or d["count"] <= count:
        return stage
    return replace(stage, cfg=load_config(stage.cfg, {"dataset": {"count": count}}))
