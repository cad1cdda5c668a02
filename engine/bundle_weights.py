"""A bundle's ONNX weights back into PyTorch networks, so a shipped model can be fine-tuned.

Our bundles keep only ONNX graphs (`export/`), not the training run. The exporter names most
initializers after their parameters (`unet.conv_in.weight`, with `__fp16` when the weights are
stored in half precision); the rest are nameless constants (`onnx::MatMul_812`) whose consuming
node carries the module path in its name (`/unet/down_blocks.0/attentions.0/.../to_q/MatMul`):

- `MatMul` consumes a `Linear` weight without bias, transposed;
- `Mul` / `Add` consume a GroupNorm's weight / bias reshaped to [C, 1, 1];
- anything else is read by name.
The exporter stores identical constants once (untrained norms: all ones), so one initializer can
fill several parameters.

`onnx_state_dict(onnx_path, reference)` maps every initializer onto the parameter of the same
size (after the transpose) in `reference` (a state dict of the network built from the same
config); `load_weights` fails naming the first parameter no graph holds. The callers check the result
against ONNX Runtime (`check_parity`), so a wrong mapping can never start a fine-tune silently.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

FP16_SUFFIX = "__fp16"


class BundleWeightsError(RuntimeError):
    """A bundle's weights do not fit the network built from the config; the message says which."""


def _consumers(graph) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _through_casts(name: str, consumers: dict) -> list:
    """The nodes that read initializer `name`, looking through fp16 -> fp32 Cast nodes and the
    Identity copies of a shared constant."""
    found = []
    for node in consumers.get(name, []):
        if node.op_type in ("Cast", "Identity"):
            for out in node.output:
                found += _through_casts(out, consumers)
        else:
            found.append(node)
    return found


def _module_paths(node_name: str) -> list[str]:
    """"/unet/down_blocks.0/resnets.0/norm1/Mul" -> ["unet.down_blocks.0.resnets.0.norm1",
    "down_blocks.0.resnets.0.norm1", ...]: the module path, with and without the export wrapper's
    scopes in front."""
    parts = [p for p in node_name.split("/") if p][:-1]
    return [".".join(parts[k:]) for k in range(len(parts))]


def _strip(name: str, prefixes: tuple[str, ...]) -> str:
    name = name[: -len(FP16_SUFFIX)] if name.endswith(FP16_SUFFIX) else name
    for p in prefixes:
        if name.startswith(p):
            return name[len(p):]
    return name


def onnx_state_dict(onnx_path: str | Path, reference: dict[str, torch.Tensor],
                    prefixes: tuple[str, ...] = ("unet.", "vae.")) -> dict[str, torch.Tensor]:
    """The parameters stored in `onnx_path` that `reference` has, named and shaped as there (float32)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    consumers = _consumers(model.graph)
    out: dict[str, torch.Tensor] = {}
    for init in model.graph.initializer:
        value = numpy_helper.to_array(init).astype(np.float32)
        name = _strip(init.name, prefixes)
        if name in reference:
            if value.size != reference[name].numel():
                raise BundleWeightsError(f"{onnx_path}: {name} has shape {list(value.shape)} but the network built from "
                                         f"the config has {list(reference[name].shape)}; is it the same architecture?")
            out[name] = torch.from_numpy(value.copy()).reshape(reference[name].shape)
            continue
        for node in _through_casts(init.name, consumers):  # identical constants are shared: every reader
            key = {"MatMul": "weight", "Mul": "weight", "Add": "bias"}.get(node.op_type)
            target = next((f"{p}.{key}" for p in _module_paths(node.name) if f"{p}.{key}" in reference), None)
            if key and target and value.size == reference[target].numel():
                v = value.T if node.op_type == "MatMul" else value
                out[target] = torch.from_numpy(np.ascontiguousarray(v)).reshape(reference[target].shape)
    return out


def load_weights(module: torch.nn.Module, onnx_paths: list[Path]) -> None:
    """Load `module`'s parameters from the graphs `onnx_paths` (together they must hold them all)."""
    reference = module.state_dict()
    found: dict[str, torch.Tensor] = {}
    for path in onnx_paths:
        found.update(onnx_state_dict(path, reference))
    missing = [k for k, v in reference.items() if k not in found and v.is_floating_point()]
    if missing:
        raise BundleWeightsError(f"{', '.join(map(str, onnx_paths))}: no weights for {len(missing)} parameters of "
                                 f"the network built from the config, e.g. {missing[0]}; is it the same architecture?")
    module.load_state_dict({**reference, **found})


