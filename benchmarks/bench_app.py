"""The desktop app: cold start, click to first preview frame, click to final image, and the cost of
the live preview per step.

    python benchmarks/bench_app.py [--runs 3] [--model PATH ...]

- cold start: `python -m desktop --quit-when-ready` in a fresh process (offscreen when there is no
  display), timed from launch until it prints its ready marker (window shown, default model loaded,
  Generate works). Median of --runs.
- click to first preview / to final image: in one process, a window per model at the model's default
  settings (sampler, steps, guidance, size, batch 1); the Generate button is clicked and the clock
  stops at the first preview frame on screen (the first denoising step, drawn) and when the saved
  result is on screen. Models alternate run by run (the machine may be shared), medians of --runs.
- preview per step (latent models): what the live preview costs each step beside the U-Net call, for
  one image: the linear map (latent -> RGB, then the bilinear upsampling to the image size,
  `desktop.runtime.preview.latent_preview`) and, when the bundle ships one, the learned preview
  decoder; the one the app uses as a share of one guided U-Net call (one batched call of 2:
  conditional and unconditional). The three alternate in one loop; medians.
Models: the bundled ones (assets/models), or --model folders. Per-user files go to a temporary
DIFFUSION_STUDIO_HOME.
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


def click_to_images(window, model_path: Path) -> tuple[float, float]:
    """(seconds to the first preview frame on screen, seconds to the final image on screen)."""
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    m = window.model
    assert m.select_model(model_path), f"cannot open {model_path}"
    m.set_param("seed_locked", True)
    QApplication.processEvents()
    marks: dict[str, float] = {}
    loop = QEventLoop()

    def on_frame(_frame):
        QApplication.processEvents()   # the frame is drawn before the clock reads
        marks.setdefault("first", time.perf_counter())

    def on_result():
        if m.result_images and m.run_state == "done":
            window.preview.view.repaint()
            marks["final"] = time.perf_counter()

    m.frameChanged.connect(on_frame)
    m.resultChanged.connect(on_result)
    m.runningChanged.connect(lambda running: running or loop.quit())
    started = time.perf_counter()
    window.controls.generate_button.click()
    loop.exec()
    for signal, slot in ((m.frameChanged, on_frame), (m.resultChanged, on_result)):
        signal.disconnect(slot)
    m.runningChanged.disconnect()
    assert "final" in marks and "first" in marks, "the run did not finish with a result"
    return marks["first"] - started, marks["final"] - started


def unet_feeds(m) -> dict:
    """One guided U-Net call's inputs (batch 2: conditional and unconditional) at the model's size."""
    import numpy as np

    x = np.random.default_rng(1).standard_normal((2, m.unet.in_channels, m.latent.height, m.latent.width))
    feeds = {"sample": x.astype(np.float32), "timestep": np.full(2, 500, np.int64)}
    t_enc = m.conditioning.text
    if t_enc:
        feeds["encoder_hidden_states"] = np.zeros((2, t_enc.max_length, t_enc.hidden_size), np.float32)
    if m.conditioning.class_:
        feeds["class_labels"] = np.zeros(2, np.int64)
    return feeds


def preview_cost(model_path: Path, rounds: int = 100) -> dict | None:
    """ms per step of the live preview for one image of a latent model, beside one guided U-Net call:
    `linear` (the latent -> RGB map and the bilinear upsampling: the bundle's own map, or one of the
    same shape when the bundle ships a learned decoder instead; the cost does not depend on the
    weights), `decoder` (the bundle's learned preview decoder, None without one), `unet`. The three
    alternate within each round (the machine is shared); medians."""
    import numpy as np

    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.preview import latent_preview, to_uint8

    bundle = open_bundle(model_path, provider="cpu")
    m = bundle.manifest
    if not m.latent:
        return None
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((1, m.diffused_channels, m.latent.height, m.latent.width)).astype(np.float32)
    learned = bundle.preview if callable(bundle.preview) else None       # a PreviewNetwork
    linear = bundle.preview if learned is None else \
        (rng.standard_normal((m.diffused_channels, 3)).astype(np.float32), np.zeros(3, np.float32))
    feeds = unet_feeds(m)
    jobs = {"linear": lambda: to_uint8(latent_preview(x0, linear, m.vae_factor)),
            "decoder": (lambda: to_uint8(latent_preview(x0, learned, m.vae_factor))) if learned else None,
            "unet": lambda: bundle.unet.run(feeds, output="out_sample")}
    times = {k: [] for k, job in jobs.items() if job}
    for i in range(rounds):
        for k in times:
            if k == "unet" and i % 10:
                continue                   # the U-Net is slow: a tenth as many calls
            t = time.perf_counter()
            jobs[k]()
            times[k].append(time.perf_counter() - t)
    out = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    out.setdefault("decoder", None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the desktop app: start, first preview, final image, preview cost.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, action="append", default=None, help="a model folder (repeatable; default: the bundled ones)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    os.environ["DIFFUSION_STUDIO_HOME"] = str(tmp / "home")
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    starts = [cold_start(dict(os.environ)) for _ in range(args.runs)]

    from PySide6.QtWidgets import QApplication

    from desktop.runtime import paths
    from desktop.ui.library import find_model_folders
    from desktop.ui.window import MainWindow

    models = args.model or find_model_folders(paths.bundled_models_dir())
    if not models:
        print("no models: pass --model FOLDER", file=sys.stderr)
        return 2
    app = QApplication.instance() or QApplication(["bench"])
    window = MainWindow()
    window.resize(1280, 800)
    window.show()
    window.load_default_model()
    timings = {p: [] for p in models}
    for _ in range(args.runs):           # alternate the models run by run
        for p in models:
            timings[p].append(click_to_images(window, p))
    settings = {}
    for p in models:
        window.model.select_model(p)
        c, r = window.model.caps, window.model.build_request()
        settings[p] = f"{c.width}×{c.height}, {r.sampler} {r.steps} steps, guidance {r.guidance:g}"
    provider = window.model.provider
    window.close()
    app.processEvents()

    print(f"machine: {machine()} (shared with other jobs: compare rows of one run, not across runs)")
    print(f"commit:  {commit()}")
    print(f"Qt platform: {os.environ.get('QT_QPA_PLATFORM', 'native')}; provider: {provider}; runs: {args.runs}")
    print()
    print(f"cold start to a usable window: {statistics.median(starts):.2f} s (median; {', '.join(f'{s:.2f}' for s in starts)})")
    print()
    print(f"{'model':<12} {'first preview':>14} {'final image':>12}  {'linear map':>11} {'decoder':>9} "
          f"{'U-Net call':>11} {'preview/U-Net':>14}  defaults")
    for p in models:
        first = statistics.median(t[0] for t in timings[p])
        final = statistics.median(t[1] for t in timings[p])
        cost = preview_cost(p)
        if cost is None:
            extra = f"{'(pixels)':>11} {'':>9} {'':>11} {'':>14}"
        else:
            used = cost["decoder"] if cost["decoder"] is not None else cost["linear"]
            dec = f"{cost['decoder']:.2f} ms" if cost["decoder"] is not None else "none"
            extra = f"{cost['linear']:>8.2f} ms {dec:>9} {cost['unet']:>8.1f} ms {used / cost['unet']:>14.1%}"
        print(f"{p.name:<12} {first:>12.2f} s {final:>10.2f} s  {extra}  {settings[p]}")
    print()
    print("preview/U-Net: the preview the app uses (the decoder when the bundle ships one, else the linear map)")
    print("per step, as a share of one guided U-Net call (batch 2), one image.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
