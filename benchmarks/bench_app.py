"""The desktop app: cold start to a visible, usable window, and time to the first image.

    python benchmarks/bench_app.py [--runs 3] [--model PATH]

- cold start: `python -m desktop --quit-when-ready` in a fresh process (offscreen when there is no
  display), timed from launch until it prints its ready marker, which it does after the window is
  shown and the default model is loaded (so Generate works). Median of --runs.
- first image: in one process, the window with the default model (the first bundled one, or
  --model), one Generate at the model's default settings, timed from the click to the result on
  screen and saved. Without any bundled model it uses the demo bundle of scripts/screenshots.py
  (64×64, 20 DDIM steps; not a trained model) and says so.
Per-user files go to a temporary DIFFUSION_STUDIO_HOME.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import commit, machine  # noqa: E402


def cold_start(env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "desktop", "--quit-when-ready"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("diffusion-studio: ready"):
            elapsed = time.perf_counter() - started
            proc.wait(timeout=60)
            return elapsed
    proc.wait()
    raise RuntimeError("the app exited without printing its ready marker")


def first_image(model: Path | None, tmp: Path) -> tuple[float, str, str]:
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from desktop.runtime import paths
    from desktop.ui.model import find_model_folders
    from desktop.ui.window import MainWindow

    label = ""
    if model is None and not find_model_folders(paths.bundled_models_dir()):
        sys.path.insert(0, str(ROOT / "scripts"))
        from screenshots import demo_bundles

        model = demo_bundles(tmp / "demo")[0]
        label = " (demo bundle, not trained)"
    if model is not None:
        folder = Path(model).parent
        paths.bundled_models_dir = lambda: folder
    app = QApplication.instance() or QApplication(["bench"])
    w = MainWindow()
    w.show()
    w.load_default_model()
    if model is not None:
        w.model.select_model(model)
    app.processEvents()
    m = w.model
    loop = QEventLoop()
    m.runningChanged.connect(lambda running: running or loop.quit())
    started = time.perf_counter()
    assert m.generate(), "Generate did not start"
    loop.exec()
    elapsed = time.perf_counter() - started
    assert m.result_images, "no image came back"
    c = m.caps
    settings = f"{c.name}{label}: {c.width}×{c.height}, {m.last_request.sampler} {m.last_request.steps} steps, {m.provider}"
    w.close()
    return elapsed, settings, str(m.result_paths[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the desktop app's start and first image.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=None, help="a model bundle folder (default: the first bundled)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    os.environ["DIFFUSION_STUDIO_HOME"] = str(tmp / "home")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    env = dict(os.environ)
    starts = [cold_start(env) for _ in range(args.runs)]
    first, settings, _ = first_image(args.model, tmp)
    rows = [
        ("cold start to usable window (median of %d)" % args.runs, f"{statistics.median(starts):.2f} s",
         ", ".join(f"{s:.2f}" for s in starts)),
        ("first image at default settings", f"{first:.2f} s", settings),
    ]
    print(f"machine: {machine()}")
    print(f"commit:  {commit()}")
    print(f"Qt platform: {os.environ.get('QT_QPA_PLATFORM', 'native')}")
    print()
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'time':>8}  notes")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>8}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
