"""Runtime speed: our shipped models per image against an earlier commit, and one U-Net step in
PyTorch eager against ONNX Runtime.

    python benchmarks/bench_runtime.py models                      # digits, landscapes, shapes
    python benchmarks/bench_runtime.py models --baseline 3ffaefe --rounds 5 --models shapes
    python benchmarks/bench_runtime.py models --busy 1             # ... with one niced busy process beside
    python benchmarks/bench_runtime.py fusions                     # each CPU fusion, per U-Net step
    python benchmarks/bench_runtime.py open                        # first open vs a cached second open
    python benchmarks/bench_runtime.py step --source tiny-latent   # a preset (random weights) or a run

`models`: every variant runs in its own process (ONNX Runtime's thread pools are per process),
variants alternate round by round (the machine is shared: ratios from one run, medians over rounds):
- `today`: the runtime as it was at --baseline (desktop/ and diffusion/ from `git archive`), on
  the same bundles;
- `per-session`: this checkout with ONNX Runtime's default, one spinning thread pool per session
  (what today did); `sleep`, `spin`, `burst`: this checkout under that DIFFUSION_STUDIO_THREADS
  policy (desktop/runtime/providers.py); --policies picks which of these run;
- `now`: this checkout as the app and the CLI run it (the default thread policy, `burst`; cached
  optimised graphs);
- `now:<variant>`: the same runtime on a bundle variant made by `--variants DIR` (e.g. int8 or
  CPU-optimised bundles written by export, one sub-folder per model).
Each process opens the bundle (seconds: `open`), warms up with one image, then generates
--images images one at a time and one batch of --batch (seconds per image, both). Images are
compared with today's for the same seeds: `max |Δ|` in 0..255 levels and the share of differing
values. Then the U-Net's FLOPs per step (Conv/MatMul/Gemm, from ONNX Runtime's profile of one
batch-2 call) and the fraction of the measured matmul peak (one 2048³ MatMul in ONNX Runtime).

`fusions`: each shipped U-Net (fp32 weights restored) fused by export/optimize.py for the CPU,
one fusion at a time (attention; LayerNorm + GELU) and all of them, against the unfused graph: ms
per batch-2 step (median, alternated), the speed-up, the kernels ONNX Runtime runs per call, and
the largest output difference.

`open`: seconds to open each shipped bundle (sessions created, hashes verified, as the app does)
in a fresh process, alternated: `first` with an empty cache folder (ONNX Runtime optimises every
graph and the cache is written), `second` with the cache that first open left (the optimised graphs
are loaded as they are), and `today` (--baseline, which had no cache).

Then every GroupNorm of the U-Net at its shapes, as exported against ONNX's GroupNormalization-21
(the one fused GroupNorm the CPU provider runs): whether fusing it would pay.

`step`: the model is exported to a temporary bundle (fp32, checked), then per-step U-Net latency in
PyTorch eager (torch.no_grad) and ONNX Runtime on the same inputs at batch 1, 2 and 4 (median of
--repeats calls after 2 warm-up calls) and the end-to-end seconds per image through generate().
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before anything imports onnxruntime (our promise: no network)
ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and "--worker" not in sys.argv:
    sys.path.insert(0, str(ROOT))

MODELS = ("digits", "landscapes", "shapes")
BASELINE = "3ffaefe"  # main when issue 12 measured "today"


# --------------------------------------------------------------------------------------------
# What each model is asked for (the same request in every variant)


def request_fields(manifest: dict) -> dict:
    """A representative request for a shipped model: its defaults plus what it is conditioned on."""
    cond = manifest["conditioning"]
    h, w = manifest["image"]["height"], manifest["image"]["width"]
    fields: dict = {}
    if cond.get("class"):
        fields["class_index"] = min(3, len(cond["class"]["names"]) - 1)
    if cond.get("text"):
        fields["prompt"] = "a red heart at the top left and a blue star on a yellow background"
    mask = cond.get("mask") or {}
    if mask.get("kind") == "semantic":
        names = [label["name"] for label in mask["labels"]]
        labels = np.full((h, w), names.index("grass") if "grass" in names else 1, np.int64)
        labels[: int(h * 0.45)] = names.index("sky") if "sky" in names else 0
        labels[int(h * 0.35): int(h * 0.55), : w // 2] = names.index("mountains") if "mountains" in names else 0
        fields["labels"] = labels.tolist()
    return fields


# --------------------------------------------------------------------------------------------
# The worker: one process, one variant, one model


def worker(config: dict) -> dict:
    """Runs in a fresh process with config["root"] first on sys.path; prints a JSON result."""
    sys.path.insert(0, config["root"])
    import desktop
    from desktop.runtime import providers

    if not desktop.__file__.startswith(config["root"]):
        raise RuntimeError(f"imported {desktop.__file__}, not the runtime in {config['root']}")
    if config["threads"] != "per-session":  # today had one pool per session, spinning (ORT's default)
        providers.configure_program_threads({"DIFFUSION_STUDIO_THREADS": config["threads"]})
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate

    t0 = time.perf_counter()
    bundle = open_bundle(config["bundle"], provider="cpu")
    opened = time.perf_counter() - t0
    if config.get("open_only"):
        return {"open": opened}
    fields = dict(config["fields"])
    if "labels" in fields:
        fields["labels"] = np.asarray(fields["labels"], np.int64)

    def run(seed: int, batch: int):
        t = time.perf_counter()
        result = generate(bundle, GenerationRequest(seed=seed, batch_size=batch, **fields))
        return time.perf_counter() - t, result.images

    run(10_000, 1)  # warm-up (first-call allocations)
    singles, images = [], []
    for i in range(config["images"]):
        seconds, ims = run(i, 1)
        singles.append(seconds)
        images += ims
    batch_seconds, batch_images = run(100, config["batch"])
    out = Path(config["images_out"])
    np.save(out, np.stack(images + batch_images))
    return {"open": opened, "single": statistics.median(singles), "batch": batch_seconds / config["batch"]}


def spawn(config: dict, env: dict | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        out = subprocess.run([sys.executable, __file__, "--worker", f.name], capture_output=True, text=True,
                             timeout=3600, cwd=ROOT, env={**os.environ, **(env or {})})
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"worker failed ({config['variant']}, {config['bundle']}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def baseline_root(ref: str, into: Path) -> Path:
    """desktop/ and diffusion/ as they were at `ref` (git archive), for the `today` variant."""
    archive = into / "baseline.tar"
    with open(archive, "wb") as f:
        subprocess.run(["git", "archive", ref, "desktop", "diffusion"], cwd=ROOT, stdout=f, check=True, timeout=120)
    root = into / f"baseline-{ref}"
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")
    return root


# --------------------------------------------------------------------------------------------
# FLOPs per U-Net step and the matmul peak


def matmul_session(n: int = 2048):
    """A session running one n^3 fp32 MatMul (the main process's session options), and its feeds."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from desktop.runtime import providers

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "peak",
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [n, n]) for x in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers.session_options(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    return session, {x: rng.standard_normal((n, n)).astype(np.float32) for x in "ab"}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of one n^3 fp32 MatMul in ONNX Runtime (CPU, the main process's session options), best of `repeats`."""
    session, feeds = matmul_session(n)
    session.run(None, feeds)
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def node_flops(op: str, inputs: list, outputs: list) -> float:
    """FLOPs (2 per multiply-add) of a Conv/MatMul/Gemm node from its profiled input/output shapes."""
    if op in ("MatMul", "FusedMatMul") and len(inputs) >= 2 and outputs:
        k = inputs[0][-1]
        return 2.0 * float(np.prod(outputs[0])) * k
    if op == "Gemm" and len(inputs) >= 2 and outputs:
        a, c = inputs[0], outputs[0]  # A is [M, K] or [K, M]: K = |A| / M
        return 2.0 * float(np.prod(c)) * float(np.prod(a)) / c[0]
    if op in ("Conv", "FusedConv") and len(inputs) >= 2 and outputs:
        w = inputs[1]
        return 2.0 * float(np.prod(outputs[0])) * float(np.prod(w[1:]))
    return 0.0


def unet_flops(path: Path, feeds: dict) -> float:
    """FLOPs of one U-Net call on `feeds`, from ONNX Runtime's profile of the basic-optimised graph
    (plain NCHW Conv/MatMul/Gemm nodes with their real shapes)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "flops")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    total = 0.0
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            args = e["args"]
            shapes = lambda key: [list(d.values())[0] for d in args.get(key, [])]  # noqa: E731
            total += node_flops(args.get("op_name", ""), shapes("input_type_shape"), shapes("output_type_shape"))
    return total


def unet_feeds(bundle, batch: int) -> dict:
    """Random U-Net inputs at the model's size (text states from the empty prompt's shape)."""
    m = bundle.manifest
    rng = np.random.default_rng(0)
    size = m.latent or m.image
    feeds = {"sample": rng.standard_normal((batch, m.unet.in_channels, size.height, size.width)).astype(np.float32),
             "timestep": np.full(batch, 500, np.int64)}
    if m.conditioning.text:
        feeds["encoder_hidden_states"] = rng.standard_normal(
            (batch, m.conditioning.text.max_length, m.conditioning.text.hidden_size)).astype(np.float32)
    if m.conditioning.class_:
        feeds["class_labels"] = np.zeros(batch, np.int64)
    types = {name: spec[0] for name, spec in bundle.unet.inputs.items()}
    return {k: v.astype(np.float16) if types.get(k) == "tensor(float16)" else v for k, v in feeds.items()}


def step_efficiency(bundle_path: Path, repeats: int = 15, n: int = 2048) -> dict:
    """FLOPs per batch-2 U-Net step, its median seconds in the shipped session, GFLOP/s, and the
    median GFLOP/s of an n^3 MatMul timed alternately with it (the peak under the same machine load:
    the machine is shared, and a peak read at another moment has differed by 2x)."""
    from desktop.runtime.bundle import open_bundle

    bundle = open_bundle(bundle_path, provider="cpu")
    feeds = unet_feeds(bundle, 2)
    flops = unet_flops(bundle.path / bundle.manifest.files["unet"], feeds)
    session, (mm, mm_feeds) = bundle.unet.session, matmul_session(n)
    session.run(None, feeds)
    mm.run(None, mm_feeds)
    steps, peaks = [], []
    for _ in range(repeats):
        steps.append(_timed(lambda: session.run(None, feeds)))
        peaks.append(_timed(lambda: mm.run(None, mm_feeds)))
    seconds, peak = statistics.median(steps), 2 * n**3 / statistics.median(peaks) / 1e9
    return {"gflop": flops / 1e9, "ms": seconds * 1e3, "gflops": flops / seconds / 1e9, "peak": peak}


# --------------------------------------------------------------------------------------------
# The `models` report


def bundle_dirs(models: list[str], variants: list[str]) -> list[tuple[str, str, Path]]:
    """(model, variant, bundle path) for every model: the shipped bundle, and each --variants dir."""
    rows = []
    for name in models:
        rows.append((name, "", ROOT / "assets" / "models" / name))
        for v in variants:
            p = Path(v) / name
            if (p / "studio.json").is_file():
                rows.append((name, Path(v).name, p))
    return rows


@contextlib.contextmanager
def busy_background(n: int):
    """`n` busy-looping processes at the lowest priority (nice 19) while the rounds run: the machine
    of a user with something else going on (the thread policies differ most there)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(19))
             for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_models(args) -> int:
    from benchmarks.report import commit, machine

    from desktop.runtime import providers

    providers.configure_program_threads({})  # this process's sessions (efficiency table) as the app runs them
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = [v for v in (args.variants or "").split(",") if v]
    policies = [p for p in args.policies.split(",") if p]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = baseline_root(args.baseline, tmp)
        plan = []
        for name, variant, path in bundle_dirs(models, variants):
            manifest = json.loads((path / "studio.json").read_text())
            fields = request_fields(manifest)
            if not variant:
                plan.append((name, "today", str(base), "per-session", path, fields))
                plan += [(name, policy, str(ROOT), policy, path, fields) for policy in policies]
            plan.append((name, f"now:{variant}" if variant else "now", str(ROOT), "", path, fields))  # "": the default policy
        with busy_background(args.busy):
            run_rounds(args, plan, results, tmp)
        diffs = {key: image_diff(np.load(tmp / f"{key[0]}-today.npy"), np.load(tmp / f"{key[0]}-{key[1].replace(':', '_')}.npy"))
                 for key in results}
        efficiency = {name: step_efficiency(ROOT / "assets" / "models" / name) for name in models}
    print_models_report(results, diffs, efficiency, args, machine(f"onnxruntime {__import__('onnxruntime').__version__}"),
                        commit())
    return 0


