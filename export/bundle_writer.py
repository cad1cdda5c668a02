"""`export_bundle`: a LoadedModel (engine.loaded) -> a checked model bundle (docs/ARCHITECTURE.md, "The bundle manifest").

Steps, all inside a temporary folder next to OUT_DIR:
1. each network is exported (onnx_graphs) and checked in ONNX Runtime against PyTorch at batch
   sizes 1 and 3 (parity); the fp32 graph is always checked, and then the file actually shipped
   (fp16 weights, fp16 compute or optimizer fusions) against the same PyTorch model;
2. latent models get the fitted linear preview (preview_fit), text models the tokenizer JSON
   (with padding/truncation set to the encoder's max_length);
3. the files other tools read (export.ecosystem: model_index.json, scheduler and component configs,
   so optimum's ORT Stable Diffusion pipeline loads a latent text-to-image bundle), then studio.json
   through desktop.runtime.manifest (hashes every file);
4. only when all of that succeeded is the folder put at OUT_DIR. An existing OUT_DIR is refused
   unless it is a bundle and overwrite=True (`check_out_dir`: a folder of other files, a file or
   a link is never replaced); then the two folders are exchanged atomically (`fileio.replace_dir`)
   and the old one removed. Temporaries of a killed export are removed by the next one.

Choices the contract left open (also in the report):
- `--gpu-fp16` converts the U-Net and text encoder to fp16 compute; the VAE graphs keep fp32
  compute with fp16 weights (VAE decoders overflow fp16). The manifest's `precision` is "fp16"
  and `provenance.export.compute` says "fp16 (CUDA)".
- `--optimize cpu|cuda` fuses the graphs for that provider (export/optimize.py): the U-Net for the
  CPU; the U-Net and the VAE decoder for CUDA, whose fused operators (NhwcConv, GroupNorm...) exist
  only in the CUDA provider, so it is checked on CUDA and refused without it. The manifest's
  `providers` records where the graphs run (cpu: ["cpu", "cuda"]; cuda: ["cuda"]).
- Large models use external data (`<graph>.onnx.data`), listed in `files` under the role
  `<role>_data` so it is hashed with the rest.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import torch

from desktop.runtime import fileio
from desktop.runtime.manifest import FORMAT, manifest_from_dict, write_manifest
from diffusion import defaults as fallback_table
from export import fp16 as fp16_tools
from export import onnx_graphs, parity, preview_fit, preview_net
from export import optimize as export_optimize
from export.ecosystem import write_ecosystem_files
from export.out_dir import BundleExistsError, check_out_dir, foreign_files, publish_bundle  # noqa: F401 (callers import them from here)
from export.parity import ExportError, ParityError  # noqa: F401 (callers catch them from here)

FILE_OF_ROLE = {
    "unet": "unet/model.onnx",
    "vae_decoder": "vae_decoder/model.onnx",
    "vae_encoder": "vae_encoder/model.onnx",
    "text_encoder": "text_encoder/model.onnx",
    "tokenizer": "tokenizer/tokenizer.json",
    "preview": "preview/linear.json",
}
BASE_DEFAULTS = fallback_table.fallback_defaults(conditional=True)  # what model.defaults leaves out


def _code_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "uncommitted"
    except (OSError, subprocess.SubprocessError):
        return "uncommitted"


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def model_graphs(model) -> list:
    """The graphs a model's bundle holds, in export order."""
    T = int(model.schedule["num_train_timesteps"])
    H = W = int(model.image_size)
    takes_class = onnx_graphs.unet_takes_class(model.unet)
    if bool(model.class_names) != takes_class:
        raise ExportError(
            f"class_names is {model.class_names!r} but the U-Net {'has' if takes_class else 'has no'} class "
            "embedding; class models need both (names plus the null class = num_class_embeds)")
    if model.text_encoder is not None and not onnx_graphs.unet_takes_context(model.unet):
        raise ExportError(f"the model has a text encoder but its U-Net ({type(model.unet).__name__}) takes no "
                          "encoder_hidden_states")
    graphs = []
    if model.kind == "latent":
        if model.vae is None:
            raise ExportError("a latent model needs its VAE (model.vae is None); export needs the vae/ folder")
    graphs.append(onnx_graphs.unet_graph(model.unet, sample_size=model.sample_size, num_train_timesteps=T,
                                         text_encoder=model.text_encoder,
                                         num_classes=len(model.class_names) + 1 if model.class_names else None))
    if model.kind == "latent":
        graphs.append(onnx_graphs.vae_decoder_graph(model.vae, (H, W), float(model.scale_factor)))
        graphs.append(onnx_graphs.vae_encoder_graph(model.vae, (H, W)))
    if model.text_encoder is not None:
        graphs.append(onnx_graphs.text_encoder_graph(model.text_encoder))
    return graphs


