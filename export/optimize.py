"""Graph optimisation for the execution provider a bundle is for (`export --optimize cpu|cuda`).

ONNX Runtime's transformer optimizer (`onnxruntime.transformers.optimizer`, model types "unet",
"vae", "clip") fuses a diffusers graph into fewer, larger operators. Some of them exist only in
the CUDA provider (GroupNorm, SkipGroupNorm, BiasSplitGelu, NhwcConv, BiasAdd: `CUDA_ONLY`), so
the fusions are chosen per target:
- `cpu`: attention (com.microsoft Attention for self-attention, MultiHeadAttention for
  cross-attention), LayerNorm / SkipLayerNorm, Gelu / BiasGelu: every one has a CPU kernel and a
  CUDA kernel, so the bundle records providers ["cpu", "cuda"]. GroupNorm stays the exported
  InstanceNorm pattern: ONNX Runtime 1.31 has no fused GroupNorm on the CPU, and the ONNX
  GroupNormalization-21 op it does run is 2x slower than that pattern (measured, 2x128x16x16).
- `cuda`: everything, channels-last convolutions included; providers ["cuda"]. With fp16 compute
  the order is export fp32 -> optimize -> fp16 (the fusions match fp32 patterns).
`optimize_graph` returns the fused graph; the caller checks it (parity against PyTorch, on the
target's provider) before it is written, so a bundle never carries a graph its provider cannot run.

onnxruntime 1.31's U-Net attention fusion reads the head count with `int()` of a 1-element array,
which NumPy 2.4 refuses; `optimizer_patches` reads it the way NumPy allows while the optimizer runs.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import onnx

TARGETS = ("cpu", "cuda")
CUDA_ONLY = ("GroupNorm", "SkipGroupNorm", "BiasSplitGelu", "NhwcConv", "BiasAdd")
MODEL_TYPES = {"unet": "unet", "vae_decoder": "vae", "vae_encoder": "vae", "text_encoder": "clip"}
# fusion switches of onnxruntime.transformers.fusion_options.FusionOptions, by what they fuse
FUSIONS = {
    "attention": ("enable_attention",),
    "layernorm": ("enable_layer_norm", "enable_skip_layer_norm", "enable_bias_skip_layer_norm"),
    "gelu": ("enable_gelu", "enable_bias_gelu"),
    "groupnorm": ("enable_group_norm", "enable_skip_group_norm"),
    "nhwc": ("enable_nhwc_conv",),
    "splitgelu": ("enable_bias_splitgelu",),
    "packed": ("enable_packed_qkv", "enable_packed_kv"),
    "biasadd": ("enable_bias_add",),
}
TARGET_FUSIONS = {
    "cpu": ("attention", "layernorm", "gelu"),
    "cuda": tuple(FUSIONS),
}
PROVIDERS = {"cpu": ["cpu", "cuda"], "cuda": ["cuda"]}  # what a bundle optimised for the target runs on
# Widths (the bias length: twice the GEGLU inner size) that ONNX Runtime's CUDA BiasSplitGelu kernel
# runs; any other is an error at run time (measured with onnxruntime-gpu 1.31.1 on an H200: "hidden size
# should be 2560, 5120, 6144, 10240 or 12288, got 64"). SD 1.x/2.x and SDXL fuse; our small models do not.
BIAS_SPLIT_GELU_WIDTHS = (2560, 5120, 6144, 10240, 12288)
# the fusion that makes each operator, for a graph the provider refused to run (export/bundle_writer.py)
FUSION_OF_OPERATOR = {
    "Attention": "attention", "MultiHeadAttention": "attention", "LayerNormalization": "layernorm",
    "SkipLayerNormalization": "layernorm", "Gelu": "gelu", "BiasGelu": "gelu", "FastGelu": "gelu",
    "GroupNorm": "groupnorm", "SkipGroupNorm": "groupnorm", "NhwcConv": "nhwc", "BiasSplitGelu": "splitgelu",
    "PackedAttention": "packed", "PackedMultiHeadAttention": "packed", "BiasAdd": "biasadd",
}


def providers_for(target: str) -> list[str]:
    return list(PROVIDERS[target])


def fusion_options(model_type: str, fusions) -> "FusionOptions":  # noqa: F821 (onnxruntime.transformers)
    """FusionOptions with exactly `fusions` (names of FUSIONS) switched on."""
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions(model_type)
    for name, switches in FUSIONS.items():
        for switch in switches:
            if hasattr(options, switch):
                setattr(options, switch, name in fusions)
    return options


def _heads_from(reshape_parent_value) -> int:
    v = np.asarray(reshape_parent_value)
    return int(v.reshape(-1)[0]) if v.size == 1 and int(v.reshape(-1)[0]) > 0 else 0


@contextlib.contextmanager
def optimizer_patches():
    """While the optimizer runs: FusionAttentionUnet.get_num_heads reads torch-2 graphs' head count
    the way NumPy >= 2.4 allows, and the U-Net optimizer draws no progress bar on stderr."""
    import onnxruntime.transformers.optimizer  # noqa: F401 (puts the optimizer's modules on sys.path)

    unet_module = sys.modules.get("onnx_model_unet")
    installed = getattr(unet_module, "is_installed", None)
    if installed is not None:
        unet_module.is_installed = lambda name: name != "tqdm" and installed(name)
    patched = []
    for name in ("fusion_attention_unet", "onnxruntime.transformers.fusion_attention_unet"):
        module = sys.modules.get(name)
        cls = getattr(module, "FusionAttentionUnet", None) if module else None
        if cls is None or any(c is cls for c, _ in patched):
            continue
        original = cls.get_num_heads

        def get_num_heads(self, reshape_q, is_torch2=False, _original=original):
            if not is_torch2:
                return _original(self, reshape_q, is_torch2)
            parent = self.model.get_parent(reshape_q, 1)
            if parent is not None and parent.op_type == "Concat" and len(parent.input) == 4:
                value = self.model.get_constant_value(parent.input[2])
                return _heads_from(value) if value is not None else 0
            return 0

        cls.get_num_heads = get_num_heads
        patched.append((cls, original))
    try:
        yield
    finally:
        for cls, original in patched:
            cls.get_num_heads = original
        if installed is not None:
            unet_module.is_installed = installed


def optimize_graph(path: Path, role: str, target: str, *, fusions=None, fp16: bool = False) -> onnx.ModelProto:
    """The graph at `path` (fp32, with its external data) fused for `target` ("cpu" or "cuda").

    `fusions`: names of FUSIONS (default: all of the target's). `fp16` (CUDA): then converts the
    fused graph to fp16 compute with float32 inputs and outputs."""
    from onnxruntime.transformers.optimizer import optimize_model

    if target not in TARGETS:
        raise ValueError(f"optimisation target must be one of {', '.join(TARGETS)}, got {target!r}")
    wanted = TARGET_FUSIONS[target] if fusions is None else tuple(fusions)
    illegal = sorted(set(wanted) - set(TARGET_FUSIONS[target]))
    if illegal:
        raise ValueError(f"fusions {illegal} make operators the {target} provider cannot run")
    model_type = MODEL_TYPES[role]

    def fuse(names):
        with optimizer_patches():
            return optimize_model(str(path), model_type=model_type, opt_level=0, use_gpu=target == "cuda",
                                  optimization_options=fusion_options(model_type, names))

    optimized = fuse(wanted)
    if "splitgelu" in wanted and unsupported_split_gelu(optimized.model):
        optimized = fuse(tuple(f for f in wanted if f != "splitgelu"))
    if fp16:
        optimized.convert_float_to_float16(keep_io_types=True)
    return optimized.model


def unsupported_split_gelu(model: onnx.ModelProto) -> list[int]:
    """Widths of the graph's BiasSplitGelu nodes that the CUDA kernel does not run (BIAS_SPLIT_GELU_WIDTHS)."""
    widths = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer}
    return sorted({widths.get(n.input[1], 0) for n in model.graph.node if n.op_type == "BiasSplitGelu"}
                  - set(BIAS_SPLIT_GELU_WIDTHS))


def operators(model: onnx.ModelProto) -> set[str]:
    return {n.op_type for n in model.graph.node}


def check_target(model: onnx.ModelProto, target: str, what: str) -> None:
    """Refuses a CPU-target graph holding an operator only CUDA runs (the export's parity check on
    the CPU provider would fail too; this says which operator)."""
    if target == "cpu":
        bad = sorted(operators(model) & set(CUDA_ONLY))
        if bad:
            raise ValueError(f"{what}: the graph optimised for the CPU holds {', '.join(bad)}, which only CUDA runs")
