"""Live previews of latent models look like the image (issue 14 item 10): every frame the app shows is
at the image size and smooth (the bilinear upsampling of a latent-resolution picture), not blocks."""
from __future__ import annotations

import json

import numpy as np

from desktop.runtime.preview import interpolation_matrix
from tests.ui.conftest import run_and_wait


def bilinear_residual(image: np.ndarray, factor: int) -> float:
    """How far an HxWx3 picture is from any bilinear upsampling (by `factor`) of a smaller one: the
    largest residual, in 0-255 levels, of its least-squares fit by the bilinear operator. Pixels at 0
    or 255 (clipped: no longer linear in the latent) are left out of the fit."""
    h, w = image.shape[0] // factor, image.shape[1] // factor
    op = np.kron(interpolation_matrix(h, h * factor), interpolation_matrix(w, w * factor))
    flat = image.reshape(-1, 3).astype(np.float64)
    worst = 0.0
    for c in range(3):
        keep = (flat[:, c] > 0) & (flat[:, c] < 255)
        assert keep.mean() > 0.75, "too many clipped pixels for the fit to tell anything"
        low, *_ = np.linalg.lstsq(op[keep], flat[keep, c], rcond=None)
        worst = max(worst, float(np.abs(op[keep] @ low - flat[keep, c]).max()))
    return worst


def test_the_residual_tells_blocks_from_smooth_pictures():
    low = np.random.default_rng(0).integers(0, 256, (8, 8, 3)).astype(np.float64)
    blocks = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    smooth = np.einsum("Hh,hwc,Ww->HWc", interpolation_matrix(8, 16), low, interpolation_matrix(8, 16))
    assert bilinear_residual(np.round(smooth), 2) <= 1.0
    assert bilinear_residual(blocks, 2) > 20


def test_a_latent_models_live_preview_is_smooth_at_the_image_size(qtbot, open_window, home):
    from desktop.runtime.manifest import read_manifest, write_manifest
    from tests.helpers.tiny_bundles import make_bundle

    folder = make_bundle(home["bundled"] / "tiny-latent", kind="latent", cond="class", size=16)   # 8x8 latents
    weight = np.random.default_rng(3).uniform(-0.08, 0.08, (4, 3)).round(3).tolist()   # colours mostly unclipped
    (folder / "preview/linear.json").write_text(json.dumps({"weight": weight, "bias": [0.1, -0.1, 0.0]}))
    write_manifest(folder, read_manifest(folder))
    w = open_window(make=False)
    m = w.model
    assert m.caps.width == 16 and m.bundle.manifest.vae_factor == 2
    m.set_param("steps", 6)
    shown = []
    m.frameChanged.connect(lambda frame: shown.append(w.preview.view.image))
    run_and_wait(qtbot, m)
    assert len(m.frames) == 6 and len(shown) == 6
    for frame, image in zip(m.frames, shown):
        x0 = frame.x0[0]
        assert x0.shape == (16, 16, 3)
        assert (image.width(), image.height()) == (16, 16)        # the view shows it at the image size
        assert bilinear_residual(x0, 2) <= 1.0, f"step {frame.step} is not a smooth upsampling"
        assert np.abs(np.diff(x0.astype(int), axis=1))[:, 0::2].max() > 0   # neighbours inside a 2x2 block differ


def constant_preview_decoder(path, channels: int, factor: int, rgb) -> None:
    """A preview network whose picture is one colour (`rgb` in [-1, 1]) at `factor` times the latent
    size: a 1x1 convolution with zero weights and bias `rgb`, then a nearest upsampling."""
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros((3, channels, 1, 1), np.float32), "W"),
             numpy_helper.from_array(np.asarray(rgb, np.float32), "b"),
             numpy_helper.from_array(np.asarray([1, 1, factor, factor], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["latent_sample", "W", "b"], ["rgb"]),
             helper.make_node("Resize", ["rgb", "", "scales"], ["sample"], mode="nearest")]
    graph = helper.make_graph(nodes, "preview", [helper.make_tensor_value_info("latent_sample", TP.FLOAT, ["B", channels, "h", "w"])],
                              [helper.make_tensor_value_info("sample", TP.FLOAT, ["B", 3, "H", "W"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def test_a_bundle_with_a_learned_preview_decoder_previews_through_it(qtbot, open_window, home):
    from tests.helpers.tiny_bundles import make_bundle

    folder = home["bundled"] / "tiny-latent-decoder"
    constant_preview_decoder(folder / "preview/decoder.onnx", 4, 2, [0.5, -0.5, 0.25])
    make_bundle(folder, kind="latent", cond="class", size=16,
                files={"unet": "unet/model.onnx", "vae_decoder": "vae_decoder/model.onnx",
                       "vae_encoder": "vae_encoder/model.onnx", "preview": "preview/decoder.onnx"})
    w = open_window(make=False)
    m = w.model
    assert m.bundle.manifest.files["preview"] == "preview/decoder.onnx"
    m.set_param("steps", 4)
    run_and_wait(qtbot, m)
    assert len(m.frames) == 4
    for frame in m.frames:     # every step's preview is the network's picture, at the image size
        assert frame.x0[0].shape == (16, 16, 3)
        assert (frame.x0[0] == np.array([191, 64, 159], np.uint8)).all()
    assert not (m.result_images[0] == np.array([191, 64, 159], np.uint8)).all()   # the VAE makes the final image