def _cuda_available() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


OPTIMIZED_ROLES = {"cpu": ("unet",), "cuda": ("unet", "vae_decoder")}


def optimize_target(optimize) -> str | None:
    """None, "cpu" or "cuda" from export_bundle's `optimize` (True and "auto": CUDA where its provider
    is available, else the CPU)."""
    if optimize in (None, False, ""):
        return None
    if optimize in (True, "auto"):
        return "cuda" if _cuda_available() else "cpu"
    if optimize not in export_optimize.TARGETS:
        raise ExportError(f"--optimize takes {' or '.join(export_optimize.TARGETS)}, got {optimize!r}")
    return optimize


def _export_one(graph, raw_dir: Path, bundle_dir: Path, *, fp16: bool, gpu_fp16: bool, optimize: str | None,
                external_data, check: bool, log) -> tuple[list[str], list[dict]]:
    """Exports and checks one graph; returns (files relative to the bundle, parity results)."""
    raw_path = onnx_graphs.export_graph(graph, raw_dir / graph.role / "model.onnx")
    out_path = bundle_dir / FILE_OF_ROLE[graph.role]
    references = parity.reference_outputs(graph) if check else None
    checks = []
    if check:
        checks.append(parity.require(parity.check_graph(graph, raw_path, precision="fp32",
                                                        references=references), raw_path))
        log(checks[-1].line())
    fuse = optimize if optimize and graph.role in OPTIMIZED_ROLES[optimize] else None
    if not (fp16 or gpu_fp16 or fuse) and _can_move_raw(raw_path, external_data):
        # nothing to convert: the checked fp32 graph is the file shipped
        out_path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(raw_path, out_path)
        return [out_path.relative_to(bundle_dir).as_posix()], [c.to_dict() for c in checks]
    precision, providers = "fp32", None
    half_compute = gpu_fp16 and graph.role in ("unet", "text_encoder")
    if fuse == "cuda":
        if check and not _cuda_available():
            raise ExportError("--optimize cuda writes fused operators that only ONNX Runtime's CUDA provider runs, "
                              "and this machine has no CUDA provider to check them; use --optimize cpu, or export "
                              "on a machine with an NVIDIA GPU (or skip the check: check=False)")
        # TF32 off: the check compares fp32 with fp32 (TF32 alone would cost ~1e-3 relative)
        providers = [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]
    dropped: list[str] = []  # fusions whose operators the provider refused to run for this graph
    while True:
        proto, precision = _converted(graph, raw_path, fuse, dropped, fp16=fp16, gpu_fp16=gpu_fp16,
                                      half_compute=half_compute)
        written = fp16_tools.save_model(proto, out_path, external_data)
        del proto
        if not (check and (precision != "fp32" or providers or fuse)):
            break
        try:
            checks.append(parity.require(parity.check_graph(graph, out_path, precision=precision, providers=providers,
                                                            references=references), out_path))
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own error types
            fusion = _refused_fusion(exc, fuse, dropped)
            if fusion is None:
                raise
            dropped.append(fusion)
            log(f"{graph.role}: ONNX Runtime refused a fused operator ({str(exc).splitlines()[0][:200]}); "
                f"fusing again without '{fusion}'")
            continue
        log(checks[-1].line())
        break
    return [p.relative_to(bundle_dir).as_posix() for p in written], [c.to_dict() for c in checks]


