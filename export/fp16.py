"""Half-precision variants of an exported graph, and saving (with external data).

- `weights_to_fp16`: *storage* precision. Every large float32 initializer is stored as float16 and
  a `Cast(to=float)` node restores the original name, so the graph computes in fp32 on any
  provider (ONNX Runtime folds the casts at session load). Files are about half the size. Small
  initializers (< 16 elements: epsilons, shape helpers) and values outside fp16's range stay fp32.
- `compute_to_fp16`: *compute* precision for GPUs (`--gpu-fp16`): the whole graph in fp16 with
  float32 inputs and outputs (`onnxruntime.transformers.float16`, keep_io_types=True).
- `weights_to_fp32`: the inverse of `weights_to_fp16` (graph rewriters need the weights as
  initializers: export/optimize.py, export/quantize.py).
- `save_model`: protobuf cannot hold more than 2 GB, so larger models are saved with their
  weights in one external data file `<name>.data` beside the graph.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TWO_GB = 2**31
EXTERNAL_DATA_THRESHOLD = TWO_GB - 64 * 2**20  # a margin for the graph structure itself
FP16_MAX = 65504.0
MIN_ELEMENTS = 16


def weights_to_fp16(model: onnx.ModelProto, min_elements: int = MIN_ELEMENTS) -> onnx.ModelProto:
    """Stores float32 initializers as float16 followed by Cast(to=float); converts `model` in place
    and returns it."""
    graph = model.graph
    kept, casts = [], []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            kept.append(init)
            continue
        value = numpy_helper.to_array(init)
        if value.size < min_elements or not np.all(np.abs(value) <= FP16_MAX):
            kept.append(init)
            continue
        half_name = init.name + "__fp16"
        kept.append(numpy_helper.from_array(value.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT,
                                      name=init.name + "__cast_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model


def weights_to_fp32(model: onnx.ModelProto) -> onnx.ModelProto:
    """Undoes `weights_to_fp16` (an fp16-weight bundle's graph -> fp32 initializers, no Cast nodes),
    so graph rewriters see the weights as initializers again; converts `model` in place."""
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    restored, nodes = [], []
    for node in graph.node:
        if node.op_type == "Cast" and len(node.input) == 1 and node.input[0] in halves \
                and any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute):
            restored.append(numpy_helper.from_array(numpy_helper.to_array(halves[node.input[0]]).astype(np.float32),
                                                    node.output[0]))
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input} | {o.name for o in graph.output}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept + restored)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def compute_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Whole graph in float16, float32 inputs and outputs (for CUDA)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=_size(model) >= TWO_GB)


def _size(model: onnx.ModelProto) -> int:
    """Bytes of the weights (protobuf's own ByteSize fails past 2 GB)."""
    total = 0
    for init in model.graph.initializer:
        total += len(init.raw_data) if init.HasField("raw_data") else init.ByteSize()
    return total + sum(n.ByteSize() for n in model.graph.node)


def needs_external_data(model: onnx.ModelProto) -> bool:
    return _size(model) >= EXTERNAL_DATA_THRESHOLD


def save_model(model: onnx.ModelProto, path: Path, external_data: bool | None = None) -> list[Path]:
    """Saves a model; returns the files written (the graph, and `<name>.data` with external data).

    external_data: None decides by size (> ~2 GB), True/False forces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    use_external = needs_external_data(model) if external_data is None else bool(external_data)
    data_path = path.with_name(path.name + ".data")
    if data_path.exists():
        data_path.unlink()
    if use_external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_path.name, size_threshold=1024)
        return [path, data_path] if data_path.exists() else [path]
    onnx.save_model(model, str(path))
    return [path]


def load_model(path: Path) -> onnx.ModelProto:
    """Loads a graph with its external data, if any."""
    return onnx.load(str(path), load_external_data=True)
