"""Optimised graphs cached on disk, so that opening a model a second time skips ONNX Runtime's
graph optimisation.

ONNX Runtime optimises every graph when it creates a session (constant folding, which also turns
fp16-stored weights into fp32 ones; operator fusions; the CPU's blocked NCHWc layout).
`SessionOptions.optimized_model_filepath` writes the graph it ends up running; a later session
loads that file with optimisation switched off, so it runs the same kernels on the same graph and
gives the same bits (tests/runtime/test_graph_cache.py checks it).

- Where: `paths.user_cache_dir() / "graphs" / <key>/` holding `model.onnx` (plus `weights.bin`,
  its external initializers, for big models) and `meta.json` (the key's material, and every
  file's size and sha256).
- Key: sha256 of the source file's identity (its sha256 when the manifest gives one, always its
  size and mtime, the same for external data beside it), the ONNX Runtime version, the execution
  provider, the session options that change the graph, and the CPU (the NCHWc layout is
  specific to the CPU's vector width).
- Corruption: an entry is used only when every file has the size recorded in `meta.json`, and,
  when the caller verifies hashes (`verify=True`, as `open_bundle` does by default), the sha256 too;
  anything else removes the entry and the session is built from the source again. An entry that
  ONNX Runtime then fails to load is removed as well (the caller does it: `discard`).
- Concurrent writers: each writer fills its own temporary folder and renames it into place; the
  rename is atomic, and a writer that finds the entry already there throws its copy away.
- Size: after each write, least recently used entries are removed while the cache holds more
  than `LIMIT_BYTES`.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import onnxruntime as ort

from .paths import user_cache_dir

LIMIT_BYTES = 8 * 2**30
EXTERNAL_FROM_BYTES = 512 * 2**20  # sources this large get their optimised weights in weights.bin
GRAPH = "model.onnx"
WEIGHTS = "weights.bin"
META = "meta.json"
HASH_CHUNK = 2**22


def cache_root() -> Path:
    return user_cache_dir() / "graphs"


@lru_cache(maxsize=1)
def cpu_fingerprint() -> str:
    """The CPU model and its feature flags (Linux), else what `platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        lines = [line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith(("model name", "flags", "Features")) and ":" in line]
        if lines:
            return hashlib.sha256("\n".join(sorted(set(lines))).encode()).hexdigest()[:16]
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _identity(path: Path, sha256: str | None) -> dict:
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


@dataclass(frozen=True)
class Key:
    """What a cached graph was made from; `digest` names its folder."""

    material: dict

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.material, sort_keys=True).encode()).hexdigest()[:32]


def make_key(source: Path, provider: str, options: dict, sha256: str | None = None) -> Key:
    """The key of `source` (an .onnx file, with `<name>.data` beside it if it has one)."""
    files = [_identity(source, sha256)]
    data = source.with_name(source.name + ".data")
    if data.is_file():
        files.append(_identity(data, None))
    return Key({"files": files, "path": str(source.resolve()), "onnxruntime": ort.__version__,
                "provider": provider, "options": options, "cpu": cpu_fingerprint()})


def source_bytes(source: Path) -> int:
    data = source.with_name(source.name + ".data")
    return source.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def lookup(key: Key, verify: bool) -> Path | None:
    """The cached graph for `key`, or None (a damaged entry is removed)."""
    entry = cache_root() / key.digest
    try:
        meta = json.loads((entry / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        if entry.exists():
            discard(entry / GRAPH)
        return None
    try:
        files = meta["files"]
        ok = meta["key"] == key.material and GRAPH in files and set(files) <= {GRAPH, WEIGHTS} \
            and all(_intact(entry / name, want, verify) for name, want in files.items())
    except (OSError, TypeError, KeyError, AttributeError):  # meta.json is ours, but read as untrusted
        ok = False
    if not ok:
        discard(entry / GRAPH)
        return None
    try:
        os.utime(entry / META)  # least recently used goes first
    except OSError:
        pass
    return entry / GRAPH


def _intact(path: Path, want: dict, verify: bool) -> bool:
    if path.stat().st_size != want.get("size"):
        return False
    return not verify or sha256_of(path) == want.get("sha256")


def discard(graph: Path) -> None:
    """Removes the entry holding `graph` (renamed away first, so readers never see half of it)."""
    entry = graph.parent
    if entry.parent != cache_root():
        return
    trash = entry.with_name(f".trash-{entry.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(entry, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


@dataclass
class Pending:
    """A graph being written by ONNX Runtime into a private folder, committed by `commit`."""

    key: Key
    folder: Path

    @property
    def graph(self) -> Path:
        return self.folder / GRAPH


def begin(key: Key, options: ort.SessionOptions, source: Path) -> Pending | None:
    """Asks ONNX Runtime (through `options`) to write its optimised graph into a fresh private
    folder; None when the cache folder cannot be written (the session is then just not cached)."""
    try:
        root = cache_root()
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    except OSError:
        return None
    options.optimized_model_filepath = str(folder / GRAPH)
    if source_bytes(source) >= EXTERNAL_FROM_BYTES:  # protobuf holds at most 2 GB
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name", WEIGHTS)
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    return Pending(key, folder)


def abandon(pending: Pending | None) -> None:
    if pending is not None:
        shutil.rmtree(pending.folder, ignore_errors=True)


def commit(pending: Pending | None) -> None:
    """Records the written graph's files and moves the folder into place (or drops it)."""
    if pending is None:
        return
    try:
        names = sorted(p.name for p in pending.folder.iterdir())
        if GRAPH not in names:
            raise OSError("ONNX Runtime wrote no graph")
        files = {n: {"size": (pending.folder / n).stat().st_size, "sha256": sha256_of(pending.folder / n)}
                 for n in names}
        (pending.folder / META).write_text(json.dumps({"key": pending.key.material, "files": files}),
                                           encoding="utf-8")
        os.rename(pending.folder, cache_root() / pending.key.digest)
    except OSError:  # another writer was first, or the disk is full: this copy is not needed
        abandon(pending)
        return
    evict(LIMIT_BYTES)


def evict(limit: int) -> None:
    """Removes least recently used entries while the cache holds more than `limit` bytes."""
    root = cache_root()
    entries = []
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            size = sum(p.stat().st_size for p in entry.iterdir())
            entries.append(((entry / META).stat().st_mtime, size, entry))
        except OSError:
            continue
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):
        if total <= limit:
            break
        discard(entry / GRAPH)
        total -= size
