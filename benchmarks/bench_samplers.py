"""Sampler quality and overhead (numpy, CPU).

1. Quality: sample the 2-D Gaussian mixture of ``diffusion.mixture.example_mixture`` (N = 4000 points,
   x of shape [N, 2, 1, 1]) through its exact denoiser, linear schedule T = 1000, leading spacing, and
   report the error of the samples' mixture weights, mean and covariance against the data (max abs
   error; in brackets the same in units of its standard error, so ~2 or less is sampling noise).
   LCM is left out: it needs a consistency-distilled model, which the exact denoiser is not.
2. Overhead: the sampler's own numpy time per step for one latent of shape [1, 4, 64, 64] (and a batch
   of 4, [4, 4, 64, 64]), with a zero-cost model (returns a preallocated array), best of 3 runs.

    .venv/bin/python benchmarks/bench_samplers.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diffusion import SAMPLERS, BatchRNG, initial_noise, make_schedule, sample, sampler_grid  # noqa: E402
from diffusion.grid import LCM_ORIGINAL_STEPS  # noqa: E402
from diffusion.mixture import example_mixture, mixture_denoiser, mixture_error  # noqa: E402
from diffusion.samplers import NEEDS_RNG  # noqa: E402
from benchmarks.report import commit, machine  # noqa: E402


class BatchNormalRNG:
    """One generator for the whole batch: the quality runs' ancestral noise (per-image seeding is slow at N=4000)."""

    def __init__(self, n, seed):
        self.n, self.gen = n, np.random.default_rng(seed)

    def randn(self, shape):
        return self.gen.standard_normal((self.n, *shape), dtype=np.float32)


def quality(step_counts, n=4000):
    mixture, schedule = example_mixture(), make_schedule("linear", 1000)
    x_T = initial_noise(0, n, (2, 1, 1))
    rows = []
    for name in SAMPLERS:
        if name == "lcm":
            continue
        for steps in step_counts:
            kw = {"rng": BatchNormalRNG(n, 1)} if name in NEEDS_RNG else {}
            grid = sampler_grid(name, schedule, steps=steps)
            x = sample(name, mixture_denoiser(mixture, schedule), grid.start(x_T), grid, **kw)
            err = mixture_error(mixture, x)
            cells = []
            for stat in ("weights", "mean", "cov"):
                e, se = err[stat]
                cells.append(f"{e.max():.4f} ({(e / se).max():.1f})")
            rows.append((name, steps, *cells))
    return rows


def overhead(step_counts, batches=(1, 4)):
    schedule = make_schedule("linear", 1000)
    rows = []
    for name in SAMPLERS:
        for steps in step_counts:
            if name == "lcm" and steps > LCM_ORIGINAL_STEPS:
                continue
            grid = sampler_grid(name, schedule, steps=steps)
            cells = []
            for batch in batches:
                x_T = initial_noise(0, batch, (4, 64, 64))
                zeros = np.zeros_like(x_T)
                best = float("inf")
                for _ in range(3 if steps < 1000 else 1):
                    kw = {"rng": BatchRNG.from_seed(0, batch)} if name in NEEDS_RNG else {}
                    start = time.perf_counter()
                    sample(name, lambda x, t: zeros, x_T, grid, **kw)
                    best = min(best, time.perf_counter() - start)
                cells.append(f"{1e3 * best / steps:.3f}")
            rows.append((name, steps, *cells))
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 and 20 steps only")
    args = parser.parse_args(argv)
    step_counts = (10, 20) if args.quick else (10, 20, 50, 1000)
    print(f"machine: {machine(f'numpy {np.__version__}')}\ncommit: {commit()}\n")
    print("Gaussian mixture (3 components, 2-D, N=4000), linear T=1000, leading spacing: "
          "max abs error (in standard errors)")
    print(table(("sampler", "steps", "weights", "mean", "cov"), quality(step_counts)))
    print("\nSampler overhead per step, zero-cost model (ms/step)")
    print(table(("sampler", "steps", "x [1,4,64,64]", "x [4,4,64,64]"), overhead(step_counts)))


if __name__ == "__main__":
    main()
