"""Fork chains alone (desktop/runtime/fork.py): parsing a recipe's nested parents, which segment owns
each step, and the noise streams; malformed fork fields are refused in one sentence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from desktop.runtime.fork import MAX_FORK_DEPTH, ForkError, StepSwitch, fork_chain, shared
from diffusion.noise import BatchRNG


@dataclass
class Req:
    seed: int = 0
    fork: dict | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "Req":
        if not isinstance(d.get("seed", 0), int):
            raise ValueError("seed must be an integer")
        return cls(seed=d.get("seed", 0), fork=d.get("fork"))


def as_dict(r: Req) -> dict:
    return {"seed": r.seed, "fork": r.fork}


def test_a_chain_lists_its_segments_root_first():
    root = Req(1)
    a = Req(2, {"parent": as_dict(root), "step": 5})
    b = Req(3, {"parent": as_dict(a), "step": 8})
    assert [(s.start, s.request.seed) for s in fork_chain(b, Req.from_dict)] == [(0, 1), (5, 2), (8, 3)]
    # a fork of a fork at an earlier step never runs its parent's own segment
    c = Req(4, {"parent": as_dict(a), "step": 3})
    assert [(s.start, s.request.seed) for s in fork_chain(c, Req.from_dict)] == [(0, 1), (3, 4)]
    assert [(s.start, s.request.seed) for s in fork_chain(root, Req.from_dict)] == [(0, 1)]


def test_the_switch_gives_each_step_to_its_segment():
    switch = StepSwitch([0, 3, 6])
    owners = []
    callback = switch.callback(None)
    for step in range(1, 10):
        owners.append(switch.index())       # the network call, noise and hook of this step
        callback({"step": step})
    assert owners == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    calls = []
    denoise = StepSwitch([0, 2])
    f = denoise.denoiser([lambda x, t: calls.append("parent"), lambda x, t: calls.append("child")])
    g = denoise.callback(None)
    for step in range(1, 5):
        f(None, None)
        g({"step": step})
    assert calls == ["parent", "parent", "child", "child"]


def test_segments_with_the_same_seeds_share_one_noise_stream():
    made = shared(lambda seeds: BatchRNG(list(seeds), stream=1), [(5,), (7,), (5,)])
    assert made[0] is made[2] and made[0] is not made[1]
    switch = StepSwitch([0, 2, 4])
    rng = switch.rng(made)
    callback = switch.callback(None)
    draws = []
    for step in range(1, 7):
        draws.append(rng.randn((1,))[0, 0])
        callback({"step": step})
    plain5, plain7 = BatchRNG([5], stream=1), BatchRNG([7], stream=1)
    expected = [plain5.randn((1,))[0, 0] for _ in range(2)] + [plain7.randn((1,))[0, 0] for _ in range(2)] \
        + [plain5.randn((1,))[0, 0] for _ in range(2)]
    assert np.allclose(draws, expected)     # seed 5's stream goes on where it stopped


@pytest.mark.parametrize("fork,match", [
    ({"step": 3}, "parent"), ({"parent": 5, "step": 3}, "parent"), ("nope", "parent"),
    ({"parent": {}, "step": 0}, "fork.step"), ({"parent": {}, "step": True}, "fork.step"),
    ({"parent": {}, "step": "3"}, "fork.step"), ({"parent": {"seed": "x"}, "step": 2}, "fork.parent"),
    ({"parent": {"init_image": "/etc/passwd"}, "step": 2}, "inline"),
])
def test_malformed_forks_are_refused_naming_the_field(fork, match):
    with pytest.raises(ForkError, match=match):
        fork_chain(Req(1, fork), Req.from_dict)


def test_a_chain_too_deep_is_refused():
    r = Req(0)
    for i in range(MAX_FORK_DEPTH + 2):
        r = Req(i, {"parent": as_dict(r), "step": 1})
    with pytest.raises(ForkError, match="deep"):
        fork_chain(r, Req.from_dict)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["parent", "step", "seed", "fork"]), inner, max_size=4),
                           max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_fork_field_parses_or_is_refused_with_a_fork_error(fork):
    try:
        segments = fork_chain(Req(1, fork), Req.from_dict)
    except ForkError:
        return
    assert segments[0].start == 0 and [s.start for s in segments] == sorted(s.start for s in segments)
