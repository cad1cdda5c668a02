"""What the network test runs inside netwatch.py: real entry points, kept busy for a while.

    python workload.py generate SECONDS OUT_DIR   # `diffusion-studio generate` (in-process), repeated
                                                   # until SECONDS have passed, then `info`
    python workload.py module SECONDS OUT_DIR     # the same through `python -m desktop` (runpy, as -m does)
    python workload.py library SECONDS OUT_DIR    # another program using the library: opens a bundle,
                                                   # generates and saves PNGs (and uses onnxruntime itself)
    python workload.py export SECONDS OUT_DIR     # `diffusion-studio export` of a tiny model (parity
                                                   # checks in ONNX Runtime), repeated
    python workload.py app SECONDS                 # the app, idle on its default model for SECONDS

ONNX Runtime's telemetry starts about 9 s after a session opens, so SECONDS is well above that.
"""
from __future__ import annotations

import sys
import time


def _repeat(seconds: float, what: str, run) -> int:
    started = time.monotonic()
    runs = 0
    while time.monotonic() - started < seconds:
        code = run(runs)
        if code != 0:
            return code
        runs += 1
    print(f"workload: {runs} {what} runs in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _generate_argv(out_dir: str, run: int) -> list[str]:
    return ["generate", "--model", "digits", "--class", "3", "--steps", "20", "--batch", "4", "--seed", str(run),
            "--out", out_dir, "--quiet"]


def generate(seconds: float, out_dir: str) -> int:
    from desktop.cli import main

    return _repeat(seconds, "generate", lambda run: main(_generate_argv(out_dir, run))) or main(["info", "digits"])


def module(seconds: float, out_dir: str) -> int:
    import runpy

    def run_module(argv: list[str]) -> int:
        sys.argv = ["desktop", *argv]
        try:
            runpy.run_module("desktop", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            return exc.code or 0
        return 0
    return (_repeat(seconds, "python -m desktop generate", lambda run: run_module(_generate_argv(out_dir, run)))
            or run_module(["info", "digits"]))


def library(seconds: float, out_dir: str) -> int:
    from desktop.runtime import pngmeta
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.paths import find_model
    from desktop.runtime.pipeline import GenerationRequest, generate

    import onnxruntime  # noqa: F401  (the host program uses ONNX Runtime too)

    bundle = open_bundle(find_model("digits"), provider="cpu")

    def run(seed: int) -> int:
        result = generate(bundle, GenerationRequest(class_index=3, steps=20, batch_size=4, seed=seed))
        pngmeta.save_png(result.images[0], None, out_dir, "library")
        return 0
    return _repeat(seconds, "library generate", run)


def export(seconds: float, out_dir: str) -> int:
    from pathlib import Path

    from desktop.cli import main
    from engine.loaded import save_model
    from tests.helpers.tiny_models import loaded, tiny_unet2d

    model = loaded(kind="pixel", unet=tiny_unet2d(1, 1, 8, num_class_embeds=3), image_size=8, image_channels=1,
                   class_names=["zero", "one"], name="tiny-pixel")
    source = save_model(model, Path(out_dir) / "model")
    bundle = Path(out_dir) / "bundle"
    return _repeat(seconds, "export", lambda run: main(["export", str(source), str(bundle), "--overwrite",
                                                        "--preview-samples", "4"]))


def app(seconds: float) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.ui.app import main

    qt = QApplication.instance() or QApplication(["diffusion-studio"])
    opened = []

    def quit_app():
        windows = [w for w in qt.topLevelWidgets() if hasattr(w, "model") and hasattr(w.model, "bundle")]
        opened.extend(w.model.bundle.name for w in windows if w.model.bundle is not None)
        qt.quit()

    QTimer.singleShot(int(seconds * 1000), quit_app)
    code = main([])
    print(f"workload: the app was idle on {opened} for {seconds} s", file=sys.stderr)
    return code or (0 if opened else 3)  # a session must have been open, or the test proves nothing


if __name__ == "__main__":
    what, seconds, *rest = sys.argv[1:]
    workloads = {"generate": generate, "module": module, "library": library, "export": export, "app": app}
    sys.exit(workloads[what](float(seconds), *rest))
