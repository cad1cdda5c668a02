"""Choosing the ONNX Runtime execution provider, creating sessions, and reporting what really loaded.

`provider="auto"` tries, among `onnxruntime.get_available_providers()`, CUDA, then DirectML, then
CoreML, then CPU. onnxruntime-gpu lists CUDA even where no GPU or CUDA library exists, so each
attempt creates the session and reads `session.get_providers()[0]` to see what really loaded; a
provider that did not load is skipped quietly (ONNX Runtime's own logging is silenced during the
attempt, so a machine without a GPU prints nothing) and remembered, with the reason, for the rest
of the process (`fallback_note` turns it into the one sentence the app and the CLI show).

A forced provider (`"cpu"`, `"cuda"`, `"directml"`, `"coreml"`, `"tensorrt"`, `"rocm"`,
`"openvino"`, or a full ONNX Runtime name) that cannot load raises `ProviderError` (its attempt is
not silenced: ONNX Runtime's own message says which library is missing). After a quiet attempt the
process-wide ONNX Runtime log level is left at 3 (errors only).

A bundle whose graphs only run on some providers (`studio.json` "providers", written by
`export --optimize`) passes them as `allowed`: "auto" tries only those, a forced provider outside
them is a ProviderError saying why.

Threads: a program run (the app, `generate`, `info`; desktop/cli.py) chooses its policy once with
`configure_program_threads`, from DIFFUSION_STUDIO_THREADS:
- `burst` (the default): one pool per session whose idle threads spin between the kernels of a run
  and stop spinning as soon as the run ends (`session.force_spinning_stop=1`), so a model's many
  small kernels start without waking threads, and nothing spins between steps, in the next stage
  (the VAE after the U-Net loop) or under the app's window;
- `sleep`: one pool per session whose idle threads sleep at once (`session.intra_op.allow_spinning=0`);
- `spin`: ONNX Runtime's global pools shared by all the sessions, whose idle threads spin a while
  before sleeping, also between runs (Python cannot make the global pools' threads stop).
Measured per image on the shipped models (benchmarks/bench_runtime.py models --policies sleep,spin,
2-core EPYC, separate processes alternated, six runs): `burst` against `sleep` is 0.97-1.23x per
image (median 1.09x) with the machine to itself and about the same (0.95-1.23x, median 0.98x) with
a niced busy process beside it. A library user keeps ONNX Runtime's default, one spinning pool per
session: once the global pools exist, ONNX Runtime refuses every session created with default
options (its quantisation calibrator, optimum, ...), so only a process that creates all its
sessions here may share them.

CUDA libraries: onnxruntime-gpu loads CUDA and cuDNN when its CUDA provider starts. Where they come
from NVIDIA's pip wheels (`pip install 'onnxruntime-gpu[cuda,cudnn]'`, or PyTorch's CUDA build in the
same environment) they are not on the loader's path, so before the first CUDA attempt on a machine
whose driver shows a GPU, `preload_cuda_libraries` lets ONNX Runtime load them from there
(`onnxruntime.preload_dlls`, 1.21 and later); what it prints is kept out of the user's terminal.

Sessions on the CPU and CUDA providers go through `graph_cache`: the graph ONNX Runtime optimised
the first time is loaded as is the next time.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import onnxruntime as ort

from . import graph_cache

ort.disable_telemetry_events()  # Windows: its ETW events (elsewhere ORT_DISABLE_TELEMETRY, set by desktop/__init__.py)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PREFERENCE = (CUDA, "DmlExecutionProvider", "CoreMLExecutionProvider", CPU)
ALIASES = {
    "cpu": CPU,
    "cuda": CUDA,
    "directml": "DmlExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
CACHED = (CPU, CUDA)  # providers whose optimised graphs ONNX Runtime can save (no compiled nodes)
_failed: dict[str, str | None] = {}  # provider -> why it did not load in this process (None: nothing to say)
# thread pools: as asked for (configure_threads); "ready": whether they were created (None: not yet)
_pool = {"shared": False, "spinning": True, "stop_after_run": False, "ready": None}
_cuda_preload: dict[str, str] = {}  # "output": what onnxruntime.preload_dlls printed, once it ran


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


def candidates(provider: str = "auto", allowed: list[str] | None = None) -> list[str]:
    """Providers to try in order, for `provider` ("auto" or a name), among `allowed` (ORT names)."""
    if provider in (None, "", "auto"):
        available = ort.get_available_providers()
        order = [p for p in PREFERENCE if p in available and p not in _failed and (allowed is None or p in allowed)]
        return order or [CPU if allowed is None or CPU in allowed else allowed[0]]
    return [resolve_provider(provider)]


def nvidia_gpu_visible() -> bool:
    """Whether the NVIDIA driver shows a GPU (Linux); a machine without one needs no CUDA note."""
    try:
        gpus = Path("/proc/driver/nvidia/gpus")
        return gpus.is_dir() and any(gpus.iterdir())
    except OSError:
        return False


def preload_cuda_libraries() -> str | None:
    """Once per process, on a machine whose NVIDIA driver shows a GPU: ONNX Runtime loads CUDA and
    cuDNN from NVIDIA's pip wheels (onnxruntime.preload_dlls); returns what it printed (None when it
    did not run). A library it cannot find is no error here: the CUDA attempt then fails quietly."""
    if "output" in _cuda_preload:
        return _cuda_preload["output"]
    if not hasattr(ort, "preload_dlls") or not nvidia_gpu_visible():
        return None
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError/OSError
            print(f"preload_dlls failed: {exc}")
    for w in warned:
        printed.write(f"{w.message}\n")
    _cuda_preload["output"] = printed.getvalue()
    return _cuda_preload["output"]


def fallback_note(chosen: str, allowed: list[str] | None = None) -> str | None:
    """One sentence when "auto" ended on a provider after a better one did not load for a reason
    worth saying (a GPU whose driver fails, too little GPU memory), else None."""
    skipped = [p for p in PREFERENCE[:PREFERENCE.index(chosen)] if _failed.get(p) and (allowed is None or p in allowed)] \
        if chosen in PREFERENCE else []
    if not skipped:
        return None
    return f"{short_name(skipped[0]).upper() if skipped[0] == CUDA else short_name(skipped[0])} " \
           f"{_failed[skipped[0]]}: running on {short_name(chosen)}"


def mark_failed(provider: str, reason: str) -> None:
    """Remembers that `provider` is not to be used in this process (e.g. too little GPU memory)."""
    _failed[provider] = reason


def configure_threads(shared: bool, spinning: bool = True, stop_after_run: bool = False) -> None:
    """One thread pool for every session of the process (`shared`), or one per session (ONNX
    Runtime's default); decided before the first session. `spinning`: idle threads spin briefly
    before sleeping (ONNX Runtime's default); `stop_after_run`: ... and stop spinning when a run ends."""
    if _pool["ready"] is not None and shared != _pool["shared"]:
        raise RuntimeError("the thread pools are chosen before the first ONNX Runtime session of the process")
    _pool.update(shared=bool(shared), spinning=bool(spinning), stop_after_run=bool(stop_after_run))


THREADS_ENV = "DIFFUSION_STUDIO_THREADS"
THREAD_POLICIES = {"burst": {"shared": False, "spinning": True, "stop_after_run": True},
                   "sleep": {"shared": False, "spinning": False},
                   "spin": {"shared": True, "spinning": True}}
DEFAULT_THREAD_POLICY = "burst"


def configure_program_threads(environ=None) -> None:
    """The thread policy of a program run, from DIFFUSION_STUDIO_THREADS (DEFAULT_THREAD_POLICY when
    unset or empty; see the module docstring); an unknown value is a ProviderError naming it."""
    value = (os.environ if environ is None else environ).get(THREADS_ENV, "")
    policy = THREAD_POLICIES.get(value.strip().lower() or DEFAULT_THREAD_POLICY)  # set but empty: as if unset
    if policy is None:
        raise ProviderError(f"{THREADS_ENV}={value!r} is not a thread policy: use one of {', '.join(THREAD_POLICIES)}")
    configure_threads(**policy)


def shared_thread_pool() -> bool:
    """Creates ONNX Runtime's global thread pools once if asked for; whether sessions use them."""
    if _pool["ready"] is None:
        if not _pool["shared"]:
            _pool["ready"] = False
        else:
            try:
                ort.set_global_thread_pool_sizes(0, 1)  # intra: ORT's default; inter: none (sequential)
                _pool["ready"] = True
            except Exception as exc:  # noqa: BLE001 - ORT raises plain RuntimeError/Fail
                _pool["ready"] = "already been created" in str(exc)  # by someone else in this process
    return _pool["ready"]


def session_options(quiet: bool = False, provider: str = CPU) -> ort.SessionOptions:
    """Errors only in ONNX Runtime's log (nothing at all for a quiet attempt), the thread policy,
    DirectML's required settings."""
    options = ort.SessionOptions()
    options.log_severity_level = 4 if quiet else 3
    if shared_thread_pool():
        options.use_per_session_threads = False
    if not _pool["spinning"]:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if _pool["stop_after_run"]:
        options.add_session_config_entry("session.force_spinning_stop", "1")
    if provider == "DmlExecutionProvider":  # DirectML supports neither memory patterns nor parallel execution
        options.enable_mem_pattern = False
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _new_session(path_or_bytes, options, provider: str, quiet: bool, provider_options: dict | None):
    chosen = [(provider, provider_options)] if provider_options else [provider]
    providers = chosen if provider == CPU else [*chosen, CPU]
    if quiet:
        ort.set_default_logger_severity(4)  # the failure to load a provider library logs here, not in the session
    try:
        return ort.InferenceSession(path_or_bytes, options, providers=providers)
    finally:
        if quiet:
            ort.set_default_logger_severity(3)


def _try_session(path: str, provider: str, quiet: bool, *, provider_options: dict | None = None,
                 sha256: str | None = None, verify: bool = True, cache: bool = True):
    """A session on `provider` (or ONNX Runtime's CPU fallback); through the graph cache if it can."""
    key = None
    if cache and provider in CACHED:
        key = graph_cache.make_key(Path(path), provider, {"level": "all", "provider_options": provider_options or {}},
                                   sha256)
        cached = graph_cache.lookup(key, verify)
        if cached is not None:
            options = session_options(quiet, provider)
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # already optimised
            try:
                session = _new_session(str(cached), options, provider, quiet, provider_options)
                if session.get_providers()[0] == provider:
                    return session
            except Exception:  # noqa: BLE001 - a damaged cache entry: rebuild it from the source
                pass
            graph_cache.discard(cached)
    options = session_options(quiet, provider)
    pending = graph_cache.begin(key, options, Path(path)) if key is not None else None
    try:
        session = _new_session(path, options, provider, quiet, provider_options)
    except BaseException:
        graph_cache.abandon(pending)
        raise
    if session.get_providers()[0] == provider:
        graph_cache.commit(pending)
    else:
        graph_cache.abandon(pending)
    return session


def _out_of_memory(exc: Exception) -> bool:
    text = str(exc).lower()
    return "out of memory" in text or "failed to allocate" in text or "bfcarena" in text


def _only_for(allowed: list[str]) -> str:
    return " or ".join(short_name(p) for p in allowed)


def create_session(path: str | os.PathLike, provider: str = "auto", *, allowed: list[str] | None = None,
                   provider_options: dict | None = None, sha256: str | None = None, verify: bool = True,
                   cache: bool = True) -> tuple[ort.InferenceSession, str]:
    """An InferenceSession for `path` on the first provider that really loads; (session, provider).

    `allowed`: the only providers the graph runs on (ORT names; None: any). `provider_options`
    apply to the provider that is not the CPU (e.g. CUDA's). `sha256`: the file's hash if known
    (the graph cache's key); `verify`: check cached graphs' hashes too; `cache=False` skips the
    cache. Errors from a bad model file (not from the provider) propagate as ONNX Runtime raises
    them; the caller (bundle.py) wraps them with the file name.
    """
    path = os.fspath(path)
    forced = provider not in (None, "", "auto")
    order = candidates(provider, allowed)
    if forced and order[0] not in ort.get_available_providers():
        raise ProviderError(
            f"execution provider '{provider}' is not available in this ONNX Runtime build "
            f"(available: {', '.join(short_name(p) for p in ort.get_available_providers())})")
    if allowed is not None and order[0] not in allowed:
        raise ProviderError(f"this model's graphs were optimised for {_only_for(allowed)} and cannot run on "
                            f"{short_name(order[0])}; use --provider {short_name(allowed[0])} on a machine that has "
                            f"it, or export the model again for {short_name(order[0])}")
    if CUDA in order:
        preload_cuda_libraries()
    cpu_ok = allowed is None or CPU in allowed
    fallback = None  # a CPU session ONNX Runtime fell back to, reused if CPU's turn comes
    kw = dict(sha256=sha256, verify=verify, cache=cache)
    for p in order:
        if p == CPU and fallback is not None:
            return fallback, CPU  # this fallback session is what CPU would have given
        try:
            session = _try_session(path, p, quiet=not forced and p != CPU,
                                   provider_options=None if p == CPU else provider_options, **kw)
        except Exception as exc:  # noqa: BLE001
            if forced or p == CPU:
                raise
            # a quiet attempt that failed (GPU out of memory, a CPU fallback that cannot run a fused
            # graph): the next provider gets its turn; a damaged file fails there too, and says so.
            # Only running out of memory is remembered for the process (a damaged file is no reason)
            if _out_of_memory(exc):
                _failed.setdefault(p, "ran out of memory loading the model")
            continue
        loaded = session.get_providers()[0]
        if loaded == p:
            return session, p
        if forced:
            raise ProviderError(
                f"execution provider '{provider}' could not be loaded on this machine (ONNX Runtime fell back "
                f"to {short_name(loaded)}); check the drivers, or use --provider cpu")
        _failed.setdefault(p, "did not load (check the driver and the CUDA libraries)"
                           if p == CUDA and nvidia_gpu_visible() else None)
        if fallback is None:
            fallback = session
    if fallback is not None and cpu_ok:
        return fallback, CPU
    if not cpu_ok:
        raise ProviderError(f"this model's graphs were optimised for {_only_for(allowed)}, which did not load on "
                            f"this machine; export the model again without --optimize to run it on the CPU")
    return _try_session(path, CPU, quiet=False, **kw), CPU
