"""Save the README's screenshots of the app at its best into a folder.

    python scripts/screenshots.py OUT_DIR [--models DIR]        (offscreen by default)
    xvfb-run -a python scripts/screenshots.py OUT_DIR            (a real X server)

Shots: 01-labels (a painted landscape map and its picture, large), 02-fork-tree (forks of a run from
one of its steps, under it in the history), 03-batch-grid (a text prompt's batch as separate images),
04-dark-inpainting (the dark theme, inpainting mid-generation with both layers shown), 05-models (the
model manager), 06-png-info (a recipe with Apply / Apply except seed), 07-small-window (1000×700).
Models: the bundled ones (assets/models) or --models; where none exist it builds two *demo* bundles
with onnx.helper (needs the `onnx` package): their "U-Net" predicts a fixed procedural landscape
(prediction type "sample"), so the shots show the reverse process converging, not a trained model.
The user's real data is never touched: DIFFUSION_STUDIO_HOME points into a temporary folder.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def landscape(h: int, w: int) -> np.ndarray:
    """A procedural landscape in [-1, 1], [3, h, w]: sky gradient, sun, two hill lines, grass."""
    y, x = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    sky = np.stack([0.35 + 0.4 * y, 0.55 + 0.3 * y, 0.95 - 0.1 * y])
    img = sky.copy()
    sun = (x - 0.72) ** 2 + (y - 0.25) ** 2 < 0.008
    img[:, sun] = np.array([1.0, 0.85, 0.45])[:, None]
    far = y > 0.55 + 0.08 * np.sin(x * 9.0) + 0.05 * np.sin(x * 23 + 1)
    img[:, far] = np.array([0.45, 0.5, 0.62])[:, None]
    near = y > 0.68 + 0.06 * np.sin(x * 5.0 + 2)
    img[:, near] = (np.array([0.25, 0.6, 0.25])[:, None] * (1.1 - 0.4 * y[near]))
    return (img * 2 - 1).astype(np.float32)


def demo_bundles(root: Path, size: int = 64) -> list[Path]:
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    from desktop.runtime.manifest import manifest_from_dict, read_manifest, write_manifest
    from tests.helpers.tiny_bundles import LABELS, make_bundle

    out = []
    for cond, name, desc in (("inpaint", "demo-landscape-inpaint", "Demo (not trained): predicts a fixed landscape; paint a mask to regenerate part of an image"),
                             ("semantic", "demo-landscape-labels", "Demo (not trained): paints the label map's colours over a landscape")):
        folder = make_bundle(root / name, kind="pixel", cond=cond, size=size, name=name, prediction_type="sample")
        m = read_manifest(folder)
        cin, c = m.unet.in_channels, m.unet.out_channels
        target = landscape(size, size)
        w = np.zeros((c, cin, 1, 1), np.float32)
        w[:, :c, 0, 0] = 0.25 * np.eye(c)          # x0 = 0.75 target + 0.25 x_t: converges to the target
        if cond == "semantic":
            for k, lab in enumerate(LABELS):
                w[:, c + k, 0, 0] = (np.asarray(lab["color"]) / 127.5 - 1) * 0.75
        inits = {"W": w, "bias": (0.75 * target)[None]}
        nodes = [helper.make_node("Conv", ["sample", "W"], ["y"]), helper.make_node("Add", ["y", "bias"], ["y2"])]
        if cond == "semantic":  # where a label is painted, its colour replaces the landscape
            inits["Wl"] = np.ones((1, cin - c, 1, 1), np.float32)
            inits["Wx"] = np.zeros((1, cin, 1, 1), np.float32)
            inits["Wx"][0, c:, 0, 0] = 1
            nodes = [helper.make_node("Conv", ["sample", "W"], ["y"]), helper.make_node("Conv", ["sample", "Wx"], ["painted"]),
                     helper.make_node("Sub", ["one", "painted"], ["free"]), helper.make_node("Mul", ["bias", "free"], ["bg"]),
                     helper.make_node("Add", ["y", "bg"], ["y2"])]
            inits["one"] = np.ones((1,), np.float32)
            inits.pop("Wl")
        nodes.append(helper.make_node("Identity", ["y2"], ["out_sample"]))
        graph = helper.make_graph(
            nodes, "demo",
            [helper.make_tensor_value_info("sample", TP.FLOAT, ["B", cin, size, size]),
             helper.make_tensor_value_info("timestep", TP.INT64, ["B"])],
            [helper.make_tensor_value_info("out_sample", TP.FLOAT, ["B", c, size, size])],
            [numpy_helper.from_array(v, k) for k, v in inits.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, folder / "unet/model.onnx")
        data = m.to_dict()
        data.update(description=desc, defaults={"sampler": "ddim", "steps": 20, "guidance": 1.0, "spacing": "trailing"},
                    provenance={"source": "scripts/screenshots.py demo bundle (not a trained model)"})
        write_manifest(folder, manifest_from_dict(data))
        (root / f"{name}.weights.npz").unlink(missing_ok=True)
        out.append(folder)
    return out


class Shots:
    """A window, a way to wait for the event loop, and a folder the PNGs go to."""

    def __init__(self, out: Path, size: tuple[int, int]):
        from PySide6.QtWidgets import QApplication

        self.app = QApplication.instance() or QApplication(["diffusion-studio"])
        self.app.setApplicationName("Diffusion Studio")
        self.out, self.size, self.saved = out, size, []
        out.mkdir(parents=True, exist_ok=True)

    def settle(self, ms: int = 150) -> None:
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(self, widget, name: str) -> None:
        """Save the widget as OUT/name.png, quantised to 256 colours (a third of the size; the README's
        screenshots are committed binaries)."""
        from io import BytesIO

        from PIL import Image
        from PySide6.QtCore import QBuffer, QByteArray, QIODevice

        self.settle()
        path = self.out / f"{name}.png"
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        widget.grab().save(buffer, "PNG")
        image = Image.open(BytesIO(bytes(data))).convert("RGB")
        image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)
        self.saved.append(path)
        print(path, flush=True)

    def window(self, size: tuple[int, int] | None = None, compact: bool = False):
        """A new window with a history and settings of its own (a fresh user home)."""
        from desktop.ui.window import MainWindow

        os.environ["DIFFUSION_STUDIO_HOME"] = tempfile.mkdtemp(prefix="studio-shots-home-")
        w = MainWindow()
        w.resize(*(size or self.size))
        w.set_compact(compact)
        w.show()
        w.load_default_model()
        self.settle(300)
        return w

    def run(self, model) -> None:
        model.generate()
        while model.running:
            self.settle(40)
        self.settle(200)


def paint_scene(model) -> None:
    """A landscape a user might paint: sky, a snowy peak, a lake with a beach, a meadow with trees."""
    c, cv = model.caps, model.canvas
    names = [name for name, _ in c.labels]
    index = {name: names.index(name) for name in names}
    yy, xx = np.mgrid[0:c.height, 0:c.width]
    h, w = c.height, c.width
    labels = np.zeros((h, w), np.int32)
    if {"sky", "mountains", "snow", "water", "sand", "grass", "trees"} <= set(index):
        ridge = h * 0.55 - h * 0.25 * np.clip(1 - np.abs(xx - w * 0.62) / (w * 0.3), 0, 1)
        labels[:] = index["sky"]
        labels[yy > ridge] = index["mountains"]
        labels[(yy > ridge) & (yy < ridge + h * 0.07) & (yy < h * 0.42)] = index["snow"]
        labels[yy > h * 0.58] = index["water"]
        labels[yy > h * 0.7 + 2 * np.sin(xx / 6)] = index["sand"]
        labels[yy > h * 0.78 + 2 * np.sin(xx / 9 + 1)] = index["grass"]
        for cx in (w * 0.15, w * 0.3, w * 0.8):
            labels[(yy > h * 0.74) & (yy < h * 0.92) & (np.abs(xx - cx) < (yy - h * 0.74) * 0.45)] = index["trees"]
    else:
        labels[yy > h * 0.62 + 3 * np.sin(xx / 5)] = 1
        labels[(xx - w * 0.3) ** 2 + (yy - h * 0.55) ** 2 < (w * 0.12) ** 2] = min(2, len(names) - 1)
    cv.set_labels(labels)


def models_with(model, test) -> list:
    return [e for e in model.models if e.caps and test(e.caps)]


def labels_and_forks(s: Shots) -> None:
    """01-labels and 02-fork-tree on the first label-map model."""
    from PySide6.QtCore import Qt

    w = s.window()
    m = w.model
    maps = models_with(m, lambda c: c.mask_kind == "semantic")
    if not maps:
        return
    m.select_model(maps[0].path)
    paint_scene(m)
    w.canvas.label_combo.setCurrentIndex(1)
    m.set_param("seed", 11)
    m.set_param("seed_locked", True)
    s.run(m)
    s.shot(w, "01-labels")
    k = max(2, len(m.frames) // 3)
    w.preview.slider.setValue(k - 1)
    m.start_fork(k)
    for seed in (3, 4):
        m.set_param("seed", seed)
        s.run(m)
    water = [name for name, _ in m.caps.labels].index("water") if any(n == "water" for n, _ in m.caps.labels) else 1
    grass = [name for name, _ in m.caps.labels].index("grass") if any(n == "grass" for n, _ in m.caps.labels) else 0
    labels = m.canvas.labels.copy()
    labels[labels == water] = grass          # the same start, the lake painted over with a meadow
    m.canvas.set_labels(labels)
    m.set_param("seed", 11)
    s.run(m)
    w.resizeDocks([w.history_dock], [300], Qt.Orientation.Horizontal)   # room for the forks' names
    w.history.tree.setCurrentItem(w.history.tree.topLevelItem(0).child(0))
    s.shot(w, "02-fork-tree")       # the fork with the lake painted over, finished; the banner still up
    w.close()


def batch_grid(s: Shots) -> None:
    """03-batch-grid: a text model's batch of four, the third chosen."""
    w = s.window()
    m = w.model
    text = models_with(m, lambda c: c.text)
    if not text:
        return
    m.select_model(text[0].path)
    m.set_param("prompt", "a red heart at the top left on a navy background")
    m.set_param("batch_size", 4)
    m.set_param("seed", 2)
    m.set_param("seed_locked", True)
    s.run(m)
    m.select(2)
    w.preview.view.current = 2
    s.shot(w, "03-batch-grid")
    w.close()


