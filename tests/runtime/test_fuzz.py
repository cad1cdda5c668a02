"""Property-based fuzzing of what comes from outside (issue 13): any mutation of a studio.json or of
a PNG recipe gives a valid bundle / recipe or a BundleError / RecipeError / RequestError sentence,
never another exception, and never more than a set memory budget.

Mutations: a value anywhere in the document replaced by any JSON value (huge integers, NaN-free
floats, long or control-character strings, nested lists and objects), a key removed, a key added;
for PNG files, their bytes (flipped, cut short, chunk lengths and zTXt data replaced, zlib bombs).

Memory: every example runs under tracemalloc (which sees Python's and numpy's allocations) and may
allocate at most MEMORY_BUDGET above what was held when it started. The process's peak RSS cannot
serve: after a test that trained a model it is already higher than any bomb here would take it.
"""
from __future__ import annotations

import copy
import functools
import json
import shutil
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, validate_manifest
from desktop.runtime.pipeline import GenerationRequest, RequestError, resolve_request
from desktop.runtime.pngmeta import RecipeError, check_recipe, make_recipe

MEMORY_BUDGET = 256 << 20  # bytes one example may allocate (tiny bundles; a bomb would take GBs)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**8, 100000, 10**6]),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "x" * 5000, "\x1b[31m", "../../etc/passwd", "/etc/hostname", "unet/model.onnx"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, original: dict, rounds: int = 3):
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, rounds))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
    return doc


def budgeted(example):
    """Run a hypothesis example body with its allocations traced; fail if they exceed MEMORY_BUDGET."""
    @functools.wraps(example)
    def wrapper(*a, **k):
        started = not tracemalloc.is_tracing()
        if started:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            held = tracemalloc.get_traced_memory()[0]
            example(*a, **k)
            peak = tracemalloc.get_traced_memory()[1] - held
        finally:
            if started:
                tracemalloc.stop()
        assert peak < MEMORY_BUDGET, f"one example allocated {peak >> 20} MB"
    return wrapper


def test_the_memory_budget_can_fail():
    import numpy as np
    with pytest.raises(AssertionError, match="allocated 381 MB"):
        budgeted(lambda: np.ones((20000, 20000), np.uint8).sum())()
    budgeted(lambda: np.ones((2000, 2000), np.uint8).sum())()


@pytest.fixture(scope="module")
def manifests(bundles):
    return {name: json.loads((path / "studio.json").read_text()) for name, path in bundles.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pixel_class", "latent_text", "pixel_semantic", "latent_inpaint"])
def test_any_studio_json_mutation_validates_or_says_why(bundles, manifests, name):

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(manifests[name]))
    @budgeted
    def check(doc):
        try:
            validate_manifest(doc, bundles[name])
        except BundleError as exc:
            assert str(exc) and "\n" not in str(exc)
    check()


@pytest.mark.slow
def test_any_studio_json_mutation_opens_or_says_why(bundles, manifests, tmp_path_factory):
    """The whole open (hash checks off: every mutation would fail them first), sessions included."""
    folder = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(bundles["latent_text"], folder)

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(manifests["latent_text"], rounds=2))
    @budgeted
    def check(doc):
        (folder / "studio.json").write_text(json.dumps(doc))
        try:
            open_bundle(folder, provider="cpu", verify=False)
        except BundleError as exc:
            assert str(exc) and "\n" not in str(exc)
    check()


@pytest.fixture(scope="module")
def recipe(bundles):
    from desktop.runtime.pipeline import generate
    bundle = open_bundle(bundles["pixel_inpaint"], provider="cpu")
    import numpy as np
    init = np.full((8, 8, 3), 100, np.uint8)
    mask = np.zeros((8, 8))
    mask[:4] = 1
    result = generate(bundle, GenerationRequest(init_image=init, mask=mask, steps=2, seed=4))
    return bundle, make_recipe(result, 0)


@pytest.mark.slow
def test_any_recipe_mutation_reads_or_says_why_and_then_resolves_or_says_why(recipe):
    bundle, original = recipe
    original = json.loads(json.dumps(original))

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(original))
    @budgeted
    def check(doc):
        try:
            checked = check_recipe(doc, "fuzz.png")
        except RecipeError as exc:
            assert str(exc).startswith("fuzz.png: ") and "\n" not in str(exc)
            return
        request = GenerationRequest.from_dict(checked["request"])
        try:
            resolve_request(bundle, request)
        except RequestError as exc:
            assert str(exc) and "\n" not in str(exc)
    check()


@pytest.mark.slow
@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(alphabet=st.sampled_from(list("abc ,:\"\\\n<>()0123456789.-xKSteps:SamplerCFGscaleSizeModelhash")),
               max_size=300))
def test_any_a1111_text_parses_to_a_request_and_notes(text):
    from desktop.runtime import a1111
    from desktop.runtime.pngmeta import check_request
    request, model, notes = a1111.to_request(a1111.parse(text))
    check_request(request, "a1111.png")  # what the parser makes is always a valid request
    assert all(isinstance(n, str) and "\n" not in n for n in notes)


# --------------------------------------------------------------------------------------------
# PNG files: their bytes, not only their recipe


def _chunks(png: bytes) -> list[tuple[int, bytes, bytes]]:
    """(offset, type, data) of every chunk of a well-formed PNG."""
    pos, out = 8, []
    while pos + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        out.append((pos, kind, png[pos + 8:pos + 8 + length]))
        pos += 12 + length
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache  # compressed when a slow test first needs it, not at collection (about 2 s)
def zlib_bomb() -> bytes:
    return zlib.compress(b"{" + b" " * (200 << 20), 9)  # 200 MB of spaces in about 200 KB


@st.composite
def damaged_png(draw, png: bytes) -> bytes:
    chunks = _chunks(png)
    action = draw(st.sampled_from(["flip", "cut", "length", "ztxt", "bomb", "splice"]))
    data = bytearray(png)
    if action == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif action == "cut":
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif action == "length":  # a chunk claims another length
        offset, _, _ = draw(st.sampled_from(chunks))
        data[offset:offset + 4] = struct.pack(">I", draw(st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1,
                                                                           len(png), 33 << 20])))
    else:
        offset, kind, body = next(c for c in chunks if c[1] == b"zTXt")
        keyword = body.split(b"\0")[0]
        if action == "ztxt":
            new = keyword + b"\0\0" + draw(st.binary(max_size=64))
        elif action == "bomb":
            new = keyword + b"\0\0" + zlib_bomb()
        else:  # the recipe's JSON replaced by any text, compressed properly
            new = keyword + b"\0\0" + zlib.compress(draw(st.text(max_size=200)).encode("latin-1", "replace"))
        end = offset + 12 + len(body)
        data = data[:offset] + _chunk(kind, new) + data[end:]
    return bytes(data)


@pytest.mark.slow
def test_any_damaged_png_reads_or_says_why(recipe, tmp_path_factory):
    """read_recipe_dict (what --from-png, `info` and a PNG dropped on the app call) on damaged files."""
    from desktop.runtime.pngmeta import read_recipe_dict, write_png

    bundle, original = recipe
    folder = tmp_path_factory.mktemp("pngfuzz")
    import numpy as np
    good = write_png(folder / "good.png", np.zeros((8, 8, 3), np.uint8), original).read_bytes()
    path = folder / "fuzz.png"

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(damaged_png(good))
    @budgeted
    def check(data):
        path.write_bytes(data)
        try:
            read_recipe_dict(path)
        except RecipeError as exc:
            assert str(exc).split(": ")[0].endswith("fuzz.png") and "\n" not in str(exc), str(exc)
    check()
