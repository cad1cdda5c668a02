"""int8 U-Net (`export --int8`): static quantisation calibrated on the model's own sampler inputs,
kept only when the model still clears its quality gate.

1. Calibration: the bundle (fp32 or fp16 weights) generates real images through desktop.runtime:
   the model's default sampler, steps and guidance, with the conditioning it takes (every class;
   prompts; label maps; inpainting masks; `calibration_requests`). Every U-Net call's inputs are
   recorded (x_t, t, text states, class, condition channels: the doubled batch of guidance included).
2. `onnxruntime.quantization.quantize_static`: QDQ format, Conv and MatMul only, int8 weights per
   output channel, uint8 activations (the u8s8 kernels x86 runs fastest, VNNI where the CPU has it),
   ranges at the 99.999th percentile of the recorded inputs. The first and the last convolution
   stay float (they carry x_t in and ε out: quantising them doubled the U-Net's error on landscapes,
   11% -> 5% mean relative error), and so do attention's products of two activations with the
   softmax between them (`float_nodes`: int8 there made shapes 0.91x of fp32 per image and SD-1.5
   slower; float, shapes is 1.2-1.4x) and the rest of the graph (norms, the time embedding).
   U-Nets over 2 GB (SD class) keep their weights in external data throughout and are calibrated one
   image at a time (ONNX Runtime's calibrator holds every Conv/MatMul output of what it is given).
3. The gate, on other seeds than the calibration's: the int8 bundle's images against the source
   bundle's (mean |Δ| at most `MEAN_TOLERANCE` levels of 255), and, when the caller gives one, the
   model's own evaluation (`gate(bundle_dir) -> None | failure sentence`; the export CLI passes the
   evaluations of benchmarks/evals for our models, with their floors). A failure is an ExportError
   and nothing is written.
The bundle then says precision "int8" and providers ["cpu"] (QDQ graphs are fast only on the CPU).
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx

from desktop.runtime import fileio
from desktop.runtime.manifest import read_manifest, write_manifest
from export import fp16 as fp16_tools
from export.ecosystem import MODEL_INDEX
from export.out_dir import check_out_dir, publish_bundle
from export.parity import ExportError

MEAN_TOLERANCE = 10.0  # mean |Δ| in 0..255 levels over the gate's images (measured: landscapes 4.75, digits 8.76)
CALIBRATION_SEED = 900_000
GATE_SEED = 700_000
CALIBRATION_GENERATIONS, GATE_GENERATIONS = 8, 4  # generations recorded for calibration; compared by the gate
OP_TYPES = ["Conv", "MatMul"]
PERCENTILE = 99.999  # activation ranges: MinMax let rare outliers waste the 8 bits (U-Net error 11% -> 9%)
GENERIC_PROMPTS = ("", "a photo", "a red circle on a blue background", "two green squares at the top left",
                   "a landscape with mountains and a lake", "a small yellow star in the middle")
EVALUATIONS = ("digits", "landscapes", "shapes", "inpaint")  # benchmarks/evals modules with floor_check
MEMORY_PER_GRAPH_BYTE = 6  # peak RAM / U-Net graph size while quantising (SD-1.5: 20.1 GB for 3.4 GB, measured)


def calibration_requests(manifest, count: int, seed: int, prompts=None, steps: int | None = None) -> list[dict]:
    """`count` generation requests (GenerationRequest fields) covering what the model is conditioned on;
    `steps`: fewer sampler steps than the model's default (the SD benchmark's quick calibration)."""
    rng = np.random.default_rng(seed)
    c = manifest.conditioning
    h, w = manifest.image.height, manifest.image.width
    requests = []
    for i in range(count):
        r: dict = {"seed": seed + i, **({"steps": steps} if steps else {})}
        if c.class_:
            r["class_index"] = i % len(c.class_.names)
        if c.text:
            pool = list(prompts or GENERIC_PROMPTS)
            r["prompt"] = pool[i % len(pool)]
        if c.mask and c.mask.kind == "semantic":
            r["labels"] = random_label_map(rng, h, w, len(c.mask.labels))
        if c.mask and c.mask.kind == "inpaint" and i % 2:
            r["init_image"] = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
            mask[y: y + h // 2, x: x + w // 2] = 255
            r["mask"] = mask
        requests.append(r)
    return requests


def random_label_map(rng: np.random.Generator, h: int, w: int, labels: int) -> np.ndarray:
    """Horizontal bands of random labels with a random blob: the layouts label maps are painted in."""
    cuts = np.sort(rng.integers(1, h, 2))
    bands = rng.integers(0, labels, 3)
    out = np.repeat(np.where(np.arange(h)[:, None] < cuts[0], bands[0], np.where(np.arange(h)[:, None] < cuts[1],
                                                                                  bands[1], bands[2])), w, axis=1)
    y, x = rng.integers(0, h), rng.integers(0, w)
    r = int(rng.integers(2, max(3, min(h, w) // 3)))
    yy, xx = np.ogrid[:h, :w]
    out[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = rng.integers(0, labels)
    return out.astype(np.int64)


def record_unet_inputs(bundle_dir: Path, requests: list[dict]) -> list[dict]:
    """Generates `requests` with the bundle and returns every U-Net call's feeds."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate

    bundle = open_bundle(bundle_dir, provider="cpu", verify=False)
    recorded = []
    unet = bundle.unet
    run = unet.run

    def recording_run(feeds, output=None):
        recorded.append({k: np.array(v) for k, v in feeds.items()})
        return run(feeds, output)

    unet.run = recording_run
    try:
        for fields in requests:
            generate(bundle, GenerationRequest(**fields))
    finally:
        del unet.run  # OnnxModel.run again: without this cycle the sessions (SD: 8 GB) are freed on return
    return recorded