def _converted(graph, raw_path: Path, fuse: str | None, dropped: list[str], *, fp16: bool, gpu_fp16: bool,
               half_compute: bool):
    """(graph to write, precision): fused for `fuse` without the `dropped` fusions, then in half precision
    as asked (export fp32 -> fuse -> fp16, in that order: the fusions match fp32 patterns)."""
    if fuse:
        fusions = [f for f in export_optimize.TARGET_FUSIONS[fuse] if f not in dropped]
        proto = export_optimize.optimize_graph(raw_path, graph.role, fuse, fusions=fusions, fp16=half_compute)
        export_optimize.check_target(proto, fuse, graph.role)
        if fp16 and not half_compute:
            return fp16_tools.weights_to_fp16(proto), "fp16"
        return proto, "fp16-compute" if half_compute else "fp32"
    proto = fp16_tools.load_model(raw_path)
    if half_compute:
        return fp16_tools.compute_to_fp16(proto), "fp16-compute"
    if fp16 or gpu_fp16:
        return fp16_tools.weights_to_fp16(proto), "fp16"
    return proto, "fp32"


def _refused_fusion(exc: Exception, fuse: str | None, dropped: list[str]) -> str | None:
    """The fusion to leave out when ONNX Runtime could not run one of its operators in the check
    ("... running BiasSplitGelu node ..."), or None (not a fused graph, or another error)."""
    match = re.search(r"running (\w+) node", str(exc))
    fusion = export_optimize.FUSION_OF_OPERATOR.get(match.group(1)) if match and fuse else None
    return fusion if fusion in export_optimize.TARGET_FUSIONS.get(fuse, ()) and fusion not in dropped else None


def _can_move_raw(raw_path: Path, external_data) -> bool:
    """True when the exported file is what save_model would write: one self-contained graph (no
    external data beside it) that is not asked, or too large, to get external data."""
    if external_data or [p.name for p in raw_path.parent.iterdir()] != [raw_path.name]:
        return False
    return external_data is False or raw_path.stat().st_size < fp16_tools.EXTERNAL_DATA_THRESHOLD


def _mask_spec(mask):
    if mask is None:
        return None
    mask = dict(mask)
    if mask.get("kind") == "semantic":
        mask["labels"] = [{"name": str(l["name"]), "color": [int(c) for c in l["color"]]} for l in mask["labels"]]
        return {"kind": "semantic", "labels": mask["labels"]}
    return {"kind": mask.get("kind")}


def _text_spec(text_encoder):
    if text_encoder is None:
        return None
    return {"max_length": int(text_encoder.max_length), "hidden_size": int(text_encoder.dim),
            "pad_id": int(text_encoder.tokenizer_settings()["pad_id"])}


