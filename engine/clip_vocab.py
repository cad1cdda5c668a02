"""CLIP's BPE tokenizer files from the vocabulary CLIP was released with (no download, no torch).

Single-file checkpoints carry no tokenizer. Stable Diffusion 1.x (OpenAI CLIP) and 2.x (OpenCLIP)
use the same byte-level BPE: CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (the open-clip-torch package
ships it) with its first 48,894 merges, so 49,408 tokens: the 256 byte symbols, the same with
``</w>``, one per merge, then ``<|startoftext|>`` and ``<|endoftext|>``. ``write_clip_vocabulary``
writes them as transformers' CLIPTokenizer reads them (vocab.json + merges.txt).
"""
from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

CLIP_MERGES = 49152 - 256 - 2  # CLIP's vocabulary size 49,408 = 2 x 256 byte symbols + merges + 2 specials
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_vocabulary(bpe_gz: Path, out_dir: Path, *, merges: int = CLIP_MERGES) -> None:
    """vocab.json + merges.txt in out_dir from CLIP's BPE file, keeping its first ``merges`` merges."""
    lines = gzip.open(bpe_gz, "rt", encoding="utf-8").read().split("\n")
    pairs = [tuple(line.split()) for line in lines[1:1 + merges]]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(p) for p in pairs]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False),
                                        encoding="utf-8")
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n",
                                        encoding="utf-8")


def installed_bpe_file() -> Path | None:
    """CLIP's BPE file inside an installed open-clip-torch (found without importing it), or None."""
    spec = importlib.util.find_spec("open_clip")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / BPE_FILE).is_file():
            return Path(folder) / BPE_FILE
    return None
