"""Training checkpoints as one safetensors file, never a pickle.

`save_checkpoint(path, state)` takes any nested structure of dicts / lists / tuples / tensors /
numpy arrays / JSON scalars (a model state dict, an optimizer's `state_dict()`, RNG states, the
step) and splits it into tensors (stored under their key path) and a JSON skeleton (stored in the
safetensors header's metadata, with a sha256 over all tensor bytes). One file holds everything, so
an interrupted write can never pair new tensors with an old sidecar; the file is written to a
temporary name and renamed. A human-readable `last.json`-style sidecar (`path.with_suffix(".json")`)
is written beside it for people and tools; loading never needs it.

`load_checkpoint(path)` rebuilds the structure; a missing, truncated or corrupted file raises
`CheckpointError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from desktop.runtime import fileio

FORMAT = "diffusion-studio-checkpoint"
VERSION = "1"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read; the message names the file and what is wrong."""


def _flatten(obj, prefix: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "ui" else obj.dtype))
        return {"__ndarray__": prefix, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, f"{prefix}/{k}", tensors) for k, v in obj.items()}}
        return {"__items__": [[k, _flatten(v, f"{prefix}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}/{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at '{prefix}' in a checkpoint")


def _unflatten(node, tensors: dict):
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        return tensors[node["__tensor__"]]
    if "__ndarray__" in node:
        return tensors[node["__ndarray__"]].numpy().astype(node["dtype"])
    if "__tuple__" in node:
        return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
    if "__items__" in node:
        return {k: _unflatten(v, tensors) for k, v in node["__items__"]}
    return {k: _unflatten(v, tensors) for k, v in node["__dict__"].items()}


def _digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | Path, state: dict, summary: dict | None = None) -> Path:
    """Write `state` atomically to `path` (.safetensors) and `summary` (JSON) beside it."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    skeleton = _flatten(state, "s", tensors)
    metadata = {"format": FORMAT, "version": VERSION, "skeleton": json.dumps(skeleton), "sha256": _digest(tensors)}
    fileio.write_bytes(path, save(tensors, metadata=metadata))
    if summary is not None:
        fileio.write_bytes(path.with_suffix(".json"), (json.dumps(summary, indent=2) + "\n").encode())
    return path


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by `save_checkpoint`; CheckpointError names the file if it is bad."""
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    try:
        tensors = load(data)
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises several error types for bad headers/buffers
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({exc}); delete it or resume from another") from exc
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a diffusion-studio checkpoint (format={metadata.get('format')!r})")
    if _digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: its tensor data does not match the stored sha256")
    try:
        return _unflatten(json.loads(metadata["skeleton"]), tensors)
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has a damaged header ({exc})") from exc


def capture_rng() -> dict:
    """The global RNG states a run depends on: torch (CPU and CUDA), numpy, python."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached)))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])
