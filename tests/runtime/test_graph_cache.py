"""Cached optimised graphs: same bits as an uncached session, damaged entries rebuilt, concurrent
writers, eviction, an unwritable cache; and every thread policy gives the same images."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from desktop.runtime import graph_cache, providers
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache" / "graphs"
    monkeypatch.setattr(graph_cache, "cache_root", lambda: root)
    return root


def entries(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) if root.is_dir() else []


def images(bundle, **kw):
    return np.stack(generate(bundle, GenerationRequest(prompt="a red cat", seed=3, steps=4, batch_size=2, **kw)).images)


def random_feeds(session, batch: int = 2) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for i in session.get_inputs():
        shape = [batch if k == 0 else (d if isinstance(d, int) else 4) for k, d in enumerate(i.shape)]
        feeds[i.name] = rng.integers(0, 100, shape) if "int" in i.type else rng.standard_normal(shape).astype(np.float32)
    return feeds


def from_cache(session) -> bool:
    return str(graph_cache.cache_root()) in session._model_path


@pytest.mark.slow
def test_second_open_loads_the_cached_graphs_and_gives_the_same_bits(bundles, cache):
    plain = open_bundle(bundles["latent_text"], provider="cpu")
    first = open_bundle(bundles["latent_text"], provider="cpu")  # writes the entries (the one above did too)
    assert len(entries(cache)) == 4  # unet, vae_decoder, vae_encoder, text_encoder
    assert not from_cache(plain.unet.session)
    second = open_bundle(bundles["latent_text"], provider="cpu")
    assert all(from_cache(m.session) for m in (second.unet, second.vae_decoder, second.vae_encoder, second.text.model))
    uncached = providers.create_session(bundles["latent_text"] / "unet/model.onnx", "cpu", cache=False)[0]
    feeds = random_feeds(uncached)
    np.testing.assert_array_equal(second.unet.session.run(None, feeds)[0], uncached.run(None, feeds)[0])
    np.testing.assert_array_equal(images(second), images(first))


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta-garbage", "meta-escape", "no-meta"])
def test_a_damaged_entry_is_rebuilt(bundles, cache, damage):
    want = images(open_bundle(bundles["pixel_class"], provider="cpu"), class_index=1)
    (entry,) = entries(cache)
    graph, meta = entry / graph_cache.GRAPH, entry / graph_cache.META
    data = graph.read_bytes()
    if damage == "truncate":
        graph.write_bytes(data[: len(data) // 2])
    elif damage == "flip":  # same size: only the hash sees it
        graph.write_bytes(data[:-40] + bytes([data[-40] ^ 0xFF]) + data[-39:])
    elif damage == "meta-garbage":
        meta.write_text("{not json")
    elif damage == "meta-escape":
        m = json.loads(meta.read_text())
        m["files"]["../../outside"] = {"size": 1, "sha256": "0" * 64}
        meta.write_text(json.dumps(m))
    else:
        meta.unlink()
    again = open_bundle(bundles["pixel_class"], provider="cpu", verify=True)
    assert not from_cache(again.unet.session)  # built from the source, and cached again
    np.testing.assert_array_equal(images(again, class_index=1), want)
    (rebuilt,) = entries(cache)
    assert graph_cache.sha256_of(rebuilt / graph_cache.GRAPH) == json.loads(
        (rebuilt / graph_cache.META).read_text())["files"][graph_cache.GRAPH]["sha256"]
    assert from_cache(open_bundle(bundles["pixel_class"], provider="cpu").unet.session)


def test_an_entry_onnx_runtime_cannot_load_is_discarded(bundles, cache):
    open_bundle(bundles["pixel_class"], provider="cpu")
    (entry,) = entries(cache)
    (entry / graph_cache.GRAPH).write_bytes(b"not a graph")  # sizes rewritten: only the load fails
    m = json.loads((entry / graph_cache.META).read_text())
    m["files"][graph_cache.GRAPH]["size"] = len(b"not a graph")
    (entry / graph_cache.META).write_text(json.dumps(m))
    b = open_bundle(bundles["pixel_class"], provider="cpu", verify=False)
    assert not from_cache(b.unet.session)
    assert from_cache(open_bundle(bundles["pixel_class"], provider="cpu", verify=False).unet.session)


def test_the_key_follows_the_file_the_provider_and_the_options(bundles, tmp_path):
    src = tmp_path / "m.onnx"
    shutil.copy(bundles["pixel_class"] / "unet/model.onnx", src)
    key = graph_cache.make_key(src, providers.CPU, {"level": "all"}, "a" * 64)
    assert key.digest == graph_cache.make_key(src, providers.CPU, {"level": "all"}, "a" * 64).digest
    assert key.digest != graph_cache.make_key(src, providers.CUDA, {"level": "all"}, "a" * 64).digest
    assert key.digest != graph_cache.make_key(src, providers.CPU, {"level": "basic"}, "a" * 64).digest
    assert key.digest != graph_cache.make_key(src, providers.CPU, {"level": "all"}, "b" * 64).digest
    os.utime(src, ns=(1, 1))  # same bytes, touched: a new key (the manifest hash may be stale when unverified)
    assert key.digest != graph_cache.make_key(src, providers.CPU, {"level": "all"}, "a" * 64).digest


def test_concurrent_writers_leave_one_entry(bundles, cache, tmp_path):
    src = bundles["pixel_class"] / "unet/model.onnx"
    key = graph_cache.make_key(src, providers.CPU, {"level": "all"})
    pending = []
    for _ in range(3):  # three writers started before any finished
        options = providers.session_options()
        pending.append(graph_cache.begin(key, options, src))
        providers.ort.InferenceSession(str(src), options, providers=[providers.CPU])
    for p in pending:
        graph_cache.commit(p)
    assert len(entries(cache)) == 1
    assert [p.name for p in cache.iterdir()] == [key.digest]  # no temporary folders left
    assert graph_cache.lookup(key, verify=True) == cache / key.digest / graph_cache.GRAPH


def test_least_recently_used_entries_go_first(bundles, cache, monkeypatch):
    open_bundle(bundles["latent_text"], provider="cpu")
    sizes = {e.name: sum(p.stat().st_size for p in e.iterdir()) for e in entries(cache)}
    for i, e in enumerate(entries(cache)):
        os.utime(e / graph_cache.META, (1000 + i, 1000 + i))
    newest = entries(cache)[-1]
    graph_cache.evict(sizes[newest.name])
    assert entries(cache) == [newest]


def test_an_unwritable_cache_only_costs_the_cache(bundles, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setattr(graph_cache, "cache_root", lambda: blocker / "graphs")
    b = open_bundle(bundles["pixel_class"], provider="cpu")
    assert images(b, class_index=0).shape == (2, 8, 8, 3)


THREAD_POLICY_RUN = """
import sys, numpy as np
from desktop.runtime import providers
if sys.argv[2] != "default":
    providers.configure_program_threads({"DIFFUSION_STUDIO_THREADS": sys.argv[2]})
