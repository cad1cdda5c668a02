#!/usr/bin/env bash
# Issue 12's GPU part in one command, on a Linux x86_64 machine with an NVIDIA GPU (a driver for
# CUDA 12; onnxruntime-gpu and torch bring their own CUDA libraries) and access to PyPI:
#
#     bash benchmarks/gpu_bench.sh            # then read benchmarks/.cache/gpu/*.md
#     GPU_PYTHON=python3 bash benchmarks/gpu_bench.sh --rounds 1 --no-models   # no network (below)
#
# Arguments are passed on to bench_sd.py (a later one wins over the defaults here). GPU_PYTHON names
# an interpreter that already has torch (CUDA), onnxruntime-gpu and this project's needs: then no
# environment is made, nothing is downloaded, and optimum's row is left out (its venv needs PyPI).
#
# 1. .venv-gpu: this project with its engine and test extras, torch 2.13.0 from PyPI (there the
#    CUDA build, not the CPU wheel that constraints-cpu.txt pins for `make test`) and
#    onnxruntime-gpu as pyproject.toml asks; it stops unless torch sees CUDA and ONNX Runtime has
#    its CUDA provider.
# 2. .venv-peers as `make .venv-peers` makes it, then its onnxruntime replaced by onnxruntime-gpu
#    (the two must never share an environment), for optimum's pipeline on CUDA.
# 3. The GPU tests with DS_REQUIRE_CUDA=1 (a missing GPU fails them instead of skipping):
#    generation on CUDA against the CPU, CUDA-graph replay against plain IOBinding runs, the VRAM
#    estimate, and `export --optimize cuda --gpu-fp16` checked on CUDA and generating.
# 4. benchmarks/bench_sd.py --device cuda --steps 50 --rounds 3: SD-1.5-shaped 512x512 at batch 2
#    (guidance), ours (export --optimize cuda, fp16, IOBinding + CUDA graphs) against diffusers fp16
#    eager, torch.compile (max-autotune) and optimum's ORT pipeline; s/step, s/image, peak VRAM,
#    TFLOP/s against the measured fp16 matmul peak. Targets (issue 12): <= 9 ms per U-Net step,
#    <= 0.5 s per 50-step image, at least as fast as torch.compile.
# Everything it builds stays under benchmarks/.cache (git-ignored); a rerun only measures.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=benchmarks/.cache/gpu
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ORT_DISABLE_TELEMETRY=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

GPU=${GPU_PYTHON:-.venv-gpu/bin/python}
RUNTIMES=ours,diffusers,compile,optimum
if [ -n "${GPU_PYTHON:-}" ]; then
    RUNTIMES=ours,diffusers,compile
elif [ ! -f .venv-gpu/.installed ]; then
    "$PY" -m venv .venv-gpu
    .venv-gpu/bin/python -m pip install -q --upgrade pip
    .venv-gpu/bin/python -m pip install -q torch==2.13.0 -e '.[engine,test,cuda]'
    touch .venv-gpu/.installed
fi
"$GPU" - <<'EOF'
import onnxruntime as ort
import torch
assert torch.cuda.is_available(), f"torch {torch.__version__} sees no CUDA device (a CPU build?)"
assert "CUDAExecutionProvider" in ort.get_available_providers(), "onnxruntime has no CUDA provider (onnxruntime-gpu?)"
print("torch", torch.__version__, torch.cuda.get_device_name(0), "| onnxruntime", ort.__version__)
EOF

if [ -z "${GPU_PYTHON:-}" ]; then
    make .venv-peers PYTHON="$PY"
    if ! .venv-peers/bin/python -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
        .venv-peers/bin/python -m pip uninstall -y -q onnxruntime onnxruntime-gpu
        .venv-peers/bin/python -m pip install -q onnxruntime-gpu==1.31.1
    fi
fi

DS_REQUIRE_CUDA=1 "$GPU" -m pytest -q tests/runtime/test_cuda.py tests/export/test_optimize_cuda.py \
    tests/runtime/test_device.py 2>&1 | tee "$OUT/tests.txt" || echo "GPU tests FAILED (see $OUT/tests.txt); measuring anyway"

"$GPU" benchmarks/bench_sd.py --device cuda --steps 50 --rounds 3 --calls 20 --runtimes "$RUNTIMES" "$@" \
    | tee "$OUT/bench_sd.md"
