"""Property-based fuzzing of what comes from outside (issue 13): any mutation of a studio.json or of
a PNG recipe gives a valid bundle / recipe or a BundleError / RecipeError / RequestError sentence,
never another exception, and never more than a set memory budget.

Mutations: a value anywhere in the document replaced by any JSON value (huge integers, NaN-free
floats, long or control-character strings, nested lists and objects), a key removed, a key added.
"""
from __future__ import annotations

import copy
import json
import resource
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop.runtime.bundle import open_bundle
from desktop.runtime.manifest import BundleError, validate_manifest
from desktop.runtime.pipeline import GenerationRequest, RequestError, resolve_request
from desktop.runtime.pngmeta import RecipeError, check_recipe, make_recipe

MEMORY_BUDGET_KB = 400_000  # growth of the test process's peak RSS over all examples

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


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@pytest.fixture(scope="module")
def manifests(bundles):
    return {name: json.loads((path / "studio.json").read_text()) for name, path in bundles.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pixel_class", "latent_text", "pixel_semantic", "latent_inpaint"])
def test_any_studio_json_mutation_validates_or_says_why(bundles, manifests, name):
    before = _peak_kb()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(manifests[name]))
    def check(doc):
        try:
            validate_manifest(doc, bundles[name])
        except BundleError as exc:
            assert str(exc) and "\n" not in str(exc)
    check()
    assert _peak_kb() - before < MEMORY_BUDGET_KB


@pytest.mark.slow
def test_any_studio_json_mutation_opens_or_says_why(bundles, manifests, tmp_path_factory):
    """The whole open (hash checks off: every mutation would fail them first), sessions included."""
    folder = tmp_path_factory.mktemp("fuzz") / "b"
    shutil.copytree(bundles["latent_text"], folder)
    before = _peak_kb()

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(manifests["latent_text"], rounds=2))
    def check(doc):
        (folder / "studio.json").write_text(json.dumps(doc))
        try:
            open_bundle(folder, provider="cpu", verify=False)
        except BundleError as exc:
            assert str(exc) and "\n" not in str(exc)
    check()
    assert _peak_kb() - before < MEMORY_BUDGET_KB


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
    before = _peak_kb()

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(mutated(original))
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
    assert _peak_kb() - before < MEMORY_BUDGET_KB


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
