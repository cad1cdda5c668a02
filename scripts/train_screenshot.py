"""Screenshot of the Train window during a real training run (the README's training screenshot).

    python scripts/train_screenshot.py OUT.png [--preset tiny-latent] [--data shapes] [--minutes 10]
                                               [--stage vae] [--samples 6] [--width 960 --height 600]
    xvfb-run -a python scripts/train_screenshot.py OUT.png        (a real X server)

Opens the app (offscreen unless a display is set), chooses the preset and a built-in data set in the
Train window, starts a run with a time budget, waits until `--stage` (vae: the autoencoder, whose
grids show originals above their reconstructions; diffusion: the model's samples) has written
`--samples` sample grids, grabs the window, then cancels the run and deletes it. The README's
screenshot is made with the defaults (saved with a 128-colour palette, `--colors`). Needs the
engine extra; DIFFUSION_STUDIO_HOME points into a temporary folder, so the user's runs and models
are never touched.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def wait_for(app, condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise SystemExit(f"train_screenshot: gave up waiting for {what} after {timeout:.0f} s")
        app.processEvents()
        time.sleep(0.05)


def save_small(image, out: Path, colors: int) -> None:
    """The grab as a PNG, quantized to a palette of `colors` (a UI screenshot stays sharp at 128)."""
    from io import BytesIO

    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice

    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    picture = Image.open(BytesIO(bytes(buf.data()))).convert("RGB")
    if colors:
        picture = picture.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    picture.save(out, optimize=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--preset", default="tiny-latent")
    p.add_argument("--data", default="shapes", help="a built-in set (shapes, landscapes, digits)")
    p.add_argument("--minutes", type=int, default=10, help="the run's time budget")
    p.add_argument("--stage", default="vae", choices=["vae", "diffusion"], help="the stage to show")
    p.add_argument("--samples", type=int, default=6, help="grab once the stage has written this many sample grids")
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=600)
    p.add_argument("--colors", type=int, default=128, help="palette size of the saved PNG (0: full colour)")
    p.add_argument("--timeout", type=float, default=1800)
    args = p.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = tempfile.mkdtemp(prefix="train-screenshot-")
    os.environ["DIFFUSION_STUDIO_HOME"] = home
    try:
        return shoot(args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def shoot(args) -> int:
    from PySide6.QtWidgets import QApplication

    from desktop.ui.window import MainWindow

    app = QApplication.instance() or QApplication(["diffusion-studio"])
    window = MainWindow()
    window.show()
    window.load_default_model()
    window.open_train()
    tw = window.train_window
    setup, session = tw.setup, tw.session
    wait_for(app, lambda: bool(setup.presets), 120, "the presets")
    setup.preset.setCurrentIndex(setup.preset.findData(args.preset))
    setup.use_generated.setChecked(True)
    setup.generated.setCurrentIndex(setup.generated.findData(args.data))
    setup.data_changed()
    wait_for(app, lambda: setup.check_result is not None, 600, "the data check")
    setup.by_time.setChecked(True)
    setup.minutes.setValue(args.minutes)
    tw.start()
    tw.resize(args.width, args.height)

    def shown() -> bool:
        cur = session.state.current
        folder = session.run / ("vae" if args.stage == "vae" else "") / "samples" if session.run is not None else None
        return (cur is not None and cur.stage == args.stage and bool(cur.sample)
                and len(list(folder.glob("*.png"))) >= args.samples)

    try:
        wait_for(app, shown, args.timeout, f"{args.samples} sample grids of the {args.stage} stage")
        for _ in range(20):          # let the last events and the sample grid paint
            app.processEvents()
            time.sleep(0.05)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_small(tw.grab().toImage(), args.out, args.colors)
        print(f"saved {args.out} at step {session.state.current.step} of {session.run.name}")
    finally:
        session.cancel(delete=True)      # also when the wait gave up: no trainer left running
        window.train_window = None
        window.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())
