"""The networks of a model as ONNX graphs, with the exact I/O names of the bundle contract.

Each graph is a small `nn.Module` wrapper whose positional inputs carry the contract's names
(docs/ARCHITECTURE.md, "The bundle manifest"):

- unet: `sample [B,Cin,h,w] f32`, `timestep [B] i64`, then `encoder_hidden_states [B,S,D] f32`
  and/or `class_labels [B] i64` when the model takes them -> `out_sample [B,C,h,w]`.
- vae_decoder: `latent_sample [B,C,h,w]` (unscaled) -> `sample [B,3,H,W]`, clamped to [-1, 1].
- vae_encoder: `sample [B,3,H,W]` -> `latent_mean [B,C,h,w]` (unscaled, the posterior mean).
- text_encoder: `input_ids [B,S] i64` (+ `attention_mask [B,S] i64`) -> `last_hidden_state`.

Batch is dynamic in every graph; height and width are dynamic too (the U-Net only accepts sizes
divisible by 2**(levels-1), as in PyTorch). A `UNet2DConditionModel` without a text encoder (a
class-only or unconditional latent model built with cross-attention blocks) gets a constant
all-zero context of one token inside the graph, so the runtime is never asked for a tensor it
cannot make.

Export uses the TorchScript exporter (`dynamo=False`, opset 17): with torch 2.13 it handles the
diffusers blocks (checked by the parity tests) and is much faster than the dynamo exporter.
"""
from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

OPSET = 17

InputMaker = Callable[[int, np.random.Generator], dict]


@dataclass
class Graph:
    """One exportable network: a wrapper module and a maker of random inputs for parity checks."""

    role: str
    module: nn.Module
    input_names: list[str]
    output_names: list[str]
    dynamic_axes: dict[str, dict[int, str]]
    make_inputs: InputMaker  # (batch, rng) -> {input name: numpy array}

    def torch_forward(self, feeds: dict) -> np.ndarray:
        """Runs the wrapper on numpy inputs (in `input_names` order) and returns a numpy output."""
        args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names)
        with torch.no_grad():
            return self.module(*args).detach().float().cpu().numpy()


def size_hw(size) -> tuple[int, int]:
    """(height, width) from one side or a (height, width) pair."""
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)


class UNetGraph(nn.Module):
    """out_sample = unet(sample, timestep[, encoder_hidden_states][, class_labels])."""

    def __init__(self, unet: nn.Module, input_names: list[str], null_context: torch.Tensor | None):
        super().__init__()
        self.unet = unet
        self.input_names = list(input_names)
        if null_context is not None:
            self.register_buffer("null_context", null_context, persistent=False)
        else:
            self.null_context = None

    def forward(self, *inputs):
        named = dict(zip(self.input_names, inputs))
        sample, timestep = named["sample"], named["timestep"]
        kwargs = {}
        if "class_labels" in named:
            kwargs["class_labels"] = named["class_labels"]
        if "encoder_hidden_states" in named:
            kwargs["encoder_hidden_states"] = named["encoder_hidden_states"]
        elif self.null_context is not None:
            kwargs["encoder_hidden_states"] = self.null_context.expand(sample.shape[0], -1, -1)
        return self.unet(sample, timestep, return_dict=False, **kwargs)[0]


class VaeDecoderGraph(nn.Module):
    """sample = clamp(D(latent_sample), -1, 1); the latent is unscaled (z / scale_factor)."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, latent_sample):
        return self.vae.decode(latent_sample, return_dict=False)[0].clamp(-1.0, 1.0)


class VaeEncoderGraph(nn.Module):
    """latent_mean = E(sample).mean, the unscaled posterior mean."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, sample):
        return encode_mean(self.vae, sample)


def encode_mean(vae: nn.Module, sample: torch.Tensor) -> torch.Tensor:
    """E(x).mean for an AutoencoderKL; the pre-quantisation latents for a VQModel."""
    out = vae.encode(sample, return_dict=False)[0]
    return out if torch.is_tensor(out) else out.mean


class TextEncoderGraph(nn.Module):
    """last_hidden_state = text_encoder(input_ids[, attention_mask])."""

    def __init__(self, text_encoder, uses_attention_mask: bool):
        super().__init__()
        self.text_encoder = text_encoder
        self.uses_attention_mask = uses_attention_mask

    def forward(self, input_ids, attention_mask=None):
        if self.uses_attention_mask:
            return self.text_encoder.forward(input_ids, attention_mask)
        return self.text_encoder.forward(input_ids)


# ----------------------------------------------------------------------------- graph builders


def unet_takes_context(unet: nn.Module) -> bool:
    """True for networks whose forward takes encoder_hidden_states (cross-attention U-Nets)."""
    return "encoder_hidden_states" in inspect.signature(unet.forward).parameters


def unet_takes_class(unet: nn.Module) -> bool:
    return getattr(unet, "class_embedding", None) is not None


