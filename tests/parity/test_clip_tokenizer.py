"""Our CLIP tokenizer (desktop.runtime.text.clip_tokenizer, built on `tokenizers`) gives the ids that
transformers' pure-Python CLIPTokenizer gives, on CLIP's full vocabulary from the open-clip-torch wheel."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from desktop.runtime.text import CLIP_EOS, clip_tokenizer, configure, tokenize
from tests.helpers.peers import REPO, peers_python, run_in_peers

pytestmark = pytest.mark.slow

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "A  Cat's   toy, (masterpiece:1.2), 8k, ultra-detailed!!!",
    "sunset over the mountains; 35mm f/1.8 -- trending on artstation",
    "it's a dog's life, isn't it? I'm sure we'll see; they'd say so",
    "naïve café crème brûlée",
    "1234567890 3.14159 #hashtag @user e=mc^2",
    "🙂 emoji and ünïcödé",
    " ".join(["word"] * 120),  # longer than 77 tokens: truncated, EOS kept last
]


def test_clip_tokenizer_matches_transformers_on_the_full_vocabulary(tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "fixtures" / "sd"))
    import tiny_sd
    python = peers_python()
    bpe = next(python.parent.parent.glob("lib/python*/site-packages/open_clip/bpe_simple_vocab_16e6.txt.gz"))
    tiny_sd.clip_bpe_files(bpe, tmp_path, merges=49152 - 256 - 2)  # every merge: CLIP's 49,408 tokens
    assert len(json.loads((tmp_path / "vocab.json").read_text())) == 49408
    (tmp_path / "prompts.json").write_text(json.dumps(PROMPTS))
    run_in_peers(Path(__file__).with_name("peer_clip_tokenize.py"), tmp_path, tmp_path / "prompts.json",
                 tmp_path / "theirs.json")
    theirs = json.loads((tmp_path / "theirs.json").read_text())
    tok = clip_tokenizer(tmp_path / "vocab.json", tmp_path / "merges.txt")
    ids, _ = tokenize(configure(tok, 77, tok.token_to_id(CLIP_EOS)), PROMPTS)
    for prompt, ours, want in zip(PROMPTS, ids.tolist(), theirs):
        assert ours == want, prompt