def _write_tokenizer(text_encoder, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text_encoder.write_tokenizer_json(path)


def _export_provenance(model, *, source, fp16: bool, gpu_fp16: bool, optimize, parity, preview) -> dict:
    """The model's provenance plus where it came from and how this export made it (the manifest's
    `provenance`: source, then `export` with time, commit, machine, versions, precision, parity)."""
    provenance = dict(_jsonable(model.provenance or {}))
    provenance.update({
        "source": str(source or provenance.get("source") or ""),
        "export": {
            "exported_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _code_commit(), "machine": f"{platform.system()} {platform.machine()}",
            "torch": torch.__version__, "opset": onnx_graphs.OPSET,
            "fp16_weights": bool(fp16 or gpu_fp16), "compute": "fp16 (CUDA)" if gpu_fp16 else "fp32",
            "optimized": optimize or False, "parity": parity, "preview": preview,
        },
    })
    return provenance


def export_bundle(model, out_dir, *, fp16: bool = False, gpu_fp16: bool = False, optimize: str | bool | None = None,
                  int8: bool = False, int8_gate=None, int8_options: dict | None = None,
                  external_data: bool | None = None, check: bool = True, preview_samples: int = 32,
                  preview_decoder_steps: int = 0,
                  name: str | None = None, description: str | None = None, overwrite: bool = False,
                  source: str | None = None, log=print) -> Path:
    """Writes the bundle of `model` (an engine.loaded.LoadedModel) to `out_dir`; returns out_dir.

    Raises BundleExistsError (out_dir exists, overwrite False), ParityError (a graph disagrees with
    PyTorch), ExportError (the model cannot be exported as asked). On any error nothing is written
    to out_dir. `check=False` skips the parity checks and opening the finished bundle with
    desktop.runtime (provenance then says "parity": "skipped"; the manifest is still validated and
    hashed). `external_data`: None = only graphs over 2 GB, True/False = always/never.
    `preview_decoder_steps` > 0: a latent model's preview is a learned decoder trained for that many
    steps (`export.preview_net`, a few minutes on a CPU) instead of the linear map.
    `optimize`: "cpu" or "cuda" (export/optimize.py; True or "auto": CUDA if it is available, else
    the CPU): fused graphs for that provider, recorded in the manifest's `providers`.
    `int8`: the U-Net quantised to int8 (export/quantize.py), kept only if it passes the gate:
    the images stay close to the float model's, and `int8_gate(bundle_dir)` (None or a failure
    sentence; e.g. quantize.evaluation_gate) accepts it; `int8_options`: quantize_in_place's
    calibration settings (`calibration` generations, their sampler `steps`).
    The model's networks are put in eval mode and float32 in place.
    """
    optimize = optimize_target(optimize)
    if int8 and (optimize == "cuda" or gpu_fp16):
        raise ExportError("--int8 makes a CPU model; it does not combine with --optimize cuda or --gpu-fp16")
    out_dir = Path(out_dir).absolute()
    check_out_dir(out_dir, overwrite)
    if model.kind not in ("pixel", "latent"):
        raise ExportError(f"model.kind is {model.kind!r}; expected 'pixel' or 'latent'")
    fileio.make_dir(out_dir.parent)
    fileio.clean_leftovers(out_dir.parent, out_dir.name)  # what a killed export left
    tmp = fileio.temp_dir(out_dir, "export")
    raw = tmp / ".raw"
    bundle = tmp / "bundle"
    try:
        for module in (model.unet, model.vae, model.text_encoder):
            if isinstance(module, torch.nn.Module):
                module.float().eval()
        files, parity_results = _export_graphs(model, raw, bundle, fp16=fp16, gpu_fp16=gpu_fp16, optimize=optimize,
                                               external_data=external_data, check=check, log=log)
        latent = None
        preview_report = None
        if model.kind == "latent":
            latent = {"channels": model.latent_channels, "height": model.latent_size, "width": model.latent_size,
                      "scale_factor": float(model.scale_factor)}
            preview_report = _write_preview(model, bundle, files, samples=preview_samples,
                                            decoder_steps=preview_decoder_steps, log=log)
        if model.text_encoder is not None:
            _write_tokenizer(model.text_encoder, bundle / FILE_OF_ROLE["tokenizer"])
            files["tokenizer"] = FILE_OF_ROLE["tokenizer"]
        provenance = _export_provenance(model, source=source, fp16=fp16, gpu_fp16=gpu_fp16, optimize=optimize,
                                        parity=parity_results if check else "skipped", preview=preview_report)
        defaults = {**BASE_DEFAULTS, **_jsonable(model.defaults or {})}
        files.update(write_ecosystem_files(model, bundle, files, sampler=defaults["sampler"]))
        data = _manifest_data(model, name=name or getattr(model, "name", None) or out_dir.name,
                              description=description, latent=latent, files=files, defaults=defaults,
                              precision="fp16" if (fp16 or gpu_fp16) else "fp32", provenance=provenance,
                              providers=export_optimize.providers_for(optimize) if optimize else None)
        write_manifest(bundle, manifest_from_dict(data), model_index=False)  # export.ecosystem wrote it
        if check:
            _open_check(bundle, log)
        if int8:
            from export import quantize

            quantize.quantize_in_place(bundle, gate=int8_gate, log=log, **(int8_options or {}))
        publish_bundle(bundle, out_dir, overwrite)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"wrote {out_dir}")
    return out_dir