def max_abs_difference(onnx_path: str | Path, torch_fn, feeds: dict[str, np.ndarray]) -> float:
    """max |ONNX Runtime(feeds) - torch_fn(feeds)| on the CPU provider."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = session.run(None, feeds)[0]
    with torch.no_grad():
        mine = torch_fn(**{k: torch.from_numpy(v) for k, v in feeds.items()}).float().numpy()
    return float(np.abs(ref - mine).max())


def read_manifest(bundle: str | Path) -> dict:
    path = Path(bundle) / "studio.json"
    if not path.is_file():
        raise BundleWeightsError(f"{bundle}: not a bundle (no studio.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def is_bundle(path: str | Path) -> bool:
    return (Path(path) / "studio.json").is_file()


def unet_from_bundle(unet: torch.nn.Module, bundle: str | Path, *, tolerance: float = 1e-3) -> None:
    """Load a bundle's U-Net weights into `unet` (built from the same config) and check the result
    against the bundle's graph on one random input."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    onnx_path = bundle / manifest["files"]["unet"]
    load_weights(unet, [onnx_path])
    unet.eval()
    rng = np.random.default_rng(0)
    cfg = unet.config
    size = int(cfg.sample_size)
    feeds = {"sample": rng.standard_normal((1, int(cfg.in_channels), size, size)).astype(np.float32),
             "timestep": np.array([500], np.int64)}
    kw_names = []
    if "cross_attention_dim" in cfg:
        feeds["encoder_hidden_states"] = rng.standard_normal((1, 4, int(cfg.cross_attention_dim))).astype(np.float32)
        kw_names.append("encoder_hidden_states")
    if cfg.num_class_embeds:
        feeds["class_labels"] = np.array([0], np.int64)

    def run(sample, timestep, **kw):
        from .models import unet_forward

        return unet_forward(unet, sample, timestep, encoder_hidden_states=kw.get("encoder_hidden_states"),
                            class_labels=kw.get("class_labels"))

    diff = max_abs_difference(onnx_path, run, feeds)
    if not diff <= tolerance:
        raise BundleWeightsError(f"{onnx_path}: the U-Net rebuilt from its weights differs from the graph "
                                 f"by {diff:.3g} (> {tolerance}); the config does not match the bundle")


def vae_config_from_graph(onnx_path: str | Path, latent_channels: int, norm_num_groups: int = 32) -> dict:
    """The VAE config (`{"model": {...}}` as `engine.models.build_vae` takes it) read off the
    encoder graph's parameter names and shapes: one level per `down_blocks.i`, its width from the
    first resnet's conv1, the resnets per level. Group counts are not in the weights:
    `norm_num_groups` is a guess that the parity check confirms."""
    import onnx

    shapes = {}
    for init in onnx.load(str(onnx_path), load_external_data=False).graph.initializer:
        name = _strip(init.name, ("vae.",))
        parts = name.split(".")
        if name.startswith("encoder.down_blocks.") and parts[3] == "resnets" and name.endswith("conv1.weight"):
            shapes[(int(parts[2]), int(parts[4]))] = int(init.dims[0])
    if not shapes:
        raise BundleWeightsError(f"{onnx_path}: no encoder.down_blocks.*.resnets.*.conv1 weights; not one of our VAE encoders")
    levels = max(i for i, _ in shapes) + 1
    return {"model": {"block_out_channels": [shapes[(i, 0)] for i in range(levels)],
                      "layers_per_block": max(j for _, j in shapes) + 1,
                      "latent_channels": int(latent_channels), "norm_num_groups": int(norm_num_groups)}}


def vae_from_bundle(bundle: str | Path, vae_cfg: dict | None = None, *, tolerance: float = 1e-3):
    """(AutoencoderKL, scale_factor) rebuilt from a latent bundle's vae_encoder and vae_decoder
    graphs, with the architecture of `vae_cfg` (default: read off the encoder graph,
    `vae_config_from_graph`, trying group counts 32, 16, ... that divide every width), checked
    against both graphs: the first configuration within `tolerance` is the one."""
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    latent = manifest.get("latent")
    if not latent or "vae_decoder" not in manifest["files"]:
        raise BundleWeightsError(f"{bundle}: not a latent bundle (no latent / vae_decoder)")
    dec, enc = bundle / manifest["files"]["vae_decoder"], bundle / manifest["files"].get("vae_encoder", "")
    if not enc.is_file():
        raise BundleWeightsError(f"{bundle}: no vae_encoder graph; fine-tuning needs the encoder too")
    if vae_cfg is not None:
        candidates = [vae_cfg]
    else:
        base = vae_config_from_graph(enc, int(latent["channels"]))
        widths = base["model"]["block_out_channels"]
        candidates = [{"model": {**base["model"], "norm_num_groups": g}} for g in (32, 16, 8, 4, 2, 1)
                      if all(w % g == 0 for w in widths)]
    diff = float("inf")
    for cfg in candidates:
        vae, diff = _vae_and_parity(manifest, cfg, dec, enc)
        if diff <= tolerance:
            return vae, float(latent["scale_factor"])
    raise BundleWeightsError(f"{bundle}: the VAE rebuilt from its graphs differs from them by {diff:.3g} "
                             f"(> {tolerance}); the VAE config does not match the bundle")


def _vae_and_parity(manifest: dict, cfg: dict, dec: Path, enc: Path):
    """(VAE built from cfg with the graphs' weights, max |difference| from both graphs)."""
    from .models import build_vae

    latent, image = manifest["latent"], manifest["image"]
    vae = build_vae(cfg, channels=int(image["channels"]), sample_size=int(image["height"]))
    load_weights(vae, [dec, enc])
    vae.eval().requires_grad_(False)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, int(latent["channels"]), int(latent["height"]), int(latent["width"])))
    feeds = {"latent_sample": (z / float(latent["scale_factor"])).astype(np.float32)}
    diff = max_abs_difference(dec, lambda latent_sample: vae.decode(latent_sample).sample.clamp(-1, 1), feeds)
    x = rng.uniform(-1, 1, (1, int(image["channels"]), int(image["height"]), int(image["width"])))
    diff = max(diff, max_abs_difference(enc, lambda sample: vae.encode(sample).latent_dist.mean,
                                        {"sample": x.astype(np.float32)}))
    return vae, diff
