"""Random inputs for an ONNX model at its declared shapes."""
import numpy as np


def feeds_for(model, batch=2, seed=0):
    """Random inputs at the model's declared shapes (4 for every symbolic size but the batch)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (kind, shape) in model.inputs.items():
        dims = [batch if i == 0 else (d if isinstance(d, int) else 4) for i, d in enumerate(shape)]
        out[name] = rng.integers(0, 2, dims) if "int" in kind else rng.standard_normal(dims).astype(np.float32)
    return out
