"""The worker thread that owns the pipeline call (docs/ARCHITECTURE.md, "Why the layering").

`GenerationThread.run` calls `desktop.runtime.pipeline.generate` (looked up when the run starts,
so tests can wrap it), turns every `StepInfo` into a display `Frame` (rendering, off the UI thread,
the few a second the live view shows), saves the PNGs with their recipes, and reports through
signals only. Cancel sets an event the sampler polls before every network call, so a run stops
within one step.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QThread, Signal


from desktop.runtime.logs import logger
from desktop.runtime.manifest import BundleError
from desktop.runtime.providers import CPU, ProviderError
from diffusion.samplers import Cancelled, NonFiniteError

from . import images

try:  # ONNX Runtime's own exception types (Fail, InvalidArgument, RuntimeException, ...)
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
    ORT_ERRORS: tuple[type, ...] = tuple(
        v for v in vars(ort_state).values() if isinstance(v, type) and issubclass(v, Exception))
except ImportError:  # pragma: no cover - onnxruntime is a base dependency
    ORT_ERRORS = ()


LIVE_INTERVAL = 1 / 15   # seconds: the live view is refreshed at most this often during a run


@dataclass
class Frame:
    """One denoising step: its predicted x̂_0 and noisy x_t as HxWx3 uint8 images, one per image of
    the batch, rendered on first use. `live`: rendered in the worker for the live view (`LivePacing`);
    the trajectory renders the other steps when they are looked at."""
    step: int
    steps: int
    t: int
    elapsed: float           # seconds since the run started
    info: Any = field(repr=False)   # the runtime's StepInfo: its preview renders x̂_0 once
    live: bool = False

    @cached_property
    def x0(self) -> list:
        return [np.asarray(p) for p in (self.info.preview or [])] or self.x_t or [np.zeros((8, 8, 3), np.uint8)]

    @cached_property
    def x_t(self) -> list | None:
        if self.info.x_t is None:
            return None
        arr = np.asarray(self.info.x_t)
        return [images.latent_to_image(a) for a in arr] if arr.ndim == 4 else [images.latent_to_image(arr)]


class LivePacing:
    """Which steps the live view shows: every `every`-th step, no two closer than `interval` seconds
    apart, and always the last. A fast model's steps come faster than anyone can watch them; rendering
    each one made a landscapes image 12% slower (benchmarks/bench_preview.py)."""

    def __init__(self, every: int, interval: float):
        self.every, self.interval, self.last = max(1, int(every)), float(interval), -math.inf

    def due(self, step: int, steps: int, now: float) -> bool:
        if step == steps or (step % self.every == 0 and now - self.last >= self.interval):
            self.last = now
            return True
        return False


def frame_from_step(info, started: float, pacing: LivePacing | None = None) -> Frame:
    """The step as a Frame; one the live view will show is rendered here, off the UI thread."""
    now = time.perf_counter()
    frame = Frame(int(info.step), int(info.steps), int(info.t), now - started, info)
    if pacing is None or pacing.due(frame.step, frame.steps, now):
        frame.live = True
        frame.x0, frame.x_t   # noqa: B018 - render both now
    return frame


def is_cancelled_error(exc: BaseException) -> bool:
    return isinstance(exc, Cancelled)


def friendly_error(exc: BaseException, provider: str | None = None) -> str:
    """An exception -> one paragraph in plain words, naming what to do where possible. `provider` (ONNX
    Runtime's name) is where the model ran: on the CPU, "try another provider" would be no advice."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, BundleError):
        where = " ".join(x for x in (f"file {exc.file}" if exc.file else "", f"field '{exc.field}'" if exc.field else "") if x)
        return f"This model folder cannot be used{f' ({where})' if where else ''}: {text}"
    if isinstance(exc, ProviderError):
        return f"The execution provider could not be used: {text}. Choose another one in Settings (CPU always works)."
    if isinstance(exc, ORT_ERRORS):
        if provider == CPU:
            return f"ONNX Runtime failed while running the model on the CPU: {text}"
        return f"The execution provider failed while running the model: {text}. Try another provider in Settings (CPU always works)."
    if isinstance(exc, NonFiniteError):
        return f"The model produced invalid numbers (NaN or infinity): {text}. Try less guidance or another sampler."
    if isinstance(exc, MemoryError):
        return "Out of memory. Try a smaller batch or image size."
    if isinstance(exc, (ValueError, OSError)):
        return text
    return f"{type(exc).__name__}: {text}"


class GenerationThread(QThread):
    """Runs one request. `save=False` (live painting) keeps the images in memory only; either way
    every image comes back with its recipe."""

    stepped = Signal(object)             # Frame
    succeeded = Signal(object, object)   # GenerationResult, list[(Path | None, recipe)]
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, bundle, request, out_dir: Path, *, save: bool = True, preview_every: int = 1, parent=None):
        super().__init__(parent)
        self.bundle, self.request, self.out_dir, self.save = bundle, request, Path(out_dir), save
        self.preview_every = preview_every
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:  # runs in the worker thread
        from desktop.runtime import pipeline

        started = time.perf_counter()
        pacing = LivePacing(self.preview_every, LIVE_INTERVAL)

        def on_step(info):
            self.stepped.emit(frame_from_step(info, started, pacing))

        try:
            result = pipeline.generate(self.bundle, self.request, on_step=on_step, cancel=self._cancel.is_set)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message in the window
            if is_cancelled_error(exc) or self._cancel.is_set():
                self.cancelled.emit()
                return
            message = friendly_error(exc, getattr(self.bundle, "provider", None))
            logger().getChild("generate").error("generation failed: %s", message, exc_info=exc)
            self.failed.emit(message)
            return
        if getattr(result, "cancelled", False) or self._cancel.is_set():
            self.cancelled.emit()
            return
        self.finish(result)

    def finish(self, result) -> None:
        """Make every image's recipe, save the PNGs (when saving), report; a failed save keeps the images."""
        from desktop.runtime import pngmeta

        recipes = [pngmeta.make_recipe(result, i) for i in range(len(result.images))]
        saved, problem = [], None
        name = getattr(result, "model_name", "") or getattr(self.bundle, "name", "image")
        for i, (image, recipe) in enumerate(zip(result.images, recipes)):
            path = None
            if self.save and problem is None:
                try:
                    path = pngmeta.save_png(image, recipe, self.out_dir, pngmeta.output_stem(name, result.seeds[i]))
                except BaseException as exc:  # noqa: BLE001
                    problem = exc
            saved.append((path, recipe))
        log = logger().getChild("generate")
        timings = getattr(result, "timings", None) or {}
        log.info("%s: %d image(s), seeds %s, %.2f s, saved %s", name, len(result.images), list(result.seeds),
                 timings.get("total", 0.0), [str(p) for p, _ in saved if p is not None] or "nothing")
        self.succeeded.emit(result, saved)
        if problem is not None:
            log.error("saving to %s failed: %s", self.out_dir, friendly_error(problem))
            done = sum(p is not None for p, _ in saved)
            what = (f"Saved {done} of {len(saved)} images to {self.out_dir}; the others" if done
                    else "The images were made but")
            self.failed.emit(f"{what} could not be saved: {friendly_error(problem)}. Save as… still saves them "
                             "where you choose.")