def run_rounds(args, plan: list, results: dict, tmp: Path) -> None:
    """Every variant of the plan once per round, in its own process, in the plan's order."""
    for r in range(args.rounds):
        for name, label, root, threads, path, fields in plan:
            out = tmp / f"{name}-{label.replace(':', '_')}.npy"
            res = spawn({"variant": label, "root": root, "threads": threads, "bundle": str(path),
                         "fields": fields, "images": args.images, "batch": args.batch, "images_out": str(out)})
            results.setdefault((name, label), []).append(res)
            print(f"round {r + 1}/{args.rounds} {name:10s} {label:14s} open {res['open']:.2f} s  "
                  f"single {res['single']:.3f} s  batch {res['batch']:.3f} s/image", file=sys.stderr)


def image_diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return {"max": int(d.max()), "share": float((d > 0).mean())}


def print_models_report(results, diffs, efficiency, args, machine_line, commit_line) -> None:
    med = lambda key, field: statistics.median(r[field] for r in results[key])  # noqa: E731
    print("# Our models per image: today's runtime vs this checkout (one run, separate processes alternated)")
    print(f"machine: {machine_line} (shared with other jobs: ratios, not absolute seconds)")
    print(f"commit: {commit_line}; today = {args.baseline}; rounds {args.rounds}, {args.images} single images "
          f"and one batch of {args.batch} per round; defaults of each model (steps, sampler); "
          f"background: {args.busy} busy process(es) at nice 19 (--busy)")
    print()
    print("| model | runtime | open s | s/image (batch 1) | ×today | s/image (batch "
          f"{args.batch}) | ×today | max \\|Δ\\| vs today | values differing |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, label) in results:
        today = (name, "today")
        s1, sb = med((name, label), "single"), med((name, label), "batch")
        d = diffs[(name, label)]
        print(f"| {name} | {label} | {med((name, label), 'open'):.2f} | {s1:.3f} | {med(today, 'single') / s1:.2f} | "
              f"{sb:.3f} | {med(today, 'batch') / sb:.2f} | {d['max']} | {d['share'] * 100:.3f}% |")
    print()
    print("U-Net steps timed alternately with one 2048³ fp32 MatMul in ONNX Runtime (the peak), medians:")
    print()
    print("| model | U-Net GFLOP per step (batch 2) | ms per step | GFLOP/s | matmul peak GFLOP/s | share of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, e in efficiency.items():
        print(f"| {name} | {e['gflop']:.2f} | {e['ms']:.1f} | {e['gflops']:.0f} | {e['peak']:.0f} | "
              f"{e['gflops'] / e['peak'] * 100:.0f}% |")


# --------------------------------------------------------------------------------------------
# The `open` report


def run_open(args) -> int:
    import onnxruntime as ort

    from benchmarks.report import commit, machine

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    times: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = baseline_root(args.baseline, tmp)
        for r in range(args.rounds):
            for name in models:
                home = tmp / f"home-{name}-{r}"  # empty: the first open optimises and fills the cache
                bundle = str(ROOT / "assets" / "models" / name)
                for label, root in (("today", base), ("first", ROOT), ("second", ROOT)):
                    config = {"variant": label, "root": str(root), "threads": "sleep" if root == ROOT else
                              "per-session", "bundle": bundle, "open_only": True}
                    res = spawn(config, env={"DIFFUSION_STUDIO_HOME": str(home)})
                    times.setdefault((name, label), []).append(res["open"])
                    print(f"round {r + 1}/{args.rounds} {name:10s} {label:7s} open {res['open']:.3f} s", file=sys.stderr)
    med = {key: statistics.median(v) for key, v in times.items()}
    print("# Opening a shipped model (sessions created, hashes checked): first open, cached second open, today")
    print(f"machine: {machine(f'onnxruntime {ort.__version__}')} (shared with other jobs)")
    print(f"commit: {commit()}; today = {args.baseline}; {args.rounds} rounds, one process per open, alternated "
          "(median)")
    print()
    print("| model | today s | first open s | second open s | second / first | second vs today |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in models:
        t, f, s = med[(name, "today")], med[(name, "first")], med[(name, "second")]
        print(f"| {name} | {t:.3f} | {f:.3f} | {s:.3f} | {s / f:.2f} | {t / s:.2f}x faster |")
    return 0


# --------------------------------------------------------------------------------------------
# The `fusions` report


FUSION_VARIANTS = (("unfused", ()), ("attention", ("attention",)), ("layernorm+gelu", ("layernorm", "gelu")),
                   ("all CPU fusions", None))


def kernels_per_call(path: str, feeds) -> int:
    """Kernels ONNX Runtime runs in one call (from a profile)."""
    return sum(1 for e in _profile_events(path, feeds) if e.get("cat") == "Node"
               and e.get("name", "").endswith("_kernel_time"))


def _profile_events(path: str, feeds) -> list:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "p")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
        return json.loads(Path(session.end_profiling()).read_text())


def groupnorm_shapes(model, path: str, feeds) -> list[tuple[list[int], int, float]]:
    """(input [N, C, H, W], groups, epsilon) of every GroupNorm in an exported U-Net: the Reshape ->
    InstanceNormalization pattern torch exports it as, with the shapes from a profile of one call."""
    args = {e["name"][: -len("_kernel_time")]: e["args"] for e in _profile_events(path, feeds)
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")}
    producer = {o: n for n in model.graph.node for o in n.output}
    found = []
    for node in model.graph.node:
        reshape = producer.get(node.input[0]) if node.op_type == "InstanceNormalization" else None
        if reshape is None or reshape.op_type != "Reshape" or reshape.name not in args or node.name not in args:
            continue
        x = list(args[reshape.name]["input_type_shape"][0].values())[0]
        groups = list(args[node.name]["input_type_shape"][0].values())[0][1]
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        found.append((x, groups, eps))
    return found


def groupnorm_graphs(shapes) -> tuple[bytes, bytes, dict]:
    """Two graphs running every GroupNorm of `shapes` side by side: as exported (Reshape,
    InstanceNormalization, Reshape, Mul, Add) and as one ONNX GroupNormalization-21 op each; feeds."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes_pattern, nodes_fused, inits_pattern, inits_fused, inputs, outputs, feeds = [], [], [], [], [], [], {}
    for i, (x, groups, eps) in enumerate(shapes):
        n, c = x[0], x[1]
        gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
        feeds[f"x{i}"] = rng.standard_normal(x).astype(np.float32)
        inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, x))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, x))
        inits_pattern += [numpy_helper.from_array(np.array([n, groups, -1], np.int64), f"g{i}"),
                          numpy_helper.from_array(np.array(x, np.int64), f"s{i}"),
                          numpy_helper.from_array(np.ones(groups, np.float32), f"one{i}"),
                          numpy_helper.from_array(np.zeros(groups, np.float32), f"zero{i}"),
                          numpy_helper.from_array(gamma.reshape(c, *[1] * (len(x) - 2)), f"gamma{i}"),
                          numpy_helper.from_array(beta.reshape(c, *[1] * (len(x) - 2)), f"beta{i}")]
        nodes_pattern += [helper.make_node("Reshape", [f"x{i}", f"g{i}"], [f"a{i}"]),
                          helper.make_node("InstanceNormalization", [f"a{i}", f"one{i}", f"zero{i}"], [f"b{i}"],
                                           epsilon=eps),
                          helper.make_node("Reshape", [f"b{i}", f"s{i}"], [f"c{i}"]),
                          helper.make_node("Mul", [f"c{i}", f"gamma{i}"], [f"d{i}"]),
                          helper.make_node("Add", [f"d{i}", f"beta{i}"], [f"y{i}"])]
        inits_fused += [numpy_helper.from_array(gamma, f"gamma{i}"), numpy_helper.from_array(beta, f"beta{i}")]
        nodes_fused.append(helper.make_node("GroupNormalization", [f"x{i}", f"gamma{i}", f"beta{i}"], [f"y{i}"],
                                            num_groups=groups, epsilon=eps))

    def build(nodes, inits, opset):
        graph = helper.make_graph(nodes, "groupnorm", inputs, outputs, initializer=inits)
        return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()

    return build(nodes_pattern, inits_pattern, 17), build(nodes_fused, inits_fused, 21), feeds


def groupnorm_row(model, path: str, feeds, repeats: int) -> tuple:
    """ms per step of all the U-Net's GroupNorms, as exported vs as GroupNormalization-21; max |Δ|."""
    import onnxruntime as ort

    shapes = groupnorm_shapes(model, path, feeds)
    if not shapes:
        return None
    pattern, fused, gn_feeds = groupnorm_graphs(shapes)
    sessions = [ort.InferenceSession(g, providers=["CPUExecutionProvider"]) for g in (pattern, fused)]
    outs = [s.run(None, gn_feeds) for s in sessions]
    times = [[], []]
    for _ in range(repeats):
        for k, s in enumerate(sessions):
            times[k].append(_timed(lambda: s.run(None, gn_feeds)))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*outs))
    return len(shapes), statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3, diff


def run_fusions(args) -> int:
    import onnx
    import onnxruntime as ort

    from benchmarks.report import commit, machine
    from desktop.runtime.bundle import open_bundle
    from export import fp16, optimize

    rows, groupnorms = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            bundle = open_bundle(ROOT / "assets" / "models" / name, provider="cpu")
            fp32 = Path(tmp) / f"{name}.onnx"
            model = fp16.weights_to_fp32(fp16.load_model(bundle.path / bundle.manifest.files["unet"]))
            onnx.save(model, fp32)
            feeds = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in unet_feeds(bundle, 2).items()}
            groupnorms[name] = groupnorm_row(model, str(fp32), feeds, args.repeats)
            sessions, paths = {}, {}
            for label, fusions in FUSION_VARIANTS:
                path = fp32 if fusions == () else Path(tmp) / f"{name}-{len(paths)}.onnx"
                if fusions != ():
                    onnx.save(optimize.optimize_graph(fp32, "unet", "cpu", fusions=fusions), path)
                paths[label] = path
                sessions[label] = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            reference = sessions["unfused"].run(None, feeds)[0]
            times = {label: [] for label in sessions}
            for _ in range(args.repeats):
                for label, session in sessions.items():
                    times[label].append(_timed(lambda: session.run(None, feeds)))
            base = statistics.median(times["unfused"])
            for label, session in sessions.items():
                t = statistics.median(times[label])
                rows.append((name, label, t * 1e3, base / t, kernels_per_call(str(paths[label]), feeds),
                             float(np.abs(session.run(None, feeds)[0] - reference).max())))
    print("# CPU fusions of export/optimize.py, one at a time, per U-Net step (batch 2)")
    print(f"machine: {machine(f'onnxruntime {ort.__version__}')} (shared with other jobs)")
    print(f"commit: {commit()}; {args.repeats} alternated calls per variant (median)")
    print()
    print("| model | graph | ms / step | × unfused | kernels per call | max \\|Δ\\| |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label, ms, ratio, kernels, diff in rows:
        print(f"| {name} | {label} | {ms:.1f} | {ratio:.2f} | {kernels} | {diff:.1e} |")
    print()
    print("GroupNorm: ONNX Runtime has no fused GroupNorm kernel on the CPU (com.microsoft GroupNorm is CUDA-only); "
          "the standard ONNX GroupNormalization-21 op does run there. All of a U-Net's GroupNorms at their shapes "
          "in one graph, as exported vs as GroupNormalization-21:")
    print()
    print("| model | GroupNorms | exported pattern ms / step | GroupNormalization-21 ms / step | × exported | max \\|Δ\\| |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in groupnorms.items():
        if row is None:
            print(f"| {name} | none found | | | | |")
            continue
        count, pattern, fused, diff = row
        print(f"| {name} | {count} | {pattern:.2f} | {fused:.2f} | {pattern / fused:.2f} | {diff:.1e} |")
    return 0


# --------------------------------------------------------------------------------------------
# The `step` report (PyTorch eager vs ONNX Runtime on one model)


def model_from_preset(name: str):
    """A LoadedModel with random weights in the architecture of an engine preset."""
    import torch

    from engine.config import load_config
    from engine.loaded import LoadedModel
    from engine.models import build_unet, build_vae

    cfg = load_config(name)
    cc, size = cfg["conditioning"], int(cfg["dataset"]["size"])
    torch.manual_seed(0)
    text = None
    if cc["text"]:
        from engine.text import load_text_encoder

        text = load_text_encoder(cc["text"]).eval()
    class_names = [f"class {i}" for i in range(4)] if cc["class"] else None
    labels = [{"name": f"label {i}", "color": [40 * i, 100, 200 - 40 * i]} for i in range(4)] \
        if cc["mask"] == "semantic" else None
    channels = 1 if cfg["dataset"].get("grayscale") else 3
    vae, diff_channels, diff_size = None, channels, size
    if cfg["kind"] == "latent":
        vae_cfg = load_config(Path(cfg["vae"]).name)  # latent configs always name their VAE
        vae = build_vae(vae_cfg, channels, size).eval()
        diff_channels = int(vae.config.latent_channels)
        diff_size = size // 2 ** (len(vae.config.block_out_channels) - 1)
    unet = build_unet(cfg, sample_size=diff_size, channels=diff_channels, num_classes=len(class_names or []),
                      num_labels=len(labels or []), text_dim=int(text.dim) if text is not None else 0).eval()
    mask = {"kind": "semantic", "labels": labels} if labels else ({"kind": cc["mask"]} if cc["mask"] else None)
    s = cfg["schedule"]
    return LoadedModel(
        kind=cfg["kind"], unet=unet, vae=vae, scale_factor=1.0, text_encoder=text, class_names=class_names,
        mask=mask, image_size=size, image_channels=channels, prediction_type=cfg["training"]["prediction_type"],
        schedule={"name": s["name"], "num_train_timesteps": s["T"], "beta_start": s["beta_start"],
                  "beta_end": s["beta_end"], "cosine_s": s["cosine_s"]},
        name=f"random-{name}", provenance={"data": "random weights (benchmark)"},
    )


def load_source(source: str):
    if Path(source).exists():
        from engine.loaded import load_model

        return load_model(source)
    return model_from_preset(source)


def median_seconds(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    return statistics.median(_timed(fn) for _ in range(repeats))


def run_step(args) -> int:
    import torch

    from benchmarks.report import commit, machine
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate
    from export.bundle_writer import export_bundle, model_graphs

    torch.set_num_threads(args.threads)
    model = load_source(args.source)
    graph = model_graphs(model)[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = export_bundle(model, Path(tmp) / "bundle", log=lambda s: None, preview_samples=16)
        bundle = open_bundle(out, provider="cpu")
        session = bundle.unet.session
        rng = np.random.default_rng(0)
        for b in [int(x) for x in args.batches.split(",")]:
            feeds = graph.make_inputs(b, rng)
            args_t = tuple(torch.from_numpy(feeds[n]) for n in graph.input_names)

            def run_torch():
                with torch.no_grad():
                    graph.module(*args_t)

            t_torch = median_seconds(run_torch, args.repeats)
            t_onnx = median_seconds(lambda: session.run(None, feeds), args.repeats)
            rows.append((b, t_torch * 1e3, t_onnx * 1e3, t_torch / t_onnx))
        req = GenerationRequest(prompt="a red circle on blue", steps=args.steps, seed=0, batch_size=1, sampler="dpmpp_2m")
        generate(bundle, GenerationRequest(prompt="warm up", steps=2, seed=1))
        e2e = median_seconds(lambda: generate(bundle, req), 1)
    print(f"# U-Net step latency, PyTorch eager vs ONNX Runtime ({args.source})")
    print(f"machine: {machine()}; threads {args.threads}")
    print(f"commit: {commit()}; torch {torch.__version__}; onnxruntime {__import__('onnxruntime').__version__}")
    print(f"model: {model.kind}, image {model.image_size}, unet inputs {graph.input_names}, "
          f"{sum(p.numel() for p in model.unet.parameters()) / 1e6:.2f} M parameters")
    print()
    print("| batch | torch eager ms/step | onnxruntime ms/step | torch / onnx |")
    print("|------:|--------------------:|--------------------:|-------------:|")
    for b, tt, to, r in rows:
        print(f"| {b} | {tt:.2f} | {to:.2f} | {r:.2f} |")
    print()
    print(f"end to end (generate, dpmpp_2m {args.steps} steps, 1 image): {e2e:.3f} s/image")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(json.loads(Path(argv[1]).read_text()))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    m = sub.add_parser("models", help="our shipped models per image, today vs now")
    m.add_argument("--models", default=",".join(MODELS))
    m.add_argument("--baseline", default=BASELINE, help="the git commit whose runtime is 'today'")
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--images", type=int, default=3, help="single images per round (median)")
    m.add_argument("--batch", type=int, default=4)
    m.add_argument("--variants", help="comma-separated folders of bundle variants, one sub-folder per model")
    m.add_argument("--policies", default="per-session,sleep,spin",
                   help="thread policies measured beside today and now (per-session: ONNX Runtime's default)")
    m.add_argument("--busy", type=int, default=0, help="busy-looping processes at nice 19 while measuring")
    f = sub.add_parser("fusions", help="each CPU fusion of export/optimize.py on our U-Nets")
    f.add_argument("--models", default=",".join(MODELS))
    f.add_argument("--repeats", type=int, default=15)
    o = sub.add_parser("open", help="first open vs the cached second open of our shipped models")
    o.add_argument("--models", default=",".join(MODELS))
    o.add_argument("--baseline", default=BASELINE, help="the git commit whose runtime is 'today'")
    o.add_argument("--rounds", type=int, default=5)
    s = sub.add_parser("step", help="one U-Net step, PyTorch eager vs ONNX Runtime")
    s.add_argument("--source", default="tiny-latent", help="run / diffusers folder, or an engine preset name")
    s.add_argument("--batches", default="1,2,4")
    s.add_argument("--repeats", type=int, default=10)
    s.add_argument("--steps", type=int, default=20, help="sampler steps for the end-to-end figure")
    s.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    return {"models": run_models, "fusions": run_fusions, "open": run_open, "step": run_step}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