def unet_graph(unet: nn.Module, *, sample_size, num_train_timesteps: int, text_encoder=None,
               num_classes: int | None = None) -> Graph:
    """The U-Net graph; `sample_size` is the (h, w) the network sees (latent size for LDMs)."""
    h, w = size_hw(sample_size)
    cin = int(unet.config.in_channels)
    names = ["sample", "timestep"]
    null_context = None
    context_dim = getattr(unet.config, "cross_attention_dim", None)
    takes_context = unet_takes_context(unet)
    seq_len = None
    if takes_context:
        if isinstance(context_dim, (list, tuple)):
            context_dim = context_dim[0]
        if text_encoder is not None:
            if int(text_encoder.dim) != int(context_dim):
                raise ValueError(
                    f"the text encoder's hidden size ({text_encoder.dim}) differs from the U-Net's "
                    f"cross_attention_dim ({context_dim}); the model cannot be exported"
                )
            names.append("encoder_hidden_states")
            seq_len = int(text_encoder.max_length)
        else:
            null_context = torch.zeros(1, 1, int(context_dim))
    takes_class = unet_takes_class(unet)
    n_class_embeds = None
    if takes_class:
        names.append("class_labels")
        n_class_embeds = int(getattr(unet.config, "num_class_embeds", None) or (num_classes or 1))

    def make_inputs(batch: int, rng: np.random.Generator) -> dict:
        feeds = {
            "sample": rng.standard_normal((batch, cin, h, w), dtype=np.float32),
            "timestep": rng.integers(0, num_train_timesteps, size=batch, dtype=np.int64),
        }
        if "encoder_hidden_states" in names:
            feeds["encoder_hidden_states"] = rng.standard_normal((batch, seq_len, int(context_dim)), dtype=np.float32)
        if "class_labels" in names:
            feeds["class_labels"] = rng.integers(0, n_class_embeds, size=batch, dtype=np.int64)
        return feeds

    axes = {"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
            "out_sample": {0: "batch", 2: "height", 3: "width"}}
    if "encoder_hidden_states" in names:
        axes["encoder_hidden_states"] = {0: "batch", 1: "sequence"}
    if "class_labels" in names:
        axes["class_labels"] = {0: "batch"}
    return Graph("unet", UNetGraph(unet, names, null_context), names, ["out_sample"], axes, make_inputs)


def vae_factor(vae: nn.Module) -> int:
    """Downsampling factor of a diffusers AutoencoderKL: 2**(levels - 1)."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def vae_decoder_graph(vae: nn.Module, image_size, scale_factor: float) -> Graph:
    H, W = size_hw(image_size)
    f = vae_factor(vae)
    c = int(vae.config.latent_channels)

    def make_inputs(batch, rng):  # unscaled latents: a scaled latent ~ N(0, 1), divided by the factor
        z = rng.standard_normal((batch, c, H // f, W // f), dtype=np.float32)
        return {"latent_sample": (z / np.float32(scale_factor)).astype(np.float32)}

    axes = {"latent_sample": {0: "batch", 2: "latent_height", 3: "latent_width"},
            "sample": {0: "batch", 2: "height", 3: "width"}}
    return Graph("vae_decoder", VaeDecoderGraph(vae), ["latent_sample"], ["sample"], axes, make_inputs)


def vae_encoder_graph(vae: nn.Module, image_size) -> Graph:
    H, W = size_hw(image_size)
    cin = int(vae.config.in_channels)

    def make_inputs(batch, rng):
        return {"sample": rng.uniform(-1, 1, size=(batch, cin, H, W)).astype(np.float32)}

    axes = {"sample": {0: "batch", 2: "height", 3: "width"},
            "latent_mean": {0: "batch", 2: "latent_height", 3: "latent_width"}}
    return Graph("vae_encoder", VaeEncoderGraph(vae), ["sample"], ["latent_mean"], axes, make_inputs)


def text_vocab_size(text_encoder) -> int:
    """The vocabulary size: a `vocab_size` attribute, else the encoder's tokenizer's."""
    size = getattr(text_encoder, "vocab_size", None)
    if not size:
        size = text_encoder.tokenizer.get_vocab_size(with_added_tokens=True)
    model_vocab = getattr(getattr(getattr(text_encoder, "model", None), "config", None), "vocab_size", None)
    return int(min(size, model_vocab) if model_vocab else size)


def text_encoder_graph(text_encoder) -> Graph:
    uses_mask = bool(getattr(text_encoder, "uses_attention_mask", False))
    seq_len = int(text_encoder.max_length)
    vocab = text_vocab_size(text_encoder)
    names = ["input_ids"] + (["attention_mask"] if uses_mask else [])

    def make_inputs(batch, rng):
        feeds = {"input_ids": rng.integers(0, vocab, size=(batch, seq_len), dtype=np.int64)}
        if uses_mask:
            lengths = rng.integers(1, seq_len + 1, size=batch)
            feeds["attention_mask"] = (np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int64)
        return feeds

    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "sequence"}
    return Graph("text_encoder", TextEncoderGraph(text_encoder, uses_mask), names, ["last_hidden_state"],
                 axes, make_inputs)


# ----------------------------------------------------------------------------- export


def export_graph(graph: Graph, path: Path, *, seed: int = 0) -> Path:
    """torch.onnx.export (TorchScript exporter, opset 17) of one graph to `path`.

    Large models (> 2 GB protobuf) are written by the exporter with external data beside them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    feeds = graph.make_inputs(2, np.random.default_rng(seed))
    args = tuple(torch.from_numpy(feeds[n]) for n in graph.input_names)
    graph.module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
        torch.onnx.export(
            graph.module, args, str(path), dynamo=False, opset_version=OPSET,
            input_names=graph.input_names, output_names=graph.output_names,
            dynamic_axes=graph.dynamic_axes, do_constant_folding=True,
        )
    return path