class Feeds:
    """onnxruntime.quantization's CalibrationDataReader over recorded feeds (cast to the graph's types).
    `set_range` lets quantize_static collect a few feeds at a time (its CalibStridedMinMax option)."""

    def __init__(self, feeds: list[dict], types: dict):
        self.feeds = [{k: np.ascontiguousarray(v, dtype=types[k]) for k, v in f.items()} for f in feeds]
        self.items = iter(self.feeds)

    def __len__(self):
        return len(self.feeds)

    def get_next(self):
        return next(self.items, None)

    def set_range(self, start_index: int, end_index: int):
        self.items = iter(self.feeds[start_index:end_index])

    def rewind(self):  # not used by MinMax
        pass


def one_image_each(feeds: list[dict]) -> list[dict]:
    """The recorded calls split into calls of one image each (x_t, t, text states... share the batch axis)."""
    return [{k: v[i: i + 1] for k, v in f.items()} for f in feeds for i in range(len(next(iter(f.values()))))]


def float_nodes(graph) -> list[str]:
    """The Conv and MatMul nodes that stay float: the first and last convolution, and the attention's
    products of two activations (scores and scores x values; quantising them also quantises the softmax
    between: at SD-1.5 scale QLinearSoftmax took 4.2 s of a 15 s step where the float one takes 2.7 s)."""
    weights = {i.name for i in graph.initializer}
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    products = [n.name for n in graph.node if n.op_type == "MatMul" and not weights.intersection(n.input)]
    return convs[:1] + convs[-1:] + products


def fp32_graph(source: Path, header, work: Path) -> tuple[Path, bool]:
    """The graph at `source` with fp32 weights, for the quantiser, and whether it is over 2 GB:
    `source` itself when its weights are fp32 already (an SD-class U-Net is not written again, 3.4 GB),
    else an fp32-weight copy in `work`. `header`: the graph loaded without its external data."""
    if not any(i.data_type == onnx.TensorProto.FLOAT16 for i in header.graph.initializer):
        data = {e.value for i in header.graph.initializer for e in i.external_data if e.key == "location"}
        size = source.stat().st_size + sum((source.parent / name).stat().st_size for name in data)
        return source, size >= fp16_tools.EXTERNAL_DATA_THRESHOLD
    model = fp16_tools.weights_to_fp32(fp16_tools.load_model(source))
    large = fp16_tools.needs_external_data(model)
    fp16_tools.save_model(model, work / "fp32.onnx")
    return work / "fp32.onnx", large


