"""Choosing the ONNX Runtime execution provider, and reporting the one that really loaded.

`provider="auto"` tries, among `onnxruntime.get_available_providers()`, CUDA, then DirectML, then
CoreML, then CPU. onnxruntime-gpu lists CUDA even where no GPU or CUDA library exists, so each
attempt creates the session and reads `session.get_providers()[0]` to see what really loaded; a
provider that did not load is skipped quietly (ONNX Runtime's own logging is silenced during the
attempt, so a machine without a GPU prints nothing) and remembered for the rest of the process.

A forced provider (`"cpu"`, `"cuda"`, `"directml"`, `"coreml"`, `"tensorrt"`, `"rocm"`,
`"openvino"`, or a full ONNX Runtime name) that cannot load raises `ProviderError` (its attempt is
not silenced: ONNX Runtime's own message says which library is missing). After a quiet attempt the
process-wide ONNX Runtime log level is left at 3 (errors only).
"""
from __future__ import annotations

import os

import onnxruntime as ort

ort.disable_telemetry_events()  # Windows: its ETW events (elsewhere ORT_DISABLE_TELEMETRY, set by desktop/__init__.py)

CPU = "CPUExecutionProvider"
PREFERENCE = ("CUDAExecutionProvider", "DmlExecutionProvider", "CoreMLExecutionProvider", CPU)
ALIASES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
_failed: set[str] = set()  # providers that did not load in this process


class ProviderError(RuntimeError):
    """A forced execution provider is unknown or could not be loaded."""


def short_name(provider: str) -> str:
    """'CUDAExecutionProvider' -> 'cuda' (the name a user types)."""
    for alias, full in ALIASES.items():
        if full == provider and alias != "dml":
            return alias
    return provider


def resolve_provider(name: str) -> str:
    """A user's provider name -> ONNX Runtime's name, or ProviderError listing the choices."""
    if name in ALIASES:
        return ALIASES[name]
    if name.lower() in ALIASES:
        return ALIASES[name.lower()]
    if name.endswith("ExecutionProvider"):
        return name
    choices = ", ".join(["auto", *sorted(k for k in ALIASES if k != "dml")])
    raise ProviderError(f"unknown execution provider '{name}'; choose one of: {choices}")


def candidates(provider: str = "auto") -> list[str]:
    """Providers to try in order, for `provider` ("auto" or a name)."""
    if provider in (None, "", "auto"):
        available = ort.get_available_providers()
        return [p for p in PREFERENCE if p in available and p not in _failed] or [CPU]
    return [resolve_provider(provider)]


def session_options(quiet: bool = False, provider: str = CPU) -> ort.SessionOptions:
    """Errors only in ONNX Runtime's log (nothing at all for a quiet attempt); DirectML's required settings."""
    options = ort.SessionOptions()
    options.log_severity_level = 4 if quiet else 3
    if provider == "DmlExecutionProvider":  # DirectML supports neither memory patterns nor parallel execution
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _try_session(path_or_bytes, provider: str, quiet: bool):
    providers = [provider] if provider == CPU else [provider, CPU]
    if quiet:
        ort.set_default_logger_severity(4)  # the failure to load a provider library logs here, not in the session
    try:
        session = ort.InferenceSession(path_or_bytes, session_options(quiet, provider), providers=providers)
    finally:
        if quiet:
            ort.set_default_logger_severity(3)
    return session


def create_session(path: str | os.PathLike, provider: str = "auto") -> tuple[ort.InferenceSession, str]:
    """An InferenceSession for `path` on the first provider that really loads; (session, provider).

    Errors from a bad model file (not from the provider) propagate as ONNX Runtime raises them; the
    caller (bundle.py) wraps them with the file name.
    """
    path = os.fspath(path)
    forced = provider not in (None, "", "auto")
    order = candidates(provider)
    if forced and order[0] not in ort.get_available_providers():
        raise ProviderError(
            f"execution provider '{provider}' is not available in this ONNX Runtime build "
            f"(available: {', '.join(short_name(p) for p in ort.get_available_providers())})")
    fallback = None  # a CPU session ONNX Runtime fell back to, reused if CPU's turn comes
    for p in order:
        if p == CPU and fallback is not None:
            return fallback, CPU  # this fallback session is what CPU would have given
        session = _try_session(path, p, quiet=not forced and p != CPU)
        loaded = session.get_providers()[0]
        if loaded == p:
            return session, p
        if forced:
            raise ProviderError(
                f"execution provider '{provider}' could not be loaded on this machine (ONNX Runtime fell back "
                f"to {short_name(loaded)}); check the drivers, or use --provider cpu")
        _failed.add(p)
        if loaded == CPU and fallback is None:
            fallback = session
    if fallback is not None:
        return fallback, CPU
    return _try_session(path, CPU, quiet=False), CPU
