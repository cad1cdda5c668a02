"""Tiny model bundles built with onnx.helper (no torch), and a numpy oracle of the same U-Net.

U-Net: out = Conv1x1(sample; W, b) * table[timestep] (+ mean(encoder_hidden_states)) (+ class_table[class]).
VAE decoder: nearest x2 upsampling, Conv1x1 4->3, tanh. VAE encoder: 2x2 average pool, Conv1x1 3->4.
Text encoder: an embedding lookup (Gather), times the attention mask when it takes one.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from desktop.runtime.manifest import Manifest, manifest_from_dict, write_manifest

T = 100
VOCAB = ["[PAD]", "[UNK]", "a", "cat", "dog", "red", "blue", "house", "tree", "ugly"]
TEXT_DIM = 6
MAX_LEN = 5
CLASS_NAMES = ["zero", "one", "two"]
LABELS = [{"name": "sky", "color": [0, 0, 255]}, {"name": "grass", "color": [0, 255, 0]},
          {"name": "rock", "color": [128, 128, 128]}]


def save_onnx(model: onnx.ModelProto, path: Path) -> None:
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def unet_weights(cin: int, cout: int, num_classes: int | None = None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w = {
        "W": (rng.standard_normal((cout, cin, 1, 1)) * 0.3).astype(np.float32),
        "b": (rng.standard_normal(cout) * 0.05).astype(np.float32),
        "table": np.linspace(0.4, 1.0, T).astype(np.float32),
    }
    if num_classes:
        w["ctable"] = (rng.standard_normal(num_classes + 1) * 0.2).astype(np.float32)
    return w


def unet_numpy(weights: dict, x, t, encoder_hidden_states=None, class_labels=None, concat=None):
    """The numpy oracle of `unet_onnx` (same math, float32)."""
    x = x if concat is None else np.concatenate([x, concat], axis=1)
    y = np.einsum("oc,bchw->bohw", weights["W"][:, :, 0, 0], x.astype(np.float32)) + weights["b"][None, :, None, None]
    y = y * weights["table"][np.asarray(t)][:, None, None, None]
    if encoder_hidden_states is not None:
        y = y + encoder_hidden_states.mean(axis=(1, 2))[:, None, None, None]
    if class_labels is not None:
        y = y + weights["ctable"][np.asarray(class_labels)][:, None, None, None]
    return y.astype(np.float32)


def unet_onnx(weights: dict, cin: int, cout: int, text: bool = False, classes: bool = False,
              timestep_name: str = "timestep", spatial=("h", "w")) -> onnx.ModelProto:
    inits = dict(weights)
    inits["shape4"] = np.array([-1, 1, 1, 1], np.int64)
    nodes = [
        helper.make_node("Conv", ["sample", "W", "b"], ["y"]),
        helper.make_node("Gather", ["table", timestep_name], ["st"], axis=0),
        helper.make_node("Reshape", ["st", "shape4"], ["st4"]),
        helper.make_node("Mul", ["y", "st4"], ["y1"]),
    ]
    inputs = [helper.make_tensor_value_info("sample", TP.FLOAT, ["B", cin, *spatial]),
              helper.make_tensor_value_info(timestep_name, TP.INT64, ["B"])]
    last = "y1"
    if text:
        inputs.append(helper.make_tensor_value_info("encoder_hidden_states", TP.FLOAT, ["B", "S", TEXT_DIM]))
        nodes += [helper.make_node("ReduceMean", ["encoder_hidden_states"], ["tm"], axes=[1, 2], keepdims=0),
                  helper.make_node("Reshape", ["tm", "shape4"], ["tm4"]),
                  helper.make_node("Add", [last, "tm4"], ["y2"])]
        last = "y2"
    if classes:
        inputs.append(helper.make_tensor_value_info("class_labels", TP.INT64, ["B"]))
        nodes += [helper.make_node("Gather", ["ctable", "class_labels"], ["cv"], axis=0),
                  helper.make_node("Reshape", ["cv", "shape4"], ["cv4"]),
                  helper.make_node("Add", [last, "cv4"], ["y3"])]
        last = "y3"
    nodes.append(helper.make_node("Identity", [last], ["out_sample"]))
    out = [helper.make_tensor_value_info("out_sample", TP.FLOAT, ["B", cout, *spatial])]
    if not classes:
        inits.pop("ctable", None)
    return _model(nodes, inputs, out, inits)


def vae_decoder_onnx(c: int = 4, seed: int = 1, factor: int = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"Wd": (rng.standard_normal((3, c, 1, 1)) * 0.5).astype(np.float32),
             "bd": np.zeros(3, np.float32), "scales": np.array([1, 1, factor, factor], np.float32)}
    nodes = [helper.make_node("Resize", ["latent_sample", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Conv", ["up", "Wd", "bd"], ["rgb"]),
             helper.make_node("Tanh", ["rgb"], ["sample"])]
    return _model(nodes, [helper.make_tensor_value_info("latent_sample", TP.FLOAT, ["B", c, "h", "w"])],
                  [helper.make_tensor_value_info("sample", TP.FLOAT, ["B", 3, "H", "W"])], inits)


def vae_encoder_onnx(c: int = 4, seed: int = 2, factor: int = 2) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"We": (rng.standard_normal((c, 3, 1, 1)) * 0.5).astype(np.float32), "be": np.zeros(c, np.float32)}
    nodes = [helper.make_node("AveragePool", ["sample"], ["p"], kernel_shape=[factor, factor], strides=[factor, factor]),
             helper.make_node("Conv", ["p", "We", "be"], ["latent_mean"])]
    return _model(nodes, [helper.make_tensor_value_info("sample", TP.FLOAT, ["B", 3, "H", "W"])],
                  [helper.make_tensor_value_info("latent_mean", TP.FLOAT, ["B", c, "h", "w"])], inits)


def text_encoder_onnx(attention_mask: bool = True, seed: int = 3, ids_type=TP.INT64) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits = {"emb": rng.standard_normal((len(VOCAB), TEXT_DIM)).astype(np.float32)}
    ids = "input_ids"
    nodes = []
    if ids_type not in (TP.INT64, TP.INT32):  # a deliberately wrong declared dtype, still a valid graph
        nodes.append(helper.make_node("Cast", ["input_ids"], ["ids64"], to=TP.INT64))
        ids = "ids64"
    nodes.append(helper.make_node("Gather", ["emb", ids], ["e"], axis=0))
    inputs = [helper.make_tensor_value_info("input_ids", ids_type, ["B", "S"])]
    if attention_mask:
        inits["axis"] = np.array([-1], np.int64)
        inputs.append(helper.make_tensor_value_info("attention_mask", TP.INT64, ["B", "S"]))
        nodes += [helper.make_node("Cast", ["attention_mask"], ["mf"], to=TP.FLOAT),
                  helper.make_node("Unsqueeze", ["mf", "axis"], ["m3"]),
                  helper.make_node("Mul", ["e", "m3"], ["last_hidden_state"])]
    else:
        nodes.append(helper.make_node("Identity", ["e"], ["last_hidden_state"]))
    return _model(nodes, inputs, [helper.make_tensor_value_info("last_hidden_state", TP.FLOAT, ["B", "S", TEXT_DIM])], inits)


def write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))


def make_bundle(root: Path, kind: str = "pixel", cond: str | None = "class", channels: int = 3, size: int = 8,
                name: str | None = None, **manifest_overrides) -> Path:
    """Write a bundle: kind "pixel" | "latent"; cond None | "class" | "text" | "text+class" (both, like
    the shapes model) | "inpaint" | "semantic"."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    latent = kind == "latent"
    c = 4 if latent else channels
    h = size // 2 if latent else size
    extra = {"inpaint": 1 + c, "semantic": len(LABELS)}.get(cond, 0)
    has_text, has_class = cond in ("text", "text+class"), cond in ("class", "text+class")
    weights = unet_weights(c + extra, c, len(CLASS_NAMES) if has_class else None)
    save_onnx(unet_onnx(weights, c + extra, c, text=has_text, classes=has_class), root / "unet/model.onnx")
    np.savez(root.parent / f"{root.name}.weights.npz", **weights)
    files = {"unet": "unet/model.onnx"}
    if latent:
        save_onnx(vae_decoder_onnx(c), root / "vae_decoder/model.onnx")
        save_onnx(vae_encoder_onnx(c), root / "vae_encoder/model.onnx")
        (root / "preview").mkdir(exist_ok=True)
        (root / "preview/linear.json").write_text(json.dumps({"weight": [[0.3, 0.2, 0.1]] * c, "bias": [0, 0, 0]}))
        files.update(vae_decoder="vae_decoder/model.onnx", vae_encoder="vae_encoder/model.onnx",
                     preview="preview/linear.json")
    conditioning = {"text": None, "class": None, "mask": None}
    if has_text:
        save_onnx(text_encoder_onnx(), root / "text_encoder/model.onnx")
        write_tokenizer(root / "tokenizer/tokenizer.json")
        files.update(text_encoder="text_encoder/model.onnx", tokenizer="tokenizer/tokenizer.json")
        conditioning["text"] = {"max_length": MAX_LEN, "hidden_size": TEXT_DIM, "pad_id": 0}
    if has_class:
        conditioning["class"] = {"names": CLASS_NAMES}
    if cond == "inpaint":
        conditioning["mask"] = {"kind": "inpaint"}
    elif cond == "semantic":
        conditioning["mask"] = {"kind": "semantic", "labels": LABELS}
    data = {
        "format": "diffusion-studio-bundle", "format_version": 1, "name": name or root.name,
        "description": f"tiny {kind} {cond} test bundle", "kind": kind,
        "image": {"height": size, "width": size, "channels": 3 if latent else channels},
        "latent": {"channels": c, "height": h, "width": h, "scale_factor": 0.5} if latent else None,
        "schedule": {"name": "linear", "num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.02, "cosine_s": 0.008},
        "prediction_type": "epsilon", "conditioning": conditioning, "files": files,
        "unet": {"in_channels": c + extra, "out_channels": c},
        "defaults": {"sampler": "ddim", "steps": 5, "guidance": 2.0, "spacing": "trailing"},
        "precision": "fp32", "provenance": {"source": "tests/helpers/tiny_bundles.py"},
    }
    data.update(manifest_overrides)
    manifest: Manifest = manifest_from_dict(data)
    write_manifest(root, manifest)
    return root


def load_weights(bundle_dir: Path) -> dict:
    bundle_dir = Path(bundle_dir)
    with np.load(bundle_dir.parent / f"{bundle_dir.name}.weights.npz") as z:
        return {k: z[k] for k in z.files}
