"""Save screenshots of the app's main states into a folder.

    python scripts/screenshots.py OUT_DIR [--models DIR]        (offscreen by default)
    xvfb-run -a python scripts/screenshots.py OUT_DIR            (a real X server)

States: 01-empty, 02-model-loaded, 03-mask-painting, 04-mid-generation, 05-result-trajectory,
06-labels, 07-help. Models: the bundled ones (assets/models) or --models; where none exist it builds
two *demo* bundles with onnx.helper (needs the `onnx` package): their "U-Net" predicts a fixed
procedural landscape (prediction type "sample"), so the screenshots show the reverse process
converging, not a trained model. The user's real data is never touched: DIFFUSION_STUDIO_HOME
points into a temporary folder.
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

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from desktop.runtime import pipeline
    from desktop.runtime import paths
    from desktop.ui.model import find_model_folders
    from desktop.ui.widgets.dialogs import HelpDialog
    from desktop.ui.window import MainWindow

    app = QApplication.instance() or QApplication(["diffusion-studio"])
    app.setApplicationName("Diffusion Studio")
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))
    saved = []

    def settle(ms=150):
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def shot(widget, name):
        settle()
        path = args.out / f"{name}.png"
        widget.grab().save(str(path))
        saved.append(path)
        print(path)

    def new_window():
        w = MainWindow()
        w.resize(width, height)
        w.show()
        w.load_default_model()
        settle(300)
        return w

    # 1. empty state: no models anywhere
    shipped = paths.bundled_models_dir()
    paths.bundled_models_dir = lambda: tmp / "none"
    w = new_window()
    shot(w, "01-empty")
    w.close()

    models = args.models
    if models is None:
        bundled = find_model_folders(shipped)
        models = shipped if bundled else None
    if models is None:
        models = tmp / "demo"
        demo_bundles(models)
    paths.bundled_models_dir = lambda: models

    w = new_window()
    m = w.model
    m.set_param("seed", 42)
    m.set_param("seed_locked", True)
    shot(w, "02-model-loaded")

    # slow the run a little so the mid-generation state can be captured
    real = pipeline.generate

    def slowed(bundle, request, on_step=None, cancel=None):
        def step(info):
            time.sleep(0.08)
            on_step(info)
        return real(bundle, request, on_step=step, cancel=cancel)

    pipeline.generate = slowed
    c = m.caps
    if c:
        # a first run to have an image, used as input, then a painted inpainting mask (every model inpaints)
        m.generate()
        m.wait()
        settle(400)
        m.use_result_as_input(0)
        m.set_param("seed", 7)
        w.canvas.set_tool("brush")
        view = w.canvas.view
        view.set_radius(max(2.0, c.width / 9))
        m.canvas.checkpoint()
        for x in np.linspace(c.width * 0.2, c.width * 0.55, 12):
            m.canvas.dab_mask(x, c.height * 0.3 + 3 * np.sin(x / 4), view.radius, 0.6, False)
        shot(w, "03-mask-painting")

    frames_seen = []

    def on_frame(frame):
        frames_seen.append(frame.step)
        if frame.step == max(2, frame.steps // 3) and len(frames_seen) < 100:
            shot(w, "04-mid-generation")

    m.frameChanged.connect(on_frame)
    m.generate()
    while m.running:
        settle(50)
    m.frameChanged.disconnect(on_frame)
    settle(300)
    w.preview.slider.setValue(max(1, len(m.frames) // 4))
    shot(w, "05-result-trajectory")
    w.preview.slider.setValue(len(m.frames))

    # a label-map model, when there is one
    label_models = [e for e in m.models if e.caps and e.caps.mask_kind == "semantic"]
    if label_models:
        m.select_model(label_models[0].path)
        m.canvas.set_init_image(None)
        settle(200)
        lc = m.caps
        cv = m.canvas
        cv.fill_labels(0)
        cv.checkpoint()
        names = [name for name, _ in lc.labels]
        index = {name: names.index(name) for name in names}
        yy, xx = np.mgrid[0:lc.height, 0:lc.width]
        h, w_ = lc.height, lc.width
        if {"sky", "mountains", "snow", "water", "sand", "grass", "trees"} <= set(index):
            # a scene a user might paint: sky, a snowy peak, a lake with a beach, a meadow with trees
            ridge = h * 0.55 - h * 0.25 * np.clip(1 - np.abs(xx - w_ * 0.62) / (w_ * 0.3), 0, 1)
            cv.labels[:] = index["sky"]
            cv.labels[yy > ridge] = index["mountains"]
            cv.labels[(yy > ridge) & (yy < ridge + h * 0.07) & (yy < h * 0.42)] = index["snow"]
            cv.labels[yy > h * 0.58] = index["water"]
            cv.labels[yy > h * 0.7 + 2 * np.sin(xx / 6)] = index["sand"]
            cv.labels[yy > h * 0.78 + 2 * np.sin(xx / 9 + 1)] = index["grass"]
            for cx in (w_ * 0.15, w_ * 0.3, w_ * 0.8):
                cv.labels[(yy > h * 0.74) & (yy < h * 0.92) & (np.abs(xx - cx) < (yy - h * 0.74) * 0.45)] = index["trees"]
        else:
            cv.labels[yy > h * 0.62 + 3 * np.sin(xx / 5)] = 1
            cv.labels[(xx - w_ * 0.3) ** 2 + (yy - h * 0.55) ** 2 < (w_ * 0.12) ** 2] = 2
        cv.changed.emit()
        w.canvas.label_combo.setCurrentIndex(1)
        m.generate()
        m.wait()
        settle(400)
        shot(w, "06-labels")

    # a text model, when there is one: a prompt naming a colour-shape pair it never saw in training
    text_models = [e for e in m.models if e.caps and e.caps.text]
    if text_models:
        m.select_model(text_models[0].path)
        m.canvas.set_init_image(None)
        m.canvas.clear_mask()  # plain text-to-image
        settle(200)
        m.set_param("prompt", "a red heart at the top left on a navy background")
        m.set_param("batch_size", 4)
        m.generate()
        m.wait()
        settle(400)
        shot(w, "08-text-prompt")

    help_dialog = HelpDialog(m, w)
    help_dialog.show()
    help_dialog.findChild(type(help_dialog.children()[0]))
    tabs = help_dialog.findChildren(__import__("PySide6.QtWidgets", fromlist=["QTabWidget"]).QTabWidget)[0]
    tabs.setCurrentIndex(1)
    shot(help_dialog, "07-help-models")
    help_dialog.close()
    pipeline.generate = real
    w.close()
    print(f"{len(saved)} screenshots in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
