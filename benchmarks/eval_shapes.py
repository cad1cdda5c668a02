"""Evaluate the shapes model (issue 6): see benchmarks/evals/shapes.py for what is measured.

    .venv/bin/python benchmarks/eval_shapes.py [--model PATH] [--n N] [--samplers ddim:50,dpmpp_2m:20]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.evals import common, shapes  # noqa: E402

if __name__ == "__main__":
    common.run_main(shapes.main)
