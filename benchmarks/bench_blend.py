"""Seamless inpainting's cost: diffusion.inpaint.poisson_blend per image size, solved on the mask's
bounding box (the default) against the same system on the whole image, in the same run.

    python benchmarks/bench_blend.py [--sizes 64 256 512] [--repeat 3]

The mask is a box over 60% x 80% of the image (about what a user paints around an object);
the generated image is the known one brighter by 40 with its own noise texture. Prints the machine,
the commit, the median seconds of each way and their ratio, and the largest |result - reference|
between the two (both solve the same system).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.evals.common import format_table  # noqa: E402
from benchmarks.report import commit, machine  # noqa: E402
from diffusion.inpaint import poisson_blend  # noqa: E402


def case(size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    known = rng.uniform(60, 160, (size, size, 3))
    generated = known + 40 + rng.normal(0, 8, known.shape)
    mask = np.zeros((size, size))
    mask[size // 5: size * 4 // 5, size // 10: size * 9 // 10] = 1.0
    return generated, known, mask


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rows = []
    for size in args.sizes:
        g, k, m = case(size)
        fast, a = timed(lambda: poisson_blend(g, k, m), args.repeat)
        slow, b = timed(lambda: poisson_blend(g, k, m, crop=False), args.repeat)
        rows.append([f"{size}x{size}", fast, slow, slow / fast, float(np.abs(a - b).max())])
    print("# poisson_blend: solved on the mask's bounding box vs on the whole image")
    print(f"machine: {machine()}")
    print(f"commit:  {commit()}")
    print()
    print(format_table(["image", "bounding box (s)", "whole image (s)", "ratio", "max |diff|"], rows))


if __name__ == "__main__":
    main()