def quantize_unet(source: Path, target: Path, feeds: list[dict]) -> None:
    """The int8 QDQ U-Net of the graph at `source` (fp32 or fp16 weights), calibrated on `feeds`."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    header = onnx.load(str(source), load_external_data=False)
    types = {i.name: onnx.helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in header.graph.input}
    work = target.parent / ".int8-work"
    work.mkdir(parents=True, exist_ok=True)
    system_temp, tempfile.tempdir = tempfile.tempdir, str(work)  # quantize_static's copies (GBs) stay in ours
    try:
        fp32, large = fp32_graph(source, header, work)  # large: > 2 GB (SD-class), every graph keeps its weights apart
        del header
        quant_pre_process(str(fp32), str(work / "pre.onnx"), skip_symbolic_shape=True,
                          save_as_external_data=large, all_tensors_to_one_file=True,
                          external_data_location="pre.onnx.data")
        excluded = float_nodes(onnx.load(str(work / "pre.onnx"), load_external_data=False).graph)
        # The calibrator keeps every Conv/MatMul output of the calls it is given: SD-class graphs get one
        # image at a time (a batch-2 SD-1.5 call at 512x512 alone went past 24 GB), the histograms merge.
        strided = {"CalibStridedMinMax": 1} if large else {}
        reader = Feeds(one_image_each(feeds) if large else feeds, types)
        with contextlib.redirect_stdout(io.StringIO()):  # its calibrator prints progress lines; the export logs its own
            quantize_static(str(work / "pre.onnx"), str(target), reader, quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=OP_TYPES, nodes_to_exclude=excluded, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.Percentile,
                            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                                           "CalibPercentile": PERCENTILE, **strided}, use_external_data_format=large)
    finally:
        tempfile.tempdir = system_temp
        shutil.rmtree(work, ignore_errors=True)
    data = target.with_name(target.name + ".data")
    if data.is_file():
        shutil.copymode(target, data)  # onnx writes external data as 0600; the bundle's files are alike
    if not any(n.op_type == "QuantizeLinear" for n in onnx.load(str(target), load_external_data=False).graph.node):
        raise ExportError("the U-Net has no convolution or matrix product to quantise besides its first and last "
                          "convolution; export without --int8")


def mean_difference(a_dir: Path, b_dir: Path, requests: list[dict]) -> float:
    """Mean |Δ| (0..255 levels) between the two bundles' images for the same requests."""
    from desktop.runtime.bundle import open_bundle
    from desktop.runtime.pipeline import GenerationRequest, generate

    a, b = open_bundle(a_dir, provider="cpu", verify=False), open_bundle(b_dir, provider="cpu", verify=False)
    diffs = []
    for fields in requests:
        for x, y in zip(generate(a, GenerationRequest(**fields)).images, generate(b, GenerationRequest(**fields)).images):
            diffs.append(np.abs(x.astype(np.int16) - y.astype(np.int16)).mean())
    return float(np.mean(diffs))


def evaluation_gate(names):
    """The floors of our models' evaluations (benchmarks/evals, in a source checkout) as a gate:
    `gate(bundle_dir) -> None | failure sentence`; None when no evaluation applies or none is found."""
    repo = Path(__file__).resolve().parents[1]
    wanted = [n for n in dict.fromkeys(names) if n in EVALUATIONS]
    if not wanted or not (repo / "benchmarks" / "evals").is_dir():
        return None
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    checks = {n: importlib.import_module(f"benchmarks.evals.{n}").floor_check for n in wanted}

    def gate(bundle_dir: Path):
        for name, check in checks.items():
            result = check(bundle_dir)
            if not result["ok"]:
                return f"its {name} evaluation falls below the floor ({'; '.join(result['failures'])})"
        return None

    gate.names = list(checks)
    return gate


def evaluations_of(provenance: dict) -> list[str]:
    """The evaluations a model has: those recorded in its provenance and the one named by its data set."""
    recorded = list((provenance.get("evaluation") or {}).keys())
    return recorded + [str(provenance.get("data") or "").split(" ")[0]]


def check_memory(bundle_dir: Path, manifest) -> None:
    """ExportError (one sentence) when this machine lacks the memory quantising the U-Net takes."""
    from desktop.runtime.memory import gib, ram_available_bytes

    graph = sum((bundle_dir / rel).stat().st_size for rel in unet_files(manifest))
    need, have = MEMORY_PER_GRAPH_BYTE * graph, ram_available_bytes()
    if have is not None and have < need:
        raise ExportError(f"quantising this U-Net ({gib(graph)}) takes about {gib(need)} of memory and this machine "
                          f"has {gib(have)} available; quantise it on a larger machine or export without --int8")


def unet_files(manifest) -> list[str]:
    return [rel for role, rel in manifest.files.items() if role in ("unet", "unet_data")]


def linked_copy(source: Path, target: Path, *, except_files=()) -> None:
    """A copy of a bundle folder whose files are hard links where the file system allows (an SD
    bundle is 4 GB; nothing here writes into a bundle file: new contents are new files or fileio's
    atomic replace), but for `except_files` (relative paths), which are left out. The U-Net's files
    are never linked: onnx refuses to load external data from a file with several links."""
    skipped = {(source / rel).resolve() for rel in except_files}

    def link(src, dst):
        if Path(src).resolve() in skipped:
            return
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)