def _manifest_data(model, *, name: str, description: str | None, latent: dict | None, files: dict, defaults: dict,
                   precision: str, provenance: dict, providers: list | None) -> dict:
    """studio.json's content for the exported model (hashes are filled in by write_manifest)."""
    unet_cfg = model.unet.config
    H = W = int(model.image_size)
    return {
        "format": FORMAT, "format_version": 1,  # written as 2 where the manifest needs it
        "name": name,
        "description": description if description is not None else str(getattr(model, "description", "") or ""),
        "kind": model.kind,
        "image": {"height": H, "width": W, "channels": int(model.image_channels)},
        "latent": latent,
        "schedule": _jsonable(model.schedule),
        "prediction_type": model.prediction_type,
        "clip_x0": model.clip_x0,
        "steps_offset": int(model.steps_offset),
        "set_alpha_to_one": bool(model.set_alpha_to_one),
        "conditioning": {
            "text": _text_spec(model.text_encoder),
            "class": {"names": [str(n) for n in model.class_names]} if model.class_names else None,
            "mask": _mask_spec(model.mask),
        },
        "files": files,
        "unet": {"in_channels": int(unet_cfg.in_channels), "out_channels": int(unet_cfg.out_channels),
                 "size_divisor": model.size_divisor},
        "defaults": defaults,
        "precision": precision,
        "providers": providers,
        "provenance": provenance,
        "sha256": {},
    }


def _export_graphs(model, raw: Path, bundle: Path, *, log, **options) -> tuple[dict, dict]:
    """Each graph of the model exported (and checked against PyTorch) into `bundle`; (files, parity)."""
    files, parity_results = {}, {}
    for graph in model_graphs(model):
        written, checks = _export_one(graph, raw, bundle, log=log, **options)
        files[graph.role] = written[0]
        for extra in written[1:]:
            files[f"{graph.role}_data"] = extra
        parity_results[graph.role] = checks
        shutil.rmtree(raw / graph.role, ignore_errors=True)
    shutil.rmtree(raw, ignore_errors=True)
    return files, parity_results


def _write_preview(model, bundle: Path, files: dict, *, samples: int, decoder_steps: int = 0, log) -> dict:
    """A latent model's preview, fitted on its VAE (and data when at hand): a learned decoder trained
    for `decoder_steps` steps when > 0, else the linear map; the fit's report."""
    H = W = int(model.image_size)
    data_dir = (model.provenance or {}).get("data")
    if decoder_steps > 0:
        net, report = preview_net.fit_preview_decoder(model.vae, float(model.scale_factor), H, data=data_dir,
                                                      steps=decoder_steps, log=log)
        report["parity"] = preview_net.write_preview_decoder(net, bundle, model.latent_channels, model.latent_size)
        files["preview"] = preview_net.PREVIEW_DECODER_FILE
        return report
    preview, report = preview_fit.fit_preview(model.vae, float(model.scale_factor), (H, W), samples=samples,
                                              data_dir=data_dir)
    preview_fit.write_preview(preview, bundle / FILE_OF_ROLE["preview"])
    files["preview"] = FILE_OF_ROLE["preview"]
    log(f"preview        linear map fitted on {report['latents']}: mse {report['mse']:.4f} "
        f"(mean colour {report['mean_colour_mse']:.4f})")
    return report


def _open_check(bundle: Path, log) -> None:
    """Opens the finished bundle the way the app does (write_manifest has just hashed every file)."""
    from desktop.runtime.bundle import open_bundle

    open_bundle(bundle, verify=False)
    log("bundle         opens with desktop.runtime.bundle.open_bundle")
