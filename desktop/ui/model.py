"""The observable state of the app: what the widgets show and edit, with Qt signals.

Widgets bind to a `StudioModel` (Krita AI Diffusion's `ui/` pattern): they read its state, call its
setters, and listen to its signals. The model holds no generation logic either: `generate()` builds
a `GenerationRequest` from the state and hands it to a `GenerationThread` (worker.py), which owns the
pipeline call. `CanvasState` holds the user's init image, mask and label map with undo/redo.
"""
from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal


from desktop.runtime import paths
from desktop.runtime.manifest import MANIFEST_NAME, SAMPLERS

from . import brush, images
from .caps import Capabilities, capabilities
from .history import History, HistoryEntry
from .settings import Settings
from .worker import Frame, GenerationThread, friendly_error

MAX_SEED = 2**31 - 1
MAX_UNDO = 50


@dataclass
class Params:
    """The controls' values: everything of a GenerationRequest except the painted arrays."""
    prompt: str = ""
    negative_prompt: str = ""
    class_name: str | None = None
    sampler: str = "ddim"
    steps: int = 20
    guidance: float = 1.0
    seed: int = 0
    seed_locked: bool = False
    batch_size: int = 1
    height: int = 32
    width: int = 32
    strength: float = 0.75
    spacing: str | None = None      # None = the model's default; kept so a restored recipe is exact
    seamless: bool = True           # inpainting: Poisson-blend the generated region into the kept pixels


RECIPE_FIELDS = ("prompt", "negative_prompt", "class_name", "sampler", "steps", "guidance", "seed",
                 "batch_size", "height", "width", "strength", "spacing", "seamless")


@dataclass
class ModelEntry:
    path: Path
    source: str                        # "bundled" | "user"
    caps: Capabilities | None = None
    error: str = ""

    @property
    def name(self) -> str:
        return self.caps.name if self.caps else self.path.name


def find_model_folders(root: Path) -> list[Path]:
    """Model folders in `root`; the bundled default (PREFERRED_MODELS) first, then by name."""
    if not root.is_dir():
        return []
    rank = {name: i for i, name in enumerate(paths.PREFERRED_MODELS)}
    return sorted((p for p in root.iterdir() if paths.is_model_dir(p)), key=lambda p: (rank.get(p.name, len(rank)), p.name))


def read_entry(path: Path, source: str) -> ModelEntry:
    """Describe a model folder from its manifest without loading any network."""
    if not (path / MANIFEST_NAME).exists():
        return ModelEntry(path, source, capabilities({"name": path.name, "conditioning": {"text": True}}, path))
    try:
        from desktop.runtime.manifest import read_manifest

        return ModelEntry(path, source, capabilities(read_manifest(path), path))
    except Exception as exc:  # noqa: BLE001 - listed with its error, never a crash
        return ModelEntry(path, source, None, friendly_error(exc))