def dark_inpainting(s: Shots, slowed) -> None:
    """04-dark-inpainting: the dark theme; a result used as input, a mask painted, the run half done."""
    from desktop.ui.theme import apply_theme

    apply_theme("dark")
    w = s.window()
    m = w.model
    maps = models_with(m, lambda c: c.mask_kind == "semantic")
    if maps:
        m.select_model(maps[0].path)
        paint_scene(m)
    m.set_param("seed", 5)
    m.set_param("seed_locked", True)
    s.run(m)
    m.use_result_as_input()
    w.canvas.set_tool("brush")
    c, view = m.caps, w.canvas.view
    view.set_radius(max(2.0, c.width / 10))
    m.canvas.checkpoint()
    for x in np.linspace(c.width * 0.15, c.width * 0.6, 14):
        m.canvas.dab_mask(x, c.height * 0.3 + 3 * np.sin(x / 4), view.radius, 0.6, False)
    m.set_param("seed", 8)
    done = []

    def on_frame(frame):
        if frame.step == max(2, frame.steps // 2) and not done:
            done.append(frame.step)
            s.shot(w, "04-dark-inpainting")
    with slowed():
        m.frameChanged.connect(on_frame)
        s.run(m)
        m.frameChanged.disconnect(on_frame)
    w.close()
    apply_theme("light")


def dialogs_and_small(s: Shots) -> None:
    """05-models, 06-png-info and 07-small-window."""
    w = s.window()
    m = w.model
    s.run(m)
    manager = w.open_models()
    manager.resize(900, 300)
    s.shot(manager, "05-models")
    manager.close()
    if m.selected_path() is not None:
        info = w.show_png_info(m.selected_path())
        s.shot(info, "06-png-info")
        info.close()
    w.close()
    small = s.window(size=(1000, 700), compact=True)
    s.run(small.model)
    s.shot(small, "07-small-window")
    small.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    parser.add_argument("--models", type=Path, default=None, help="a folder of model bundles (default: the bundled ones, else demo bundles)")
    parser.add_argument("--size", default="1280x800", help="window size WxH")
    args = parser.parse_args(argv)
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    tmp = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    os.environ["DIFFUSION_STUDIO_HOME"] = str(tmp / "home")

    from contextlib import contextmanager

    from desktop.runtime import paths, pipeline
    from desktop.ui.library import find_model_folders

    s = Shots(args.out, tuple(int(v) for v in args.size.split("x")))
    models = args.models or (paths.bundled_models_dir() if find_model_folders(paths.bundled_models_dir()) else None)
    if models is None:
        models = tmp / "demo"
        demo_bundles(models)
    paths.bundled_models_dir = lambda: models

    @contextmanager
    def slowed():
        """Slow the steps a little so a mid-generation state can be caught."""
        real = pipeline.generate

        def slow(bundle, request, on_step=None, cancel=None):
            return real(bundle, request, on_step=lambda info: (time.sleep(0.08), on_step(info)), cancel=cancel)
        pipeline.generate = slow
        try:
            yield
        finally:
            pipeline.generate = real

    labels_and_forks(s)
    batch_grid(s)
    dark_inpainting(s, slowed)
    dialogs_and_small(s)
    print(f"{len(s.saved)} screenshots in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