from desktop.runtime.bundle import open_bundle
from desktop.runtime.pipeline import GenerationRequest, generate
b = open_bundle(sys.argv[1], provider="cpu")
np.save(sys.argv[3], np.stack(generate(b, GenerationRequest(prompt="a red cat", seed=5, steps=4, batch_size=2)).images))
print("shared" if providers.shared_thread_pool() else "per-session")
try:
    providers.configure_threads(shared=not providers.shared_thread_pool())
except RuntimeError:
    print("locked")
"""


@pytest.mark.slow
def test_every_thread_policy_gives_the_same_images(bundles, tmp_path):
    """`spin` (ONNX Runtime's shared global pools), `sleep` (per-session pools that never spin),
    `burst` (per-session pools that stop spinning when a run ends, the programs' default) and ONNX
    Runtime's own default: the same bits; the choice is made once."""
    out, pools = {}, {}
    for mode in ("spin", "sleep", "burst", "default"):
        out[mode] = tmp_path / f"{mode}.npy"
        run = subprocess.run([sys.executable, "-c", THREAD_POLICY_RUN, str(bundles["latent_text"]), mode, str(out[mode])],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        pools[mode] = run.stdout.split()
    assert pools == {"spin": ["shared", "locked"], "sleep": ["per-session", "locked"],
                     "burst": ["per-session", "locked"], "default": ["per-session", "locked"]}
    for mode in ("spin", "sleep", "burst"):
        np.testing.assert_array_equal(np.load(out[mode]), np.load(out["default"]))
