"""Stable Diffusion 1.5 at 512x512 (random weights, 860M-parameter U-Net): our runtime against
diffusers in PyTorch (eager and torch.compile) and optimum's ONNX Runtime pipeline, side by side.

    nice -n 10 python benchmarks/bench_sd.py --steps 3                    # this machine's CPU
    python benchmarks/bench_sd.py --device cuda --steps 50 --rounds 3     # a GPU machine (below)

One run, every runtime in its own process, alternated round by round (the machine may be shared:
compare ratios). Per runtime: seconds per U-Net step at batch 2 (classifier-free guidance; median of
--calls calls after a warm-up), seconds per 512x512 image end to end (text encoder, --steps DDIM
steps with guidance 7.5, VAE decode; median over rounds), the first call (torch.compile's compile
time), peak RAM (ru_maxrss) and peak VRAM (torch: max_memory_reserved; ONNX Runtime: NVML's free
memory at its lowest, relative to the start). Then the U-Net's FLOPs per step (PyTorch's
FlopCounterMode), GFLOP/s and the share of the matmul peak measured in ONNX Runtime (2048³ fp32 on
the CPU, 8192³ fp16 on CUDA); and our three shipped models per step (bench_runtime).

Runtimes (`--runtimes`):
- `ours`: desktop.runtime on a bundle written by our exporter (`export_bundle`; CPU: fp32, --optimize
  none by default; CUDA: --optimize cuda with fp16 compute), as the app runs it (shared thread
  pool; on CUDA the U-Net runs through IOBinding with CUDA graphs);
- `ours-int8`: the same bundle made int8 by `export.quantize.quantize_bundle` (what `export BUNDLE OUT
  --int8` runs; calibration `INT8_CALIBRATION`), on the CPU; the row gives its images' mean |Δ| from fp32;
- `diffusers`: StableDiffusionPipeline, eager (fp32 on the CPU, fp16 on CUDA);
- `compile`: the same with torch.compile on the U-Net (`--compile-mode`; CUDA: "max-autotune" unless told);
- `optimum`: optimum's ORTStableDiffusionPipeline on a folder exported by `optimum-cli export onnx`,
  run in the peers venv (`make .venv-peers`; on a GPU machine it needs onnxruntime-gpu there).
Everything built is cached under benchmarks/.cache/sd15 (git-ignored): the diffusers folder
(3.9 GB), our bundle(s) and optimum's export, so reruns only measure.

GPU machine (H100/H200): `bash benchmarks/gpu_bench.sh` does it all in one go: a venv with a CUDA
build of torch and onnxruntime-gpu (.venv-gpu), the peers venv with onnxruntime-gpu in place of
onnxruntime, the GPU tests (DS_REQUIRE_CUDA=1), then this script with --device cuda --steps 50
--rounds 3. The table says which rows could not run and why.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime (our promise: no network)
REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / ".cache" / "sd15"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
RUNTIMES = ("ours", "ours-int8", "diffusers", "compile", "optimum")
# ours-int8's quantisation (export/quantize.py, through the product's path) with a smaller calibration than
# `export --int8` uses by default (8 generations at the model's 20 steps, 4 more for the gate): on 2 CPU cores
# that is hours at this size. The gate's image comparison still runs; random weights have no evaluation.
INT8_CALIBRATION = {"calibration": 2, "check": 1, "steps": 4}
PROMPT = "a photograph of an astronaut riding a horse"
SIZE = 512
GUIDANCE = 7.5
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ORT_DISABLE_TELEMETRY": "1",
           "DIFFUSERS_VERBOSITY": "error", "TRANSFORMERS_VERBOSITY": "error", "TOKENIZERS_PARALLELISM": "false"}


# --------------------------------------------------------------------------------------------
# Peak memory of a worker


class VramWatch:
    """Lowest free GPU memory seen (NVML, every 20 ms) while the worker runs: peak use = start - lowest."""

    def __init__(self):
        from desktop.runtime.memory import nvml_free_bytes

        self.read = nvml_free_bytes
        self.start = self.read()
        self.lowest = self.start
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        if self.start is not None:
            self.thread.start()

    def poll(self):
        while not self.stop.wait(0.02):
            free = self.read()
            if free is not None:
                self.lowest = min(self.lowest, free)

    def peak(self) -> int | None:
        self.stop.set()
        return None if self.start is None else self.start - self.lowest


def peak_ram() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def median_time(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --------------------------------------------------------------------------------------------
# Workers (each in its own process)


def unet_inputs(batch: int = 2, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 4, SIZE // 8, SIZE // 8)).astype(np.float32),
            np.full(batch, 500, np.int64), rng.standard_normal((batch, 77, 768)).astype(np.float32))


def worker_ours(cfg: dict) -> dict:
    from desktop.runtime import providers

    providers.configure_program_threads()  # as the app and the CLI run
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate, unet_model

    watch = VramWatch() if cfg["device"] == "cuda" else None
    t = time.perf_counter()
    bundle = open_bundle(cfg["bundle"], provider=cfg["device"])
    opened = time.perf_counter() - t
    x, ts, states = unet_inputs()
    model = unet_model(bundle)
    t = time.perf_counter()
    model(x, ts, encoder_hidden_states=states)
    first = time.perf_counter() - t
    step = median_time(lambda: model(x, ts, encoder_hidden_states=states), cfg["calls"])
    request = GenerationRequest(prompt=PROMPT, steps=cfg["steps"], sampler="ddim", spacing="leading",
                                guidance=GUIDANCE, seed=0, height=SIZE, width=SIZE)
    generate(bundle, GenerationRequest(prompt=PROMPT, steps=1, sampler="ddim", guidance=GUIDANCE, seed=1,
                                       height=SIZE, width=SIZE))  # warm-up at the full size
    t = time.perf_counter()
    generate(bundle, request)
    image = time.perf_counter() - t
    runner = getattr(bundle.unet, "runner", None)
    int8 = bundle.manifest.provenance.get("export", {}).get("int8")
    how = f", int8 (images {int8['mean_abs_diff_255']:.1f}/255 from fp32)" if int8 else ""
    how += "" if runner is None else ", IOBinding" + (", CUDA graph" if runner.cuda_graph and runner.graph is not None
                                                     else f" (no CUDA graph: {'; '.join(runner.notes) or '?'})")
    return {"step": step, "image": image, "first": first, "open": opened, "ram": peak_ram(),
            "vram": watch.peak() if watch else None, "provider": bundle.provider + how}


def diffusers_pipeline(cfg: dict):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    cuda = cfg["device"] == "cuda"
    pipe = StableDiffusionPipeline.from_pretrained(cfg["pipeline"], torch_dtype=torch.float16 if cuda else torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda" if cuda else "cpu")


def worker_torch(cfg: dict) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    cuda = cfg["device"] == "cuda"
    t = time.perf_counter()
    pipe = diffusers_pipeline(cfg)
    opened = time.perf_counter() - t
    if cfg["runtime"] == "compile":
        pipe.unet = torch.compile(pipe.unet, mode=cfg.get("compile_mode"), fullgraph=True)
    dtype = torch.float16 if cuda else torch.float32
    x, ts, states = (torch.from_numpy(a).to(pipe.device) for a in unet_inputs())
    x, states = x.to(dtype), states.to(dtype)

    def step():
        with torch.inference_mode():
            pipe.unet(x, ts, encoder_hidden_states=states)
        if cuda:
            torch.cuda.synchronize()

    t = time.perf_counter()
    step()
    first = time.perf_counter() - t
    seconds = median_time(step, cfg["calls"])
    flops = unet_flops_torch(pipe.unet, x, ts, states) if cfg.get("flops") else None
    generator = torch.Generator("cpu").manual_seed(0)
    pipe(PROMPT, num_inference_steps=1, guidance_scale=GUIDANCE, height=SIZE, width=SIZE, generator=generator)
    t = time.perf_counter()
    pipe(PROMPT, num_inference_steps=cfg["steps"], guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
         generator=torch.Generator("cpu").manual_seed(0))
    if cuda:
        torch.cuda.synchronize()
    image = time.perf_counter() - t
    return {"step": seconds, "image": image, "first": first, "open": opened, "ram": peak_ram(),
            "vram": torch.cuda.max_memory_reserved() if cuda else None, "flops": flops,
            "provider": f"torch {torch.__version__}"}


def unet_flops_torch(unet, x, ts, states) -> float:
    """FLOPs of one U-Net call (PyTorch's FlopCounterMode: matmuls and convolutions, 2 per MAC)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        getattr(unet, "_orig_mod", unet)(x, ts, encoder_hidden_states=states)
    return float(counter.get_total_flops())


def worker_optimum(cfg: dict) -> dict:
    import numpy as np
    import onnxruntime as ort
    from diffusers import DDIMScheduler
    from optimum.onnxruntime import ORTStableDiffusionPipeline

    cuda = cfg["device"] == "cuda"
    provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
    watch = VramWatch() if cuda else None
    t = time.perf_counter()
    pipe = ORTStableDiffusionPipeline.from_pretrained(cfg["optimum"], provider=provider)
    opened = time.perf_counter() - t
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    x, ts, states = unet_inputs()
    session = pipe.unet.session
    names = {i.name: i for i in session.get_inputs()}
    timestep = ts.astype(np.float32 if "float" in names["timestep"].type else np.int64)
    if not names["timestep"].shape:
        timestep = timestep[0]
    float_type = np.float16 if "float16" in names["sample"].type else np.float32
    feeds = {"sample": x.astype(float_type), "timestep": timestep, "encoder_hidden_states": states.astype(float_type)}
    t = time.perf_counter()
    session.run(None, feeds)
    first = time.perf_counter() - t
    step = median_time(lambda: session.run(None, feeds), cfg["calls"])
    pipe(PROMPT, num_inference_steps=1, guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
         generator=np.random.RandomState(1))
    t = time.perf_counter()
    pipe(PROMPT, num_inference_steps=cfg["steps"], guidance_scale=GUIDANCE, height=SIZE, width=SIZE,
         generator=np.random.RandomState(0))
    image = time.perf_counter() - t
    return {"step": step, "image": image, "first": first, "open": opened, "ram": peak_ram(),
            "vram": watch.peak() if watch else None, "provider": f"onnxruntime {ort.__version__} {provider}"}


WORKERS = {"ours": worker_ours, "ours-int8": worker_ours, "diffusers": worker_torch, "compile": worker_torch,
           "optimum": worker_optimum}


def python_path() -> str:
    """The repository first, then whatever PYTHONPATH already held (packages installed with --target)."""
    return os.pathsep.join([str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])


def spawn(cfg: dict, timeout: float) -> dict:
    """Runs one worker in its own process (the peers venv for optimum); its result or {"error": ...}."""
    python = str(PEERS_PYTHON) if cfg["runtime"] == "optimum" else sys.executable
    if cfg["runtime"] == "optimum" and not PEERS_PYTHON.exists():
        return {"error": "no peers venv (make .venv-peers)"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cfg, f)
    env = {**os.environ, **OFFLINE, "PYTHONPATH": python_path()}
    try:
        done = subprocess.run(["nice", "-n", "10", python, __file__, "--worker", f.name], capture_output=True,
                              text=True, env=env, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        os.unlink(f.name)
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {last[0][:300]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------
# Building what the workers load (cached)


def export_ours(pipeline: Path, device: str, optimize: str) -> Path:
    """Our bundle of the pipeline (export_bundle without its parity check, which would hold PyTorch
    and ONNX Runtime copies of the 3.4 GB U-Net at once): CUDA: fp16 compute."""
    out = CACHE / f"ours-{device}-{optimize}"
    if (out / "studio.json").is_file():
        return out
    code = ("import sys; from pathlib import Path; from engine.loaded import load_model; "
            "from export.bundle_writer import export_bundle; "
            "export_bundle(load_model(sys.argv[1]), Path(sys.argv[2]), optimize=None if sys.argv[3] == 'none' "
            "else sys.argv[3], gpu_fp16=sys.argv[4] == 'cuda', check=False, preview_samples=4, name='sd15-random')")
    run([sys.executable, "-c", code, str(pipeline), str(out), optimize, device], "our export")
    return out


def int8_ours(bundle: Path) -> Path:
    """The int8 copy of our CPU bundle, as `export BUNDLE OUT --int8` makes it (INT8_CALIBRATION)."""
    out = bundle.with_name(bundle.name + "-int8")
    if (out / "studio.json").is_file():
        return out
    code = ("import sys, json; from pathlib import Path; from export.quantize import quantize_bundle; "
            "quantize_bundle(Path(sys.argv[1]), Path(sys.argv[2]), use_evaluations=False, **json.loads(sys.argv[3]))")
    run([sys.executable, "-c", code, str(bundle), str(out), json.dumps(INT8_CALIBRATION)], "our int8 export")
    return out


def export_optimum(pipeline: Path, device: str) -> Path | None:
    out = CACHE / f"optimum-{device}"
    if (out / "model_index.json").is_file():
        return out
    if not PEERS_PYTHON.exists():
        return None
    cli = PEERS_PYTHON.parent / "optimum-cli"
    extra = ["--device", "cuda", "--dtype", "fp16"] if device == "cuda" else []
    run([str(cli), "export", "onnx", "--model", str(pipeline), "--task", "text-to-image", *extra, str(out) + ".partial"],
        "optimum export")
    Path(str(out) + ".partial").rename(out)
    return out


def run(cmd: list[str], what: str) -> None:
    print(f"{what}: {' '.join(cmd[:3])} ...", file=sys.stderr)
    done = subprocess.run(["nice", "-n", "10", *cmd], env={**os.environ, **OFFLINE, "PYTHONPATH": python_path()},
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        killed = f" (killed by signal {-done.returncode}{', out of memory?' if done.returncode == -9 else ''})" \
            if done.returncode < 0 else ""
        raise SystemExit(f"{what} failed{killed}:\n{done.stderr[-3000:]}")


# --------------------------------------------------------------------------------------------
# The report


def matmul_peak_cuda(n: int = 8192) -> float | None:
    """TFLOP/s of one n^3 fp16 MatMul in ONNX Runtime's CUDA provider (best of 10), or None."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return None
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT16, [n, n]) for x in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT16, [n, n])])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CUDAExecutionProvider"])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return None
    a = ort.OrtValue.ortvalue_from_numpy(np.random.default_rng(0).standard_normal((n, n)).astype(np.float16), "cuda")
    binding = session.io_binding()
    binding.bind_ortvalue_input("a", a)
    binding.bind_ortvalue_input("b", a)
    binding.bind_output("c", "cuda")
    session.run_with_iobinding(binding)
    best = min(median_time(lambda: session.run_with_iobinding(binding), 1) for _ in range(10))
    return 2 * n**3 / best / 1e12


def gpu_name() -> str | None:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def gib(n) -> str:
    return "-" if n is None else f"{n / 2**30:.1f}"


def print_report(args, results: dict, flops: float | None, peak: float | None, ours_models: dict, params: int) -> None:
    from benchmarks.report import commit, machine

    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    ok = {k: [r for r in v if "error" not in r] for k, v in results.items()}
    base = ok.get("diffusers") or []
    print(f"# Stable Diffusion 1.5 shape at {SIZE}x{SIZE}, random weights ({params / 1e6:.0f}M-parameter U-Net), "
          f"{args.device.upper()}")
    print(f"machine: {machine(args.gpu_name or '')} (shared with other jobs: compare ratios)")
    print(f"commit: {commit()}; command: {' '.join(['python', *sys.argv])}")
    print(f"{args.rounds} round(s), runtimes alternated, each in its own process; DDIM {args.steps} steps, "
          f"guidance {GUIDANCE} (U-Net batch 2); U-Net step: median of {args.calls} calls; "
          f"torch.compile mode: {args.compile_mode}")
    print()
    print("| runtime | s / U-Net step | × diffusers eager | s / image | × diffusers eager | first call s | "
          "peak RAM GiB | peak VRAM GiB | ran on |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, rows in results.items():
        good = ok[name]
        if not good:
            print(f"| {name} | not measured: {rows[-1].get('error', '?')} | | | | | | | |")
            continue
        step, image = med(good, "step"), med(good, "image")
        rs = f"{med(base, 'step') / step:.2f}" if base else "-"
        ri = f"{med(base, 'image') / image:.2f}" if base else "-"
        print(f"| {name} | {step:.3f} | {rs} | {image:.2f} | {ri} | {med(good, 'first'):.1f} | "
              f"{gib(max(r['ram'] for r in good))} | {gib(max((r['vram'] or 0) for r in good) or None)} | "
              f"{good[0]['provider']} |")
    print()
    if flops and ok.get("ours"):
        step = med(ok["ours"], "step")
        unit, scale = ("TFLOP/s", 1e12) if args.device == "cuda" else ("GFLOP/s", 1e9)
        share = f", {flops / step / scale / peak * 100:.0f}% of the measured matmul peak ({peak:.0f} {unit})" \
            if peak else ""
        print(f"U-Net FLOPs per step (batch 2, PyTorch FlopCounterMode): {flops / 1e12:.2f} TFLOP; ours runs "
              f"{flops / step / scale:.1f} {unit}{share}")
    if ours_models:
        print()
        print("Our shipped models, one U-Net step at batch 2 (CPU; bench_runtime.step_efficiency):")
        print()
        print("| model | GFLOP per step | ms per step | GFLOP/s | CPU matmul peak alongside, GFLOP/s | share of peak |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, e in ours_models.items():
            print(f"| {name} | {e['gflop']:.2f} | {e['ms']:.1f} | {e['gflops']:.0f} | {e['peak']:.0f} | "
                  f"{e['gflops'] / e['peak'] * 100:.0f}% |")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        sys.path.insert(0, str(REPO))
        cfg = json.loads(Path(argv[1]).read_text())
        print(json.dumps(WORKERS[cfg["runtime"]](cfg)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--steps", type=int, default=3, help="DDIM steps per image (CPU: a few; GPU: 50)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--calls", type=int, default=3, help="U-Net calls timed per worker (median)")
    p.add_argument("--runtimes", help=f"some of {','.join(RUNTIMES)} (default: all; on CUDA all but ours-int8)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    p.add_argument("--no-models", action="store_true", help="skip our three shipped models")
    p.add_argument("--build-only", action="store_true", help="build and export what the runtimes load (the cache), "
                                                              "then stop")
    p.add_argument("--compile-mode", choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile's mode for the `compile` row (default: max-autotune on CUDA, whose autotuning "
                        "takes minutes; default on the CPU)")
    p.add_argument("--optimize", choices=("none", "cpu", "cuda"),
                   help="our export's --optimize (default: none on the CPU, where the fusions measured within "
                        "noise on our models and the optimizer needs ~3x the U-Net in memory; cuda on CUDA)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from benchmarks import sd15
    from benchmarks.bench_runtime import MODELS, matmul_peak, step_efficiency

    args.gpu_name = gpu_name() if args.device == "cuda" else None
    CACHE.mkdir(parents=True, exist_ok=True)
    pipeline = sd15.build(CACHE / "pipeline")
    runtimes = ([r.strip() for r in args.runtimes.split(",") if r.strip()] if args.runtimes else
                [r for r in RUNTIMES if args.device == "cpu" or r != "ours-int8"])
    unknown = sorted(set(runtimes) - set(RUNTIMES))
    if unknown:
        raise SystemExit(f"unknown runtimes {', '.join(unknown)}: choose from {', '.join(RUNTIMES)}")
    args.compile_mode = args.compile_mode or ("max-autotune" if args.device == "cuda" else "default")
    built = {"pipeline": str(pipeline), "device": args.device, "steps": args.steps, "calls": args.calls,
             "compile_mode": None if args.compile_mode == "default" else args.compile_mode}
    if "ours-int8" in runtimes and args.device == "cuda":
        raise SystemExit("ours-int8 is a CPU bundle: leave it out of --runtimes with --device cuda")
    if "ours" in runtimes or "ours-int8" in runtimes:
        optimize = args.optimize or ("cuda" if args.device == "cuda" else "none")
        built["bundle"] = str(export_ours(pipeline, args.device, optimize))
    if "ours-int8" in runtimes:
        built["bundle_int8"] = str(int8_ours(Path(built["bundle"])))
    if "optimum" in runtimes:
        optimum = export_optimum(pipeline, args.device)
        built["optimum"] = str(optimum) if optimum else None
    if args.build_only:
        print(json.dumps(built))
        return 0
    results = {r: [] for r in runtimes}
    for r in range(args.rounds):
        for name in runtimes:
            cfg = {**built, "runtime": name, "flops": name == "diffusers" and r == 0}
            if name == "ours-int8":
                cfg["bundle"] = built["bundle_int8"]
            res = spawn(cfg, args.timeout)
            results[name].append(res)
            print(f"round {r + 1} {name}: {res}", file=sys.stderr)
    flops = next((x.get("flops") for x in results.get("diffusers", []) if x.get("flops")), None)
    peak = matmul_peak_cuda() if args.device == "cuda" else matmul_peak()
    models = {} if args.no_models else {name: step_efficiency(REPO / "assets" / "models" / name) for name in MODELS}
    print_report(args, results, flops, peak, models, sd15.unet_parameters(pipeline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
