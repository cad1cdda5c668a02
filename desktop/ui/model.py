"""The observable state of the app: what the widgets show and edit, with Qt signals.

Widgets bind to a `StudioModel` (Krita AI Diffusion's `ui/` pattern): they read its state, call its
setters, and listen to its signals. The model holds no generation logic either: `generate()` builds
a `GenerationRequest` from the state and hands it to a `GenerationThread` (worker.py), which owns the
pipeline call. The painted inputs live in a `CanvasState` (canvas_state.py), one per model for the
session; the model list in library.py.

A run's result is a list of images, each with its recipe and (once saved) its PNG; `selected` is the
image the actions (save as, copy, use as input, fork) act on. `run_state` says how the last run
ended: "idle", "running", "done", "cancelled" or "failed".
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from desktop.runtime import paths
from desktop.runtime.manifest import MANIFEST_NAME, SAMPLERS
from diffusion import defaults as fallback_table
from diffusion.samplers import sampler_spec, samplers_for_model

from . import brush, images, library
from .canvas_state import CanvasState
from .caps import Capabilities, capabilities
from .history import History, HistoryEntry
from .library import ModelEntry, find_model_folders  # noqa: F401 - find_model_folders: scripts and benchmarks
from .settings import Settings
from .worker import Frame, GenerationThread, friendly_error

MAX_SEED = 2**31 - 1


@dataclass
class Params:
    """The controls' values: everything of a GenerationRequest except the painted arrays."""
    prompt: str = ""
    negative_prompt: str = ""
    class_name: str | None = None
    sampler: str = fallback_table.SAMPLER
    steps: int = fallback_table.STEPS
    guidance: float = fallback_table.GUIDANCE_UNCONDITIONAL
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


def params_from_recipe(params: Params, d: dict, *, keep_seed: bool = False) -> Params:
    """`params` with every field a recipe dict sets; the seed gets locked (or kept, with keep_seed)."""
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
    if keep_seed:
        values.pop("seed", None)
        return replace(params, **values)
    return replace(params, **values, seed_locked=True)