class CanvasState(QObject):
    """Init image, inpainting mask and label map, with undo/redo over whole strokes."""

    changed = Signal()
    undoChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.height, self.width = 32, 32
        self.init_image: np.ndarray | None = None
        self.mask = np.zeros((32, 32), np.float32)
        self.labels = np.full((32, 32), -1, np.int32)
        self._undo: list[tuple] = []
        self._redo: list[tuple] = []

    # --- size and content -------------------------------------------------------------------
    def resize(self, height: int, width: int) -> None:
        """A new model size: the init image is resampled, paint that no longer fits is cleared."""
        if (height, width) == (self.height, self.width):
            return
        self.height, self.width = height, width
        if self.init_image is not None:
            self.init_image = images.resize(self.init_image, height, width)
        self.mask = np.zeros((height, width), np.float32)
        self.labels = np.full((height, width), -1, np.int32)
        self._undo.clear()
        self._redo.clear()
        self.changed.emit()
        self.undoChanged.emit()

    def has_mask(self) -> bool:
        return bool(self.mask.max() > 0)

    def has_labels(self) -> bool:
        return bool((self.labels >= 0).any())

    def _snapshot(self):
        return (self.init_image, self.mask.copy(), self.labels.copy())

    def checkpoint(self) -> None:
        """Call before any change: the current state becomes one undo step."""
        self._undo.append(self._snapshot())
        del self._undo[:-MAX_UNDO]
        self._redo.clear()
        self.undoChanged.emit()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        self._step_back(self._undo, self._redo)

    def redo(self) -> None:
        self._step_back(self._redo, self._undo)

    def _step_back(self, source: list, target: list) -> None:
        """Restore the newest snapshot of `source`, keeping the current state on `target`."""
        if source:
            target.append(self._snapshot())
            self.init_image, self.mask, self.labels = source.pop()
            self.changed.emit()
            self.undoChanged.emit()

    def set_init_image(self, image: np.ndarray | None) -> None:
        self.checkpoint()
        self.init_image = None if image is None else images.resize(images.to_rgb_uint8(image), self.height, self.width)
        self.changed.emit()

    def set_mask(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=np.float32)
        if mask.shape != (self.height, self.width):
            raise ValueError(
                f"The mask is {mask.shape[1]}×{mask.shape[0]} pixels but this model makes "
                f"{self.width}×{self.height} images; use a mask of the same size."
            )
        self.checkpoint()
        self.mask = np.clip(mask, 0.0, 1.0)
        self.changed.emit()

    def set_labels(self, labels: np.ndarray) -> None:
        labels = np.asarray(labels, dtype=np.int32)
        if labels.shape != (self.height, self.width):
            raise ValueError(f"The label map is {labels.shape[1]}×{labels.shape[0]} but the model makes {self.width}×{self.height} images.")
        self.checkpoint()
        self.labels = labels.copy()
        self.changed.emit()

    # --- painting (a stroke = checkpoint() then several dabs) ------------------------------
    def dab_mask(self, x: float, y: float, radius: float, hardness: float, erase: bool) -> None:
        brush.paint_mask(self.mask, x, y, radius, hardness, erase)
        self.changed.emit()

    def dab_labels(self, x: float, y: float, radius: float, label: int) -> None:
        brush.paint_labels(self.labels, x, y, radius, label)
        self.changed.emit()

    def bucket(self, x: int, y: int, label: int) -> None:
        self.checkpoint()
        brush.flood_fill(self.labels, x, y, label)
        self.changed.emit()

    def invert_mask(self) -> None:
        self.checkpoint()
        self.mask = 1.0 - self.mask
        self.changed.emit()

    def fill_mask(self) -> None:
        self.checkpoint()
        self.mask = np.ones_like(self.mask)
        self.changed.emit()

    def clear_mask(self) -> None:
        self.checkpoint()
        self.mask = np.zeros_like(self.mask)
        self.changed.emit()

    def clear_labels(self) -> None:
        self.checkpoint()
        self.labels = np.full_like(self.labels, -1)
        self.changed.emit()

    def fill_labels(self, label: int) -> None:
        self.checkpoint()
        self.labels = np.full_like(self.labels, label)
        self.changed.emit()


