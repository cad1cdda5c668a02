"""Prompts -> token ids (Hugging Face `tokenizers`) -> text-encoder states [B, S, D] (ONNX).

The tokenizer pads and truncates every prompt to the manifest's `max_length` with its `pad_id`.
`attention_mask` is fed only when the ONNX text encoder declares that input. Stable-Diffusion-1.x
folders ship CLIP's `vocab.json` + `merges.txt` instead of a `tokenizer.json`; `clip_tokenizer`
builds the same byte-level BPE that transformers' CLIPTokenizerFast builds from them.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """A `tokenizer.json` file, or a folder with tokenizer.json or CLIP vocab.json + merges.txt."""
    path = Path(path)
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(path / "tokenizer.json"))
        return clip_tokenizer(path / "vocab.json", path / "merges.txt")
    return Tokenizer.from_file(str(path))


def clip_tokenizer(vocab_path: str | os.PathLike, merges_path: str | os.PathLike) -> Tokenizer:
    """CLIP's BPE as transformers' CLIPConverter builds it (lower-cased, `</w>` word ends, BOS/EOS)."""
    vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
    merges = []
    for line in Path(merges_path).read_text(encoding="utf-8").splitlines():
        if line.startswith("#version") or not line.strip():
            continue
        a, b = line.split()
        merges.append((a, b))
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                        fuse_unk=False, unk_token=CLIP_EOS))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                             behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(
        (CLIP_EOS, vocab[CLIP_EOS]), (CLIP_BOS, vocab[CLIP_BOS]), trim_offsets=False, add_prefix_space=False)
    return tok


def configure(tokenizer: Tokenizer, max_length: int, pad_id: int) -> Tokenizer:
    """Pad and truncate to exactly `max_length` tokens with `pad_id`."""
    pad_token = tokenizer.id_to_token(pad_id) or "[PAD]"
    tokenizer.enable_padding(length=max_length, pad_id=pad_id, pad_token=pad_token)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def tokenize(tokenizer: Tokenizer, prompts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [B,S] int64, attention_mask [B,S] int64) of a configured tokenizer."""
    encodings = tokenizer.encode_batch(list(prompts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


class TextEncoder:
    """Tokenizer + ONNX text encoder. `model` is a bundle.OnnxModel (has `.inputs` and `.run`).

    The states of the last `CACHE_SIZE` prompts are kept (least recently used dropped first)."""

    CACHE_SIZE = 64

    def __init__(self, model, tokenizer: Tokenizer, max_length: int, pad_id: int):
        self.model = model
        self.tokenizer = configure(tokenizer, max_length, pad_id)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def encode(self, prompts: list[str]) -> np.ndarray:
        """last_hidden_state [B, S, D] float32 for a list of prompts (each prompt encoded once)."""
        found = {p: self._cache[p] for p in dict.fromkeys(prompts) if p in self._cache}
        todo = [p for p in dict.fromkeys(prompts) if p not in found]
        if todo:
            ids, mask = tokenize(self.tokenizer, todo)
            feeds = {"input_ids": ids}
            if "attention_mask" in self.model.inputs:
                feeds["attention_mask"] = mask
            states = self.model.run(feeds, output="last_hidden_state")
            found.update(zip(todo, states))
        for p in dict.fromkeys(prompts):  # most recently used last
            self._cache[p] = found[p]
            self._cache.move_to_end(p)
        while len(self._cache) > self.CACHE_SIZE:
            self._cache.popitem(last=False)
        return np.stack([found[p] for p in prompts]).astype(np.float32)
