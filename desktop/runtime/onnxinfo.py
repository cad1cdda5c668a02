"""What an ONNX file will make ONNX Runtime read besides itself (its external-data files), and how
many times a U-Net graph halves its input (`downsampling_count`, for bundles that do not record it).

A tensor stored outside the graph (`TensorProto.data_location = EXTERNAL`, the file named by its
`external_data` entry "location", relative to the model's folder) is read by ONNX Runtime when the
session is created. A bundle must list and hash every such file, or the weights could change
without changing the model's hash. `external_data_files(path)` walks the protobuf wire format of
the model (no `onnx` package needed: the runtime does not depend on it) over a memory map, skipping
tensor data by its length, so a 2 GB graph is scanned without being read into memory.

Messages walked (onnx.proto field numbers): ModelProto.graph (7), .functions (25), .training_info
(20); GraphProto.node (1), .initializer (5), .sparse_initializer (15); NodeProto.attribute (5);
AttributeProto.t (5), .g (6), .tensors (10), .graphs (11), .sparse_tensor (22), .sparse_tensors
(23); FunctionProto.node (7); TrainingInfoProto.initialization (1), .algorithm (2);
SparseTensorProto.values (1), .indices (2); TensorProto.external_data (13) of
StringStringEntryProto {key (1), value (2)}.
"""
from __future__ import annotations

import contextlib
import mmap
import os

CHILDREN = {  # message -> {field number: child message}
    "model": {7: "graph", 25: "function", 20: "training"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}
MAX_DEPTH = 64


class OnnxFormatError(ValueError):
    """Not a readable ONNX protobuf."""


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise OnnxFormatError("a number runs past the end of its message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int):
    """Yields (field number, wire type, value or (offset, length)) of one message."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield number, wire, value
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if pos + length > end:
                raise OnnxFormatError("a field runs past the end of its message")
            yield number, wire, (pos, length)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise OnnxFormatError(f"wire type {wire} does not occur in ONNX files")
    if pos != end:
        raise OnnxFormatError("a message runs past its end")


def _text(buf, span: tuple[int, int]) -> str:
    """A string field's text ((offset, length) as `_fields` yields it)."""
    return bytes(buf[span[0]:span[0] + span[1]]).decode("utf-8", "replace")


@contextlib.contextmanager
def _mapped(path: str | os.PathLike):
    """The file, read-only memory-mapped (an empty file is no ONNX model)."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise OnnxFormatError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield buf


def _entry(buf, offset: int, length: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, v in _fields(buf, offset, offset + length):
        if wire == 2 and number in (1, 2):
            text = _text(buf, v)
            key, value = (text, value) if number == 1 else (key, text)
    return key, value


def external_data_files(path: str | os.PathLike) -> list[str]:
    """The external-data locations named in an ONNX model, as written (relative to its folder), sorted."""
    found: set[str] = set()
    with _mapped(path) as buf:
        stack = [("model", 0, len(buf), 0)]
        while stack:
            kind, start, end, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise OnnxFormatError(f"graphs nested more than {MAX_DEPTH} deep")
            children = CHILDREN.get(kind, {})
            for number, wire, value in _fields(buf, start, end):
                if wire != 2 or number not in children:
                    continue
                child = children[number]
                if child == "entry":
                    key, location = _entry(buf, *value)
                    if key == "location":
                        found.add(location)
                else:
                    stack.append((child, value[0], value[0] + value[1], depth + 1))
    return sorted(found)


# NodeProto: op_type (4), attribute (5); AttributeProto: name (1), ints (8, packed or not).
DOWNSAMPLING_OPS = ("Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "QLinearConv", "ConvInteger",
                    "AveragePool", "MaxPool")


def _strides(buf, offset: int, length: int) -> list[int]:
    """The `strides` values of one AttributeProto ([] for another attribute)."""
    name, ints = "", []
    for number, wire, value in _fields(buf, offset, offset + length):
        if number == 1 and wire == 2:
            name = _text(buf, value)
        elif number == 8 and wire == 0:
            ints.append(value)
        elif number == 8 and wire == 2:
            pos, end = value[0], value[0] + value[1]
            while pos < end:
                v, pos = _varint(buf, pos, end)
                ints.append(v)
    return ints if name == "strides" else []


def _halves(buf, offset: int, length: int) -> bool:
    """Whether one NodeProto is a convolution or pooling with stride 2 (a U-Net's down-sampling)."""
    op, strides = "", []
    for number, wire, value in _fields(buf, offset, offset + length):
        if number == 4 and wire == 2:
            op = _text(buf, value)
        elif number == 5 and wire == 2:
            strides += _strides(buf, *value)
    return op in DOWNSAMPLING_OPS and 2 in strides


def downsampling_count(path: str | os.PathLike) -> int:
    """How many nodes of the main graph halve the spatial size (stride-2 convolutions and pools): the
    depth of a U-Net's encoder, so its inputs' sides must be multiples of 2^count. Reads the graph's
    node list only (initializers are skipped by length, as in `external_data_files`)."""
    count = 0
    with _mapped(path) as buf:
        for number, wire, graph in _fields(buf, 0, len(buf)):
            if number != 7 or wire != 2:
                continue
            for field, kind, node in _fields(buf, graph[0], graph[0] + graph[1]):
                if field == 1 and kind == 2 and _halves(buf, *node):
                    count += 1
    return count