class StudioModel(QObject):
    modelsChanged = Signal()
    bundleChanged = Signal()
    paramsChanged = Signal(str)          # the field name, "" for all
    runningChanged = Signal(bool)
    frameChanged = Signal(object)         # Frame shown in the preview (live or trajectory)
    progressChanged = Signal(int, int, float, float)   # step, steps, it/s, eta seconds
    trajectoryChanged = Signal()
    resultChanged = Signal()
    historyChanged = Signal()
    error = Signal(str)
    message = Signal(str)

    def __init__(self, settings: Settings | None = None, history: History | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.history = history or History()
        self.canvas = CanvasState(self)
        self.params = Params()
        self.models: list[ModelEntry] = []
        self.entry: ModelEntry | None = None
        self.bundle = None
        self.caps: Capabilities | None = None
        self.thread: GenerationThread | None = None
        self.frames: list[Frame] = []
        self.result_images: list[np.ndarray] = []
        self.result_paths: list[Path | None] = []
        self.last_request = None
        self.show_noisy = bool(self.settings["show_noisy"])
        self._run_started = 0.0
        self._verified: set[Path] = set()   # bundles whose hashes were checked this session

    # --- models ---------------------------------------------------------------------------
    def refresh_models(self) -> None:
        bundled = paths.bundled_models_dir()
        self.models = [read_entry(p, "bundled" if p.parent == bundled else "user") for p in paths.list_models()]
        self.modelsChanged.emit()

    def select_model(self, path: Path | str | None) -> bool:
        """Open a bundle with the provider from Settings; on failure keep the previous model."""
        if self.running:
            self.error.emit("Wait for the current generation to finish (or cancel it) before switching models.")
            return False
        if path is None:
            return False
        path = Path(path)
        try:
            from desktop.runtime.bundle import open_bundle

            bundle = open_bundle(path, provider=self.settings["provider"], verify=path not in self._verified)
        except Exception as exc:  # noqa: BLE001
            self.error.emit(friendly_error(exc))
            return False
        self._verified.add(path)
        self.bundle = bundle
        self.caps = capabilities(bundle.manifest, path)
        self.entry = next((e for e in self.models if e.path == path), ModelEntry(path, "user", self.caps))
        c = self.caps
        self.params = replace(
            self.params, sampler=c.sampler if c.sampler in SAMPLERS else "ddim", steps=c.steps, guidance=c.guidance,
            height=c.height, width=c.width, spacing=None,
            class_name=(c.class_names[0] if c.class_names and not c.class_optional else None),
        )
        self.canvas.resize(c.height, c.width)
        self.settings["last_model"] = str(path)
        self.save_settings()
        self.bundleChanged.emit()
        self.paramsChanged.emit("")
        note = getattr(bundle, "provider_note", None)  # e.g. "CUDA did not load (...): running on cpu"
        self.message.emit(f"Loaded {c.name} on {self.provider}" + (f" ({note})" if note else ""))
        return True

    @property
    def provider(self) -> str:
        """The execution provider really in use, e.g. "cpu (CPUExecutionProvider)"."""
        full = str(getattr(self.bundle, "provider", "") or "")
        short = str(getattr(self.bundle, "provider_short", "") or "")
        return f"{short} ({full})" if short and short != full else full

    def default_model_path(self) -> Path | None:
        last = self.settings["last_model"]
        usable = [e for e in self.models if e.caps is not None]
        for e in usable:
            if str(e.path) == last:
                return e.path
        return usable[0].path if usable else None

    def add_model(self, folder: Path | str) -> bool:
        """Validate a bundle folder, then copy it into the user's models folder and select it."""
        folder = Path(folder)
        try:
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is not a folder. Choose the folder that holds studio.json (or model_index.json).")
            if not paths.is_model_dir(folder):
                raise FileNotFoundError(f"{folder} holds no studio.json or model_index.json, so it is not a model bundle.")
            from desktop.runtime.bundle import open_bundle

            open_bundle(folder, provider="cpu")  # validates manifest, hashes and graphs
            target = paths.user_models_dir() / folder.name
            if target.resolve() != folder.resolve():
                n = 2
                while target.exists():
                    target = paths.user_models_dir() / f"{folder.name}-{n}"
                    n += 1
                tmp = target.with_name(target.name + ".partial")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(folder, tmp)
                tmp.replace(target)
            self._verified.add(target)  # a copy of the folder just verified
        except Exception as exc:  # noqa: BLE001
            self.error.emit(friendly_error(exc))
            return False
        self.refresh_models()
        return self.select_model(target)

    # --- parameters -----------------------------------------------------------------------
    def set_param(self, name: str, value) -> None:
        if getattr(self.params, name) == value:
            return
        self.params = replace(self.params, **{name: value})
        if name in ("height", "width"):
            self.canvas.resize(self.params.height, self.params.width)
        self.paramsChanged.emit(name)

    def randomize_seed(self) -> None:
        self.set_param("seed", random.randint(0, MAX_SEED))

    def inpaints(self) -> bool:
        """Inpainting: an init image and a painted mask."""
        return self.canvas.init_image is not None and self.canvas.has_mask()

    def uses_strength(self) -> bool:
        """img2img: an init image without an inpainting mask, so the strength applies."""
        return self.canvas.init_image is not None and not self.canvas.has_mask()

    def build_request(self):
        """The GenerationRequest for the current state, or raise ValueError in plain words."""
        from desktop.runtime.pipeline import GenerationRequest

        p, c, cv = self.params, self.caps, self.canvas
        if c is None:
            raise ValueError("No model is loaded. Add a model folder with Models ▸ Add model….")
        mask = labels = init = None
        if cv.has_mask():  # every model inpaints (label-map models too, with their map)
            if cv.init_image is None:
                raise ValueError("Inpainting needs an image to keep: open or drop one on the canvas (or use a result as input).")
            mask = cv.mask.copy()
        if c.mask_kind == "semantic" and cv.has_labels():
            labels = brush.fill_unpainted(cv.labels)  # unpainted pixels take the nearest painted label
        if cv.init_image is not None:
            init = cv.init_image.copy()
        return GenerationRequest(
            prompt=p.prompt if c.text else "", negative_prompt=p.negative_prompt if c.text else "",
            class_name=p.class_name if c.class_names else None,
            init_image=init, strength=float(p.strength) if self.uses_strength() else 1.0,
            mask=mask, labels=labels, sampler=p.sampler, steps=int(p.steps), guidance=float(p.guidance),
            seed=int(p.seed), batch_size=int(p.batch_size), height=int(p.height), width=int(p.width),
            spacing=p.spacing, model=c.name, seamless=bool(p.seamless),
        )

    def restore_recipe(self, recipe, model_path: str | None = None) -> None:
        """Set every control from a recipe (a GenerationRequest or its dict); the seed gets locked."""
        d = recipe if isinstance(recipe, dict) else recipe.to_dict()
        if model_path and self.entry and Path(model_path) != self.entry.path and Path(model_path).exists():
            self.select_model(model_path)
        values = {k: d[k] for k in RECIPE_FIELDS if k in d and d[k] is not None}
        for k in ("class_name", "spacing"):
            if k in d:
                values[k] = d[k]
        if d.get("init_image") is None:
            values.pop("strength", None)  # without an init image the strength was unused: keep the control's
        for k in ("steps", "seed", "batch_size", "height", "width"):
            if k in values:
                values[k] = int(values[k])
        for k in ("guidance", "strength"):
            if k in values:
                values[k] = float(values[k])
        self.params = replace(self.params, **values, seed_locked=True)
        self.canvas.resize(self.params.height, self.params.width)
        self.paramsChanged.emit("")
        self.message.emit("Restored the recipe (seed locked).")

    def restore_canvas(self, request) -> None:
        """Put a recipe's init image, mask and label map on the canvas (when they fit the model)."""
        cv = self.canvas
        init, mask, labels = (getattr(request, k, None) for k in ("init_image", "mask", "labels"))
        if all(v is None or isinstance(v, str) for v in (init, mask, labels)):
            return
        cv.checkpoint()
        if isinstance(init, np.ndarray):
            cv.init_image = images.resize(images.to_rgb_uint8(init), cv.height, cv.width)
        if isinstance(mask, np.ndarray) and mask.shape == (cv.height, cv.width):
            cv.mask = np.asarray(mask, np.float32)
        if isinstance(labels, np.ndarray) and labels.shape == (cv.height, cv.width):
            cv.labels = np.asarray(labels, np.int32)
        cv.changed.emit()

    def restore_png(self, path: Path | str) -> bool:
        """Restore the recipe a PNG carries (ours or A1111 `parameters`); False if it has none."""
        try:
            from desktop.runtime.pngmeta import read_recipe

            request = read_recipe(Path(path))
        except Exception as exc:  # noqa: BLE001
            self.error.emit(f"Could not read a recipe from {Path(path).name}: {friendly_error(exc)}")
            return False
        model = getattr(request, "model", None)
        match = next((e.path for e in self.models if e.caps and model and e.caps.name == model), None)
        self.restore_recipe(request, str(match) if match else None)
        self.restore_canvas(request)
        return True

    def restore_history(self, index: int) -> None:
        """Restore an entry's parameters; the PNG's full recipe (init image, mask, labels) when it exists."""
        e = self.history.entries[index]
        full = None
        if e.path and Path(e.path).exists():
            try:
                from desktop.runtime.pngmeta import read_recipe

                full = read_recipe(e.path)
            except Exception:  # noqa: BLE001 - the stored recipe still restores the parameters
                full = None
        self.restore_recipe(e.recipe, e.model)
        if full is not None:
            self.restore_canvas(full)
        if e.path and Path(e.path).exists():
            self.result_images = [images.load_image(e.path)]
            self.result_paths = [Path(e.path)]
            self.frames = []
            self.trajectoryChanged.emit()
            self.resultChanged.emit()

    # --- generation -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None

    def generate(self) -> bool:
        if self.running:
            return False
        if self.bundle is None:
            self.error.emit("No model is loaded. Add a model folder with Models ▸ Add model….")
            return False
        if not self.params.seed_locked:
            self.randomize_seed()
        try:
            request = self.build_request()
        except (ValueError, ImportError) as exc:
            self.error.emit(str(exc))
            return False
        self.settings.add_recent_prompt(self.params.prompt)
        self.save_settings()
        self.last_request = request
        self.frames = []
        self.trajectoryChanged.emit()
        self.thread = GenerationThread(self.bundle, request, self.settings.output_dir(), parent=self)
        self.thread.stepped.connect(self._on_step)
        self.thread.succeeded.connect(self._on_success)
        self.thread.failed.connect(self._on_failed)
        self.thread.cancelled.connect(self._on_cancelled)
        self.thread.finished.connect(self._on_thread_finished)
        self._run_started = time.perf_counter()
        self.runningChanged.emit(True)
        self.progressChanged.emit(0, int(request.steps), 0.0, -1.0)
        n = int(request.batch_size)
        self.message.emit(f"Generating {n} image{'s' if n > 1 else ''} with seed {request.seed}…")
        self.thread.start()
        return True

    def cancel(self) -> None:
        if self.thread is not None:
            self.thread.cancel()
            self.message.emit("Cancelling…")

    def _on_step(self, frame: Frame) -> None:
        self.frames.append(frame)
        it_s = frame.step / frame.elapsed if frame.elapsed > 0 else 0.0
        eta = (frame.steps - frame.step) / it_s if it_s > 0 else -1.0
        self.progressChanged.emit(frame.step, frame.steps, it_s, eta)
        every = max(1, int(self.settings["preview_every"]))
        if frame.step % every == 0 or frame.step == frame.steps:
            self.frameChanged.emit(frame)

    def _on_success(self, result, saved) -> None:
        self.result_images = list(result.images)  # HxWx3 uint8 (GenerationResult)
        self.result_paths = [p for p, _ in saved]
        entries = [
            HistoryEntry(path=str(p), recipe=_json_recipe(r["request"]), model=str(self.entry.path) if self.entry else "",
                         model_name=str(getattr(result, "model_name", "") or (self.caps.name if self.caps else "")),
                         provider=str(r.get("provider") or self.provider))
            for p, r in saved if p is not None
        ]
        if entries:
            try:
                self.history.add(entries)
            except OSError as exc:
                self.error.emit(f"Could not update the history file {self.history.path}: {exc}")
            self.historyChanged.emit()
        self.trajectoryChanged.emit()
        self.resultChanged.emit()
        seconds = time.perf_counter() - self._run_started
        where = f" — saved to {self.result_paths[0].parent}" if self.result_paths and self.result_paths[0] else ""
        notes = "".join(f" ({w})" for w in getattr(result, "warnings", None) or [])
        self.message.emit(f"Done in {seconds:.1f} s{where}{notes}")

    def _on_failed(self, text: str) -> None:
        self.error.emit(text)

    def _on_cancelled(self) -> None:
        self.message.emit("Cancelled — nothing was saved.")

    def _on_thread_finished(self) -> None:
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.deleteLater()
        self.runningChanged.emit(False)

    def wait(self, ms: int = 30000) -> None:
        """Block until the worker finishes (used on close and in tests)."""
        if self.thread is not None:
            self.thread.wait(ms)

    def set_show_noisy(self, on: bool) -> None:
        self.show_noisy = bool(on)
        self.settings["show_noisy"] = self.show_noisy
        self.trajectoryChanged.emit()

    def use_result_as_input(self, index: int = 0) -> None:
        if self.result_images:
            self.canvas.set_init_image(self.result_images[min(index, len(self.result_images) - 1)])

    def save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.error.emit(f"Could not save settings to {self.settings.path}: {exc}")


def _json_recipe(recipe) -> dict:
    d = dict(recipe)
    return {k: v for k, v in d.items() if isinstance(v, (str, int, float, bool, type(None), list, dict))
            and k not in ("init_image", "mask", "labels")}
