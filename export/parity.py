"""ONNX Runtime against PyTorch: every exported graph is run on fresh random inputs and compared.

Error measures, per graph over all batch sizes:
- max_abs = max |onnx - torch|
- max_rel = max |onnx - torch| / max |torch|, i.e. the worst error relative to the largest
  reference value (an element-wise ratio would blow up where the reference crosses zero).

Tolerances on max_rel (chosen, not fitted):
- fp32 graphs: 1e-4. Both sides compute in fp32 (eps 1.2e-7); kernel order differences in a few
  dozen layers stay around 1e-6, so 1e-4 only fails when the graph is wrong.
- fp16 *weights* (fp32 compute): 1e-2. Rounding a weight to fp16 moves it by up to 2**-11 = 4.9e-4
  relative; with ~20-50 layers the independent errors add roughly in quadrature to a few 1e-3 at
  the output, so 1e-2 leaves a safety margin while a wrong graph (errors of order 1) still fails.
- fp16 *compute* (`--gpu-fp16`): 3e-2. Activations and accumulations are rounded to fp16 as well,
  roughly doubling the weight-only error; normalisation layers keep it from compounding.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "fp16-compute": 3e-2}
BATCH_SIZES = (1, 3)


class ExportError(RuntimeError):
    """The model cannot be exported as asked; the message says what to change."""


class ParityError(ExportError):
    """An exported graph disagrees with PyTorch beyond the tolerance; nothing was written."""


@dataclass
class ParityResult:
    role: str
    precision: str
    max_abs: float
    max_rel: float
    tolerance: float
    batch_sizes: tuple[int, ...]
    provider: str

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_rel) and self.max_rel <= self.tolerance)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return (f"{self.role:<13} {self.precision:<13} max_abs={self.max_abs:.3e} "
                f"max_rel={self.max_rel:.3e} (tol {self.tolerance:.0e}, batches "
                f"{','.join(map(str, self.batch_sizes))}, {self.provider}) {verdict}")


def errors(onnx_out: np.ndarray, torch_out: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max |b|) for ONNX output a and PyTorch reference b."""
    a = np.asarray(onnx_out, dtype=np.float64)
    b = np.asarray(torch_out, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    diff = np.abs(a - b)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(b).max()) if b.size else 0.0
    if not np.isfinite(max_abs):
        return float("inf"), float("inf")
    return max_abs, max_abs / max(scale, 1e-12)


def make_session(path: Path, providers=None):
    """A plain session (no graph cache) with the runtime's options (so it also works in a process
    that shares ONNX Runtime's global thread pool)."""
    import onnxruntime as ort

    from desktop.runtime.providers import session_options

    return ort.InferenceSession(str(path), session_options(), providers=providers or ["CPUExecutionProvider"])


def reference_outputs(graph, batch_sizes=BATCH_SIZES, seed: int = 1234) -> list[tuple[dict, np.ndarray]]:
    """The random inputs of `check_graph` (per batch size, from `seed`) with PyTorch's outputs on them,
    to pass as its `references` when one graph is checked more than once."""
    rng = np.random.default_rng(seed)
    references = []
    for batch in batch_sizes:
        feeds = graph.make_inputs(batch, rng)
        references.append((feeds, graph.torch_forward(feeds)))
    return references


def check_graph(graph, onnx_path: Path, *, precision: str = "fp32", tolerance: float | None = None,
                batch_sizes=BATCH_SIZES, seed: int = 1234, providers=None, session=None,
                references=None) -> ParityResult:
    """Runs `onnx_path` in ONNX Runtime and `graph.module` in PyTorch on the same random inputs.

    `references`: `reference_outputs(graph, batch_sizes, seed)` computed before (the PyTorch side
    is then not run again). Returns the errors; does not raise (see `require`)."""
    tol = TOLERANCE[precision] if tolerance is None else tolerance
    session = session or make_session(onnx_path, providers)
    session_inputs = {i.name for i in session.get_inputs()}
    if references is None:
        references = reference_outputs(graph, batch_sizes, seed)
    max_abs = max_rel = 0.0
    for feeds, reference in references:
        out = session.run(None, {k: v for k, v in feeds.items() if k in session_inputs})[0]
        a, r = errors(out, reference)
        max_abs, max_rel = max(max_abs, a), max(max_rel, r)
    return ParityResult(graph.role, precision, max_abs, max_rel, tol, tuple(batch_sizes),
                        session.get_providers()[0])


def require(result: ParityResult, path: Path | None = None) -> ParityResult:
    """Raises ParityError when the check failed."""
    if not result.ok:
        where = f" ({path})" if path else ""
        raise ParityError(
            f"the exported {result.role} graph{where} disagrees with PyTorch: max relative error "
            f"{result.max_rel:.3e} (max abs {result.max_abs:.3e}) over batch sizes "
            f"{list(result.batch_sizes)}, tolerance {result.tolerance:.0e} for {result.precision}; "
            "nothing was written"
        )
    return result
