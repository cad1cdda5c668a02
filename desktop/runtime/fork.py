"""Forks: a run that follows another run (its parent) for its first k steps, then goes on with its own
seed, prompt, guidance, class or painted map (docs/FORKS.md).

A request with `fork = {"parent": <the parent's request dict>, "step": k}` is a *chain*: its root (the
first request without a fork), then each fork in turn, each driving the steps from its `step` on.
The whole chain runs as ONE pass of the root's sampler over the root's grid, and at every step the
segment that owns it supplies the denoiser (its conditioning and guidance), the inpainting hook and
the sampler's noise. So a fork replays exactly from its recipe alone: the parent's first k steps are
recomputed (deterministic: same seeds, same conditioning), and a multistep sampler keeps its
history across the switch, so a fork that changes nothing equals its parent pixel for pixel.

What a fork may change: prompt, negative prompt, class, guidance, seed (the noise of its own steps:
stochastic samplers only), label map, mask and start image of an inpainting run. What it keeps from
the root: model, sampler, steps, spacing, size and img2img strength (they make the grid and x_T).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from diffusion.checks import is_int

MAX_FORK_DEPTH = 32
STRUCTURAL = ("sampler", "steps", "spacing", "height", "width", "strength")  # fields a fork keeps from its root


class ForkError(ValueError):
    """A fork that cannot be replayed; the message names the field."""


@dataclass
class Segment:
    start: int        # the first step (0-based) this request drives
    request: Any      # a GenerationRequest


def fork_chain(request, from_dict: Callable[[dict], Any]) -> list[Segment]:
    """The segments of a request, root first, each starting where its fork says (`from_dict` turns a
    parent's request dict into a GenerationRequest). Raises ForkError for a malformed fork field."""
    chain = [request]
    while chain[-1].fork is not None:
        if len(chain) > MAX_FORK_DEPTH:
            raise ForkError(f"fork: more than {MAX_FORK_DEPTH} forks deep")
        fork = chain[-1].fork
        if not isinstance(fork, dict) or not isinstance(fork.get("parent"), dict):
            raise ForkError("fork must be {'parent': <request>, 'step': k}")
        step = fork.get("step")
        if not is_int(step) or step < 1:
            raise ForkError(f"fork.step must be a whole number of steps from 1, got {step!r}")
        for key in ("init_image", "mask", "labels"):
            if fork["parent"].get(key) is not None and not isinstance(fork["parent"][key], dict):
                raise ForkError(f"fork.parent.{key} must be an inline image; a fork never makes this program "
                                "read another file")
        try:
            chain.append(from_dict(fork["parent"]))
        except (TypeError, ValueError) as exc:
            raise ForkError(f"fork.parent is not a request: {exc}") from None
    chain.reverse()  # root first
    segments = [Segment(0, chain[0])]
    for child in chain[1:]:
        k = int(child.fork["step"])
        segments = [s for s in segments if s.start < k] + [Segment(k, child)]
    return segments


def check_structure(root, child, steps: int, start: int) -> None:
    """A (resolved) fork keeps its root's grid and size, and starts inside the run."""
    for name in STRUCTURAL:
        if getattr(child, name) != getattr(root, name):
            raise ForkError(f"fork: {name} must be the parent's ({getattr(root, name)!r}), got "
                            f"{getattr(child, name)!r}; a fork continues its parent's run")
    if not 1 <= start < steps:
        raise ForkError(f"fork.step must be from 1 to {steps - 1} (the run has {steps} steps), got {start}")


class StepSwitch:
    """Which segment drives the step in progress. The sampler reports every finished step through
    its callback (after the step's hook), so `done` counts them; step j (0-based) belongs to the
    last segment with start <= j, for its network call, its noise and its hook alike."""

    def __init__(self, starts: list[int]):
        self.starts = list(starts)
        self.done = 0

    def index(self) -> int:
        return max(i for i, s in enumerate(self.starts) if s <= self.done)

    def callback(self, inner: Callable | None) -> Callable:
        def on_step(info: dict) -> None:
            self.done = int(info["step"])
            if inner is not None:
                inner(info)
        return on_step

    def denoiser(self, denoisers: list[Callable]) -> Callable:
        return lambda x, t: denoisers[self.index()](x, t)

    def hook(self, hooks: list[Callable | None]) -> Callable | None:
        if all(h is None for h in hooks):
            return None

        def switched(x, t_prev):
            h = hooks[self.index()]
            return x if h is None else h(x, t_prev)
        return switched

    def rng(self, rngs: list) -> "SwitchedRNG":
        return SwitchedRNG(self, rngs)


class SwitchedRNG:
    """A BatchRNG look-alike that draws from the segment of the step in progress. Segments with the
    same seeds share one generator (build it once per seed list), so their noise stream just goes on."""

    def __init__(self, switch: StepSwitch, rngs: list):
        self.switch, self.rngs = switch, rngs

    def randn(self, shape_per_image):
        return self.rngs[self.switch.index()].randn(shape_per_image)

    def __len__(self) -> int:
        return len(self.rngs[0])


def shared(make: Callable[[tuple], Any], seed_lists: list[tuple]) -> list:
    """One object per distinct seed list (`make(seeds)`), shared by the segments with those seeds."""
    made: dict[tuple, Any] = {}
    for seeds in seed_lists:
        if tuple(seeds) not in made:
            made[tuple(seeds)] = make(tuple(seeds))
    return [made[tuple(seeds)] for seeds in seed_lists]