def quantize_in_place(bundle_dir: Path, *, gate=None, calibration: int = CALIBRATION_GENERATIONS,
                      check: int = GATE_GENERATIONS, prompts=None,
                      steps: int | None = None, log=print) -> dict:
    """Makes the bundle at `bundle_dir` an int8 bundle (see the module docstring); its report.
    On a failed gate raises ExportError (the caller discards the folder)."""
    manifest = read_manifest(bundle_dir)
    check_memory(bundle_dir, manifest)
    reference = bundle_dir.with_name(bundle_dir.name + ".fp")  # the source bundle, for the gate's comparison
    linked_copy(bundle_dir, reference, except_files=unet_files(manifest))
    for rel in unet_files(manifest):
        os.replace(bundle_dir / rel, reference / rel)  # the float U-Net moves there; the int8 one is written here
    try:
        feeds = record_unet_inputs(reference, calibration_requests(manifest, calibration, CALIBRATION_SEED, prompts,
                                                                   steps))
        log(f"int8           calibrated on {len(feeds)} U-Net calls ({calibration} generations)")
        rel = manifest.files["unet"]
        quantize_unet(reference / rel, bundle_dir / rel, feeds)
        data = Path(rel).with_name(Path(rel).name + ".data").as_posix()  # an int8 graph still over 2 GB
        files = {role: r for role, r in manifest.files.items() if role != "unet_data"}
        if (bundle_dir / data).is_file():
            files["unet_data"] = data
        provenance = {**manifest.provenance}
        provenance.pop("evaluation", None)  # measured on the float model: not this one's
        keep_index = (bundle_dir / MODEL_INDEX).is_file()  # export.ecosystem's, with its notes: the components stay
        write_manifest(bundle_dir, replace(manifest, precision="int8", providers=("cpu",), files=files,
                                           provenance=provenance), model_index=not keep_index)
        gate_requests = calibration_requests(manifest, check, GATE_SEED, prompts, steps)
        mean = mean_difference(reference, bundle_dir, gate_requests)
        log(f"int8           mean |Δ| {mean:.2f}/255 against the float model over {len(gate_requests)} generations")
        if mean > MEAN_TOLERANCE:
            raise ExportError(f"the int8 U-Net changes the images by {mean:.2f}/255 on average (more than "
                              f"{MEAN_TOLERANCE}); export without --int8")
        failure = gate(bundle_dir) if gate is not None else None
        if failure:
            raise ExportError(f"the int8 U-Net is not good enough: {failure}; export without --int8")
        report = {"method": "static QDQ, Conv+MatMul but the first and last Conv and attention's products, "
                            "int8 weights per channel, "
                            f"uint8 activations, percentile {PERCENTILE}",
                  "calibration_calls": len(feeds), "calibration_generations": calibration,
                  "mean_abs_diff_255": round(mean, 3),
                  "evaluation_gate": getattr(gate, "names", []) if gate is not None else []}
        provenance["export"] = {**provenance.get("export", {}), "int8": report}
        write_manifest(bundle_dir, replace(read_manifest(bundle_dir), provenance=provenance), model_index=False)
        return report
    finally:
        shutil.rmtree(reference, ignore_errors=True)


def quantize_bundle(source: Path, out_dir: Path, *, overwrite: bool = False, use_evaluations: bool = True,
                    gate=None, log=print, **kw) -> Path:
    """An int8 copy of an existing bundle at `out_dir` (written only when the gate passes). The gate:
    `gate`, else the model's own evaluations (`use_evaluations`)."""
    source, out_dir = Path(source), Path(out_dir).absolute()
    check_out_dir(out_dir, overwrite)
    manifest = read_manifest(source)
    if gate is None and use_evaluations:
        gate = evaluation_gate(evaluations_of(manifest.provenance))
    tmp = fileio.temp_dir(out_dir, "int8")
    try:
        work = tmp / "bundle"
        linked_copy(source, work, except_files=unet_files(manifest))
        for rel in unet_files(manifest):
            shutil.copy2(source / rel, work / rel)
        quantize_in_place(work, gate=gate, log=log, **kw)
        publish_bundle(work, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out_dir}")
    return out_dir


if __name__ == "__main__":  # python -m export.quantize BUNDLE OUT_DIR
    print(json.dumps(str(quantize_bundle(Path(sys.argv[1]), Path(sys.argv[2])))))