class StudioModel(QObject):
    modelsChanged = Signal()
    bundleChanged = Signal()
    paramsChanged = Signal(str)          # the field name, "" for all
    runningChanged = Signal(bool)
    runStateChanged = Signal(str)        # "running" | "done" | "cancelled" | "failed"
    frameChanged = Signal(object)         # Frame shown in the preview (live or trajectory)
    progressChanged = Signal(int, int, float, float)   # step, steps, it/s, eta seconds
    trajectoryChanged = Signal()
    displayChanged = Signal()            # show x̂_0 or the noisy x_t: redraw what is on screen
    resultChanged = Signal()
    selectionChanged = Signal(int)
    carryChanged = Signal()              # a start image came along from another model (or was dropped)
    forkChanged = Signal()               # fork mode started or stopped (self.fork)
    historyChanged = Signal()
    error = Signal(str)
    message = Signal(str)

    def __init__(self, settings: Settings | None = None, history: History | None = None, parent=None):
        super().__init__(parent)
        self.settings = settings or Settings()
        self.history = history or History()
        self.canvas = CanvasState(self)
        self.canvases: dict[str, dict] = {}  # model folder -> its stashed canvas, for the session
        self.carried_from = ""               # the model a carried-over start image came from
        self.params = Params()
        self.models: list[ModelEntry] = []
        self.entry: ModelEntry | None = None
        self.bundle = None
        self.caps: Capabilities | None = None
        self.sizes = None                     # the open model's SizeOptions (desktop/runtime/image_size.py)
        self.memory_notes: dict = {}          # (batch, height, width, guided) -> memory_note's answer, this bundle
        self.thread: GenerationThread | None = None
        self.frames: list[Frame] = []
        self.result_images: list[np.ndarray] = []
        self.result_paths: list[Path | None] = []
        self.result_recipes: list[dict] = []
        self.selected = 0
        self.run_state = "idle"
        self.last_request = None
        self.fork: dict | None = None         # fork mode: {"parent": request dict, "step": k, "parent_path": str}
        self.live_run = False                 # the run in flight is a live-painting run (live.py)
        self.queued_generate = False          # Generate pressed during a live run: runs after it
        self.last_seconds = 0.0               # how long the last finished run took
        self.show_noisy = bool(self.settings["show_noisy"])
        self._run_started = 0.0
        self._verified: set[Path] = set()   # bundles whose hashes were checked this session

    # --- models ---------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self.models = library.list_entries(friendly_error, self.settings["model_names"])
        if self.entry is not None:
            self.entry = next((e for e in self.models if e.path == self.entry.path), self.entry)
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
        previous = self.entry
        from desktop.runtime.image_size import size_options

        self.bundle, self.memory_notes = bundle, {}
        self.caps = capabilities(bundle.manifest, path)
        self.sizes = size_options(bundle)
        self.entry = next((e for e in self.models if e.path == path), ModelEntry(path, library.USER, self.caps))
        c = self.caps
        self.params = replace(
            self.params, sampler=c.sampler if c.sampler in SAMPLERS else fallback_table.SAMPLER, steps=c.steps, guidance=c.guidance,
            height=c.height, width=c.width, spacing=None,
            class_name=(c.class_names[0] if c.class_names and not c.class_optional else None),
        )
        self.switch_canvas(previous, self.entry)
        self.stop_fork()
        self.settings["last_model"] = str(path)
        self.save_settings()
        self.bundleChanged.emit()
        self.paramsChanged.emit("")
        note = getattr(bundle, "provider_note", None)  # e.g. "CUDA did not load (...): running on cpu"
        self.message.emit(f"Loaded {self.entry.name} on {self.provider}" + (f" ({note})" if note else ""))
        return True

    def switch_canvas(self, previous: ModelEntry | None, entry: ModelEntry) -> None:
        """Keep the previous model's canvas; bring back this model's, or start a fresh one (the start
        image comes along, shown with a one-click drop: carried_from)."""
        if previous is not None and previous.path == entry.path:
            self.canvas.resize(self.caps.height, self.caps.width)
            return
        if previous is not None:
            self.canvases[str(previous.path)] = self.canvas.stash()
        stored = self.canvases.get(str(entry.path))
        if stored is not None:
            self.canvas.unstash(stored)
            self.carried_from = ""
        else:
            carried = self.canvas.start_fresh(self.caps.height, self.caps.width, keep_image=True)
            self.carried_from = previous.name if carried and previous is not None else ""
        self.carryChanged.emit()

    def drop_carried_image(self) -> None:
        """The one-click answer to a carried-over start image: remove it (undoable)."""
        self.carried_from = ""
        if self.canvas.init_image is not None:
            self.canvas.set_init_image(None)
        self.carryChanged.emit()

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
        """Validate a bundle folder, then copy it into the user's models folder and select it; a model
        the library already has (the same weights) is selected instead of copied again."""
        folder = Path(folder)
        try:
            if not folder.is_dir():
                raise FileNotFoundError(f"{folder} is not a folder. Choose the folder that holds studio.json (or model_index.json).")
            if not paths.is_model_dir(folder):
                raise FileNotFoundError(f"{folder} holds no studio.json or model_index.json, so it is not a model bundle.")
            from desktop.runtime.bundle import open_bundle

            bundle = open_bundle(folder, provider="cpu")  # validates manifest, hashes and graphs
            manifest = bundle.manifest if (folder / MANIFEST_NAME).exists() else None
            known = library.same_model(self.models, library.fingerprint(folder, manifest))
            if known is not None:
                selected = self.select_model(known.path)
                self.message.emit(f"{known.name} is already in your models (the same weights); selected it.")
                return selected
            target = folder if folder.resolve().parent == paths.user_models_dir().resolve() \
                else library.copy_into_library(folder)
            self._verified.add(target)  # a copy of the folder just verified
        except Exception as exc:  # noqa: BLE001
            self.error.emit(friendly_error(exc))
            return False
        self.refresh_models()
        return self.select_model(target)

    def remove_model(self, path: Path | str) -> bool:
        """Delete one of the user's models; the current model moves to the default one."""
        entry = next((e for e in self.models if e.path == Path(path)), None)
        if entry is None or self.running:
            return False
        try:
            library.remove_from_library(entry)
        except OSError as exc:
            self.error.emit(friendly_error(exc))
            return False
        self.canvases.pop(str(entry.path), None)
        self.settings["model_names"] = {k: v for k, v in self.settings["model_names"].items() if k != str(entry.path)}
        self.save_settings()
        current = self.entry is not None and self.entry.path == entry.path
        self.refresh_models()
        if current:
            self.entry = self.bundle = self.caps = None
            self.select_model(self.default_model_path())
            self.bundleChanged.emit()
        self.message.emit(f"Removed {entry.name}.")
        return True

    def rename_model(self, path: Path | str, name: str) -> None:
        """The name the app shows for a model ("" = the manifest's own)."""
        names = dict(self.settings["model_names"])
        if name.strip():
            names[str(path)] = name.strip()
        else:
            names.pop(str(path), None)
        self.settings["model_names"] = names
        self.save_settings()
        self.refresh_models()
        self.bundleChanged.emit()

    # --- parameters -----------------------------------------------------------------------
    def set_param(self, name: str, value) -> None:
        if getattr(self.params, name) == value:
            return
        self.params = replace(self.params, **{name: value})
        if name in ("height", "width"):
            self.canvas.resize(self.params.height, self.params.width)
        self.paramsChanged.emit(name)

    def memory_note(self) -> tuple[str, bool]:
        """What the chosen size and batch need in memory, in a few words, and whether it fits."""
        from desktop.runtime.memory import MemoryEstimateError, check_fits, gib

        if self.bundle is None or self.sizes is None:
            return "", True
        p = self.params
        guided = bool(self.caps and self.caps.guided and p.guidance != 1.0)
        key = (p.batch_size, p.height, p.width, guided)  # the panel asks on every canvas change
        if key not in self.memory_notes:
            try:
                est = check_fits(self.bundle, p.batch_size, p.height, p.width, guided=guided, step=self.sizes.step)
                answer = f"needs about {gib(est.needed)} of memory", True
            except MemoryEstimateError as exc:
                answer = str(exc), False
            except (ValueError, OSError):
                answer = "", True
            self.memory_notes = {key: answer}  # one entry: a new size or model asks the machine again
        return self.memory_notes[key]

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
            raise ValueError("No model is loaded. Add a model folder with File ▸ Add model….")
        mask = labels = init = None
        if cv.has_mask():  # every model inpaints (label-map models too, with their map)
            if cv.init_image is None:
                raise ValueError("Inpainting needs an image to keep: open or drop one on the canvas (or use a "
                                 "result as input), or clear the mask (More ▸ Clear) to generate everywhere.")
            mask = cv.mask.copy()
        if c.mask_kind == "semantic" and cv.has_labels():
            labels = brush.fill_unpainted(cv.labels)  # unpainted pixels take the nearest painted label
        if cv.init_image is not None:
            init = cv.init_image.copy()
        request = GenerationRequest(
            prompt=p.prompt if c.text else "", negative_prompt=p.negative_prompt if c.text else "",
            class_name=p.class_name if c.class_names else None,
            init_image=init, strength=float(p.strength) if self.uses_strength() else 1.0,
            mask=mask, labels=labels, sampler=p.sampler, steps=int(p.steps), guidance=float(p.guidance),
            seed=int(p.seed), batch_size=int(p.batch_size), height=int(p.height), width=int(p.width),
            spacing=p.spacing, model=c.name, seamless=bool(p.seamless),
        )
        return self.as_fork(request) if self.fork else request

    # --- forks (desktop/runtime/fork.py, docs/FORKS.md) -----------------------------------------
    def as_fork(self, request):
        """The request as a fork of self.fork's parent: the parent's grid and size, our conditioning."""
        parent = self.fork["parent"]
        keep = {k: parent[k] for k in ("sampler", "steps", "spacing", "height", "width", "strength") if k in parent}
        return replace(request, **keep, fork={"parent": parent, "step": int(self.fork["step"])})

    def start_fork(self, step: int) -> bool:
        """Fork the chosen result at `step`: the next Generate continues its run from there."""
        recipe = self.selected_recipe()
        if recipe is None or self.running:
            return False
        parent = recipe["request"]
        steps = int(parent.get("steps") or 0)
        if not 1 <= step < steps:
            self.error.emit(f"A fork starts after step 1 to {steps - 1} of the run; step {step} is not one of them.")
            return False
        path = self.selected_path()
        self.fork = {"parent": parent, "step": int(step), "parent_path": str(path) if path else ""}
        self.forkChanged.emit()
        self.message.emit(f"Forking at step {step}: change the seed, prompt, guidance or map, then Generate.")
        return True

    def stop_fork(self) -> None:
        if self.fork is not None:
            self.fork = None
            self.forkChanged.emit()

    # --- restoring recipes ----------------------------------------------------------------
    def restore_recipe(self, recipe, model_path: str | None = None, *, keep_seed: bool = False) -> None:
        """Set every control from a recipe (a GenerationRequest or its dict); the seed gets locked,
        or stays as it is with keep_seed ("Apply except seed")."""
        d = recipe if isinstance(recipe, dict) else recipe.to_dict()
        if model_path and self.entry and Path(model_path) != self.entry.path and Path(model_path).exists():
            self.select_model(model_path)
        self.params = params_from_recipe(self.params, d, keep_seed=keep_seed)
        unusable = self.sampler_unusable(self.params.sampler)
        if unusable:
            self.params = replace(self.params, sampler=self.caps.sampler if self.caps else "ddim")
        self.canvas.resize(self.params.height, self.params.width)
        fork = d.get("fork")
        if isinstance(fork, dict) and isinstance(fork.get("parent"), dict):
            self.fork = {"parent": fork["parent"], "step": int(fork.get("step") or 1), "parent_path": self.fork_parent_path(fork)}
            self.forkChanged.emit()
        else:
            self.stop_fork()
        self.paramsChanged.emit("")
        self.message.emit(("Applied the recipe (seed kept)." if keep_seed else "Restored the recipe (seed locked).")
                          + (f" {unusable}" if unusable else ""))

    def sampler_unusable(self, sampler: str) -> str | None:
        """Why this model cannot use `sampler` (a recipe's), in one sentence; None when it can."""
        if self.bundle is None or sampler not in SAMPLERS:
            return None
        if sampler in samplers_for_model(lcm=bool(getattr(self.bundle, "is_lcm", False))):
            return None
        return (f"The recipe's {sampler_spec(sampler).label} sampler is for latent consistency models only; "
                "using this model's default sampler.")

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

    def fork_parent_path(self, fork: dict) -> str:
        """The history's PNG of a fork's parent (the entry whose recipe is the parent's), or ""."""
        parent = fork.get("parent") or {}
        same = ("seed", "prompt", "negative_prompt", "class_name", "guidance", "sampler", "steps")
        for e in self.history.entries:
            if all(e.recipe.get(k) == parent.get(k) for k in same) and e.fork_step == int((parent.get("fork") or {}).get("step") or 0):
                return e.path
        return ""

    def model_for(self, name: str | None, model_hash: str | None = None) -> Path | None:
        """The library's folder for a recipe's model: by its hash first, else by its name."""
        if model_hash:
            match = next((e for e in self.models if e.fingerprint and e.fingerprint.startswith(model_hash)), None)
            if match is not None:
                return match.path
        return next((e.path for e in self.models if e.caps and name and e.caps.name == name), None)

    def restore_png(self, path: Path | str, *, keep_seed: bool = False) -> bool:
        """Restore the recipe a PNG carries (ours or A1111 `parameters`); False if it has none."""
        try:
            from desktop.runtime.pngmeta import read_recipe_dict
            from desktop.runtime.pipeline import GenerationRequest

            d = read_recipe_dict(Path(path))
            request = GenerationRequest.from_dict(d["request"])
        except Exception as exc:  # noqa: BLE001
            self.error.emit(f"Could not read a recipe from {Path(path).name}: {friendly_error(exc)}")
            return False
        model = (d.get("model") or {})
        match = self.model_for(request.model or model.get("name"), model.get("hash"))
        self.restore_recipe(request, str(match) if match else None, keep_seed=keep_seed)
        self.restore_canvas(request)
        if d.get("notes"):  # what the recipe asks for that cannot be applied here (A1111's LoRA, clip skip...)
            self.message.emit("Restored the recipe; not applied here: " + "; ".join(d["notes"]))
        return True

    def restore_history(self, index: int) -> None:
        """Restore an entry's parameters; the PNG's full recipe (init image, mask, labels) when it exists."""
        e = self.history.entries[index]
        full = None
        if e.path and Path(e.path).exists():
            try:
                from desktop.runtime.pngmeta import read_recipe_dict

                full = read_recipe_dict(e.path)
            except Exception:  # noqa: BLE001 - the stored recipe still restores the parameters
                full = None
        self.restore_recipe(full["request"] if full is not None else e.recipe, e.model)
        if full is not None:
            from desktop.runtime.pipeline import GenerationRequest

            self.restore_canvas(GenerationRequest.from_dict(full["request"]))
        if e.path and Path(e.path).exists():
            self.show_result([images.load_image(e.path)], [Path(e.path)], [full] if full else [], "history")

    # --- generation -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.thread is not None

    def generate(self, *, live: bool = False) -> bool:
        """Start a run with the current settings. A live run (live painting) makes one image, keeps
        the seed, saves nothing and adds nothing to the history. Generate during a live run stops
        that run and starts right after it."""
        if self.running:
            if self.live_run and not live:
                self.queued_generate = True
                self.cancel(quiet=True)
                return True
            return False
        if self.bundle is None:
            self.error.emit("No model is loaded. Add a model folder with File ▸ Add model….")
            return False
        if not self.params.seed_locked and not live:
            self.randomize_seed()
        try:
            request = self.build_request()
        except (ValueError, ImportError) as exc:
            if not live:
                self.error.emit(str(exc))
            return False
        if live:
            request = replace(request, batch_size=1)
        else:
            self.settings.add_recent_prompt(self.params.prompt)
            self.save_settings()
        self.live_run = live
        self.start_thread(request, save=not live)
        n = int(request.batch_size)
        if not live:
            self.message.emit(f"Generating {n} image{'s' if n > 1 else ''} with seed {request.seed}…")
        return True

    def start_thread(self, request, *, save: bool) -> None:
        self.last_request = request
        self.frames = []
        self.show_result([], [], [], "running")
        self.thread = GenerationThread(self.bundle, request, self.settings.output_dir(), save=save,
                                       preview_every=int(self.settings["preview_every"]), parent=self)
        self.thread.stepped.connect(self._on_step)
        self.thread.succeeded.connect(self._on_success)
        self.thread.failed.connect(self._on_failed)
        self.thread.cancelled.connect(self._on_cancelled)
        self.thread.finished.connect(self._on_thread_finished)
        self._run_started = time.perf_counter()
        self.runningChanged.emit(True)
        self.progressChanged.emit(0, int(request.steps), 0.0, -1.0)
        self.thread.start()

    def cancel(self, *, quiet: bool = False) -> None:
        if self.thread is not None:
            self.thread.cancel()
            if not quiet:
                self.message.emit("Cancelling…")

    def show_result(self, result_images: list, result_paths: list, recipes: list, state: str) -> None:
        """What the output shows: these images (selectable), their PNGs and recipes, and how the run ended."""
        self.result_images, self.result_paths, self.result_recipes = list(result_images), list(result_paths), list(recipes)
        self.selected = 0
        if state == "history":
            self.frames = []
            self.trajectoryChanged.emit()
            state = "done"
        self.set_run_state(state)
        self.resultChanged.emit()
        self.selectionChanged.emit(0)

    def set_run_state(self, state: str) -> None:
        self.run_state = state
        self.runStateChanged.emit(state)

    def select(self, index: int) -> None:
        if 0 <= index < len(self.result_images) and index != self.selected:
            self.selected = index
            self.selectionChanged.emit(index)

    def _on_step(self, frame: Frame) -> None:
        self.frames.append(frame)
        it_s = frame.step / frame.elapsed if frame.elapsed > 0 else 0.0
        eta = (frame.steps - frame.step) / it_s if it_s > 0 else -1.0
        self.progressChanged.emit(frame.step, frame.steps, it_s, eta)
        if frame.live:
            self.frameChanged.emit(frame)

    def _on_success(self, result, saved) -> None:
        self.last_seconds = time.perf_counter() - self._run_started
        paths_ = [p for p, _ in saved]
        self.add_to_history(result, saved)
        self.trajectoryChanged.emit()
        self.show_result(result.images, paths_, [r for _, r in saved], "done")
        where = f" — saved to {paths_[0].parent}" if paths_ and paths_[0] else ""
        notes = "".join(f" ({w})" for w in getattr(result, "warnings", None) or [])
        if self.live_run:
            self.message.emit(f"Live: updated in {self.last_seconds:.1f} s (not saved; Save as… or Generate keeps it){notes}")
        else:
            self.message.emit(f"Done in {self.last_seconds:.1f} s{where}{notes}")

    def add_to_history(self, result, saved) -> None:
        fork = getattr(result.request, "fork", None)
        parent = (self.fork or {}).get("parent_path", "") if fork else ""
        entries = [
            HistoryEntry(path=str(p), recipe=history_recipe(r["request"]), model=str(self.entry.path) if self.entry else "",
                         model_name=str(getattr(result, "model_name", "") or (self.caps.name if self.caps else "")),
                         provider=str(r.get("provider") or self.provider), parent=parent,
                         fork_step=int(fork["step"]) if fork else 0)
            for p, r in saved if p is not None
        ]
        if entries:
            try:
                self.history.add(entries)
            except OSError as exc:
                self.error.emit(f"Could not update the history file {self.history.path}: {exc}")
            self.historyChanged.emit()

    def _on_failed(self, text: str) -> None:
        if self.run_state == "running":
            self.set_run_state("failed")
        self.error.emit(text)

    def _on_cancelled(self) -> None:
        if self.live_run:   # a stale live run: a fresh one follows, nothing to report
            self.set_run_state("idle")
            return
        self.set_run_state("cancelled")
        self.message.emit("Cancelled — nothing was saved.")

    def _on_thread_finished(self) -> None:
        thread, self.thread = self.thread, None
        if thread is not None:
            thread.deleteLater()
        self.runningChanged.emit(False)
        self.live_run = False
        if self.queued_generate and not self.running:
            self.queued_generate = False
            self.generate()

    def wait(self, ms: int = 30000) -> None:
        """Block until the worker finishes (used on close and in tests)."""
        if self.thread is not None:
            self.thread.wait(ms)

    def set_show_noisy(self, on: bool) -> None:
        self.show_noisy = bool(on)
        self.settings["show_noisy"] = self.show_noisy
        self.displayChanged.emit()

    # --- acting on the selected image ---------------------------------------------------------
    def selected_image(self) -> np.ndarray | None:
        return self.result_images[self.selected] if self.result_images else None

    def selected_path(self) -> Path | None:
        return self.result_paths[self.selected] if self.selected < len(self.result_paths) else None

    def selected_recipe(self) -> dict | None:
        return self.result_recipes[self.selected] if self.selected < len(self.result_recipes) else None

    def use_result_as_input(self, index: int | None = None) -> None:
        if self.result_images:
            i = self.selected if index is None else min(index, len(self.result_images) - 1)
            self.canvas.set_init_image(self.result_images[i])
            self.carried_from = ""
            self.carryChanged.emit()

    def save_selected_as(self, target: Path | str) -> bool:
        """Write the selected image with its recipe to `target` (replacing it: the file dialog asked)."""
        from desktop.runtime.pngmeta import write_png

        image, target = self.selected_image(), Path(target)
        if image is None:
            return False
        try:
            write_png(target, image, self.selected_recipe())
        except OSError as exc:
            self.error.emit(f"Could not save to {target}: {friendly_error(exc)}")
            return False
        self.message.emit(f"Saved {target.name}")
        return True

    def save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as exc:
            self.error.emit(f"Could not save settings to {self.settings.path}: {exc}")


def history_recipe(request: dict) -> dict:
    """A recipe as the history keeps it: the parameters, with the painted arrays named, not stored
    ("inputs": which of start image, mask and label map it had; the PNG keeps the arrays)."""
    d = {k: v for k, v in dict(request).items() if isinstance(v, (str, int, float, bool, type(None), list, dict))
         and k not in ("init_image", "mask", "labels", "fork")}
    d["inputs"] = [k for k in ("init_image", "mask", "labels") if request.get(k) is not None]
    if isinstance(request.get("fork"), dict):  # the parent stays in the PNG; the history names it only
        d["fork"] = {"step": request["fork"].get("step"), "parent_seed": (request["fork"].get("parent") or {}).get("seed")}
    return d
