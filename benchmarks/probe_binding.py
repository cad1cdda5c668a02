"""Does the text encoder carry the binding of colours to shapes? Probes on caption token states.

For a caption such as "a red circle and a blue square", the U-Net can only draw each shape in its
own colour if the token states it attends to say which colour goes with which shape. Measured on
the shapes captions (engine.data.shapes), training pairs apart from held-out colour-shape pairs
(`HOLDOUT`, never in a training caption) and held-out wordings (`shapes_words`):

1. **Linear probe per layer** (frozen MiniLM): a logistic regression from the token state of an
   object's shape word (its last word piece) to that object's hue, fitted on scenes without
   held-out pairs and scored on objects whose pair is held out. Layer 0 (word + position
   embeddings, no context) is the control: a shape word alone cannot know its colour, so it sits
   near the majority rate; a contextual layer above it means the state carries the binding.
2. **Cross-attention readout** (what a U-Net's cross-attention does, in miniature): one learned
   query per shape attends over the token states and classifies the hue of that shape (or
   "absent"). Trained (a) on the frozen MiniLM states, (b) jointly with a from-scratch transformer
   text encoder (engine.text "scratch", 4 layers x 128) on the same captions and steps. A
   two-object caption is right when both shapes get their own hue; scored on held-out pairs in
   training wordings and in held-out wordings (words the scratch encoder never saw).

    .venv/bin/python benchmarks/probe_binding.py [--captions 6000] [--steps 1500]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.report import commit, machine  # noqa: E402
from benchmarks.evals.common import format_table  # noqa: E402


def scenes_with_captions(n: int, seed: int, holdout: bool):
    """(scene, caption) for n generated scenes (`holdout=False` lets held-out pairs appear)."""
    from engine.data import shapes
    from engine.data.generated import item_rng

    out = []
    for i in range(n):
        rng = item_rng(seed, i)
        scene = shapes.make_scene(rng, holdout=holdout)
        out.append((scene, shapes.make_caption(rng, scene)))
    return out


def heldout_wording_pairs(n: int, seed: int):
    """Two-object prompts in held-out wordings (the evaluation's "two" and relational prompts)."""
    from benchmarks.evals import shapes as ev

    prompts = ev.make_prompts(n, seed, categories=("two", "position"), splits=("heldout",))
    return [({"objects": [{"color": o["color"], "shape": o["shape"]} for o in p.objects]}, p.text)
            for p in prompts if len(p.objects) == 2]


def shape_token_index(encoding, caption: str, objects: list[dict]) -> list[int] | None:
    """Token index of each object's shape word (its last word piece), in caption order; None when
    a word cannot be found or was truncated away."""
    from engine.data import shapes_words as words

    out, start = [], 0
    for o in objects:
        spans = []
        for w in words.SHAPE_WORDS[o["shape"]]:
            for form in (words.plural(w), w):
                k = caption.find(form, start)
                if k >= 0:
                    spans.append((k, k + len(form)))
        if not spans:
            return None
        lo, hi = min(spans)
        pieces = [t for t, (a, b) in enumerate(encoding.offsets) if a >= lo and b <= hi and b > a]
        if not pieces:
            return None
        out.append(pieces[-1])
        start = hi
    return out


def encode_layers(texts: list[str], batch: int = 64):
    """MiniLM hidden states of every layer: [L+1, N, S, 384] float32, the attention masks, the
    tokenizer encodings."""
    import torch

    from engine.text import load_minilm

    enc = load_minilm()
    toks = enc.tokenize(texts)
    states = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            out = enc.model(input_ids=toks["input_ids"][i:i + batch], attention_mask=toks["attention_mask"][i:i + batch],
                            output_hidden_states=True)
            states.append(torch.stack(out.hidden_states).float().numpy())
    return np.concatenate(states, axis=1), toks, enc.tokenizer.encode_batch(texts)


def linear_probe_rows(train, test, layers: list[int]):
    """Per layer: held-out-pair accuracy of shape token -> hue (and the majority rate)."""
    from sklearn.linear_model import LogisticRegression

    from engine.data import shapes

    hues = list(shapes.COLORS)

    def features(items):
        states, _, encs = encode_layers([c for _, c in items])
        xs, ys = [[] for _ in range(states.shape[0])], []
        for k, ((scene, caption), e) in enumerate(zip(items, encs)):
            objs = scene["objects"]
            idx = shape_token_index(e, caption, objs)
            if idx is None:
                continue
            for o, t in zip(objs, idx):
                for layer in range(states.shape[0]):
                    xs[layer].append(states[layer, k, t])
                ys.append(hues.index(o["color"]))
        return [np.asarray(x) for x in xs], np.asarray(ys)

    x_tr, y_tr = features(train)
    x_te, y_te = features(test)
    majority = float(np.mean(y_te == np.bincount(y_tr).argmax()))
    rows = []
    for layer in layers:
        clf = LogisticRegression(max_iter=3000, C=1.0).fit(x_tr[layer], y_tr)
        rows.append([f"MiniLM layer {layer}" + (" (embeddings: control)" if layer == 0 else ""),
                     float(clf.score(x_te[layer], y_te)), majority, len(y_te)])
    return rows


def readout_targets(items) -> np.ndarray:
    """[N, 8]: per shape the index of its hue, or len(COLORS) when absent (a shape drawn in two
    colours keeps the first)."""
    from engine.data import shapes

    hues, absent = list(shapes.COLORS), len(shapes.COLORS)
    y = np.full((len(items), len(shapes.SHAPES)), absent, np.int64)
    for k, (scene, _) in enumerate(items):
        for o in reversed(scene["objects"]):
            y[k, shapes.SHAPES.index(o["shape"])] = hues.index(o["color"])
    return y


def readout_experiment(train, tests: dict, steps: int, seed: int = 0):
    """Cross-attention readout on frozen MiniLM vs a scratch encoder trained with it: rows of
    (encoder, test set, two-object binding accuracy, per-shape accuracy)."""
    import torch
    from torch import nn

    from engine.data import shapes
    from engine.text import ScratchTextEncoder, load_minilm

    torch.manual_seed(seed)
    n_shapes, n_out = len(shapes.SHAPES), len(shapes.COLORS) + 1

    class Readout(nn.Module):
        def __init__(self, dim: int, width: int = 64):
            super().__init__()
            self.q = nn.Parameter(torch.randn(n_shapes, width) * 0.1)
            self.k, self.v = nn.Linear(dim, width), nn.Linear(dim, width)
            self.out = nn.Linear(width, n_out)

        def forward(self, states, mask):
            att = torch.einsum("qd,bsd->bqs", self.q, self.k(states)) / self.q.shape[1] ** 0.5
            att = att.masked_fill(mask[:, None, :] == 0, -1e4).softmax(-1)
            return self.out(torch.einsum("bqs,bsd->bqd", att, self.v(states)))

    minilm = load_minilm()
    texts = [c for _, c in train]
    y_train = torch.from_numpy(readout_targets(train))
    toks = minilm.tokenize(texts)
    with torch.no_grad():
        frozen = torch.cat([minilm(toks["input_ids"][i:i + 256], toks["attention_mask"][i:i + 256])
                            for i in range(0, len(texts), 256)])
    scratch = ScratchTextEncoder()
    setups = {"MiniLM (frozen)": (Readout(minilm.dim), None), "scratch (trained jointly)": (Readout(scratch.dim), scratch)}
    rows = []
    for name, (readout, encoder) in setups.items():
        params = list(readout.parameters()) + (list(encoder.parameters()) if encoder is not None else [])
        opt = torch.optim.AdamW(params, lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        for step in range(steps):
            idx = torch.randint(0, len(texts), (64,), generator=g)
            mask = toks["attention_mask"][idx]
            states = frozen[idx] if encoder is None else encoder(toks["input_ids"][idx], mask)
            loss = nn.functional.cross_entropy(readout(states, mask).reshape(-1, n_out), y_train[idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        for test_name, items in tests.items():
            t = minilm.tokenize([c for _, c in items])
            with torch.no_grad():
                states = minilm(t["input_ids"], t["attention_mask"]) if encoder is None else \
                    encoder(t["input_ids"], t["attention_mask"])
                pred = readout(states, t["attention_mask"]).argmax(-1).numpy()
            y = readout_targets(items)
            present = y < len(shapes.COLORS)
            both = np.all((pred == y) | ~present, axis=1)
            rows.append([name, test_name, float(both.mean()), float((pred == y)[present].mean()), len(items)])
    return rows


def two_object(items, distinct: bool = True):
    """Scenes of two objects of different colours and different shapes."""
    out = []
    for scene, caption in items:
        objs = scene["objects"]
        if len(objs) == 2 and (not distinct or (objs[0]["color"] != objs[1]["color"] and objs[0]["shape"] != objs[1]["shape"])):
            out.append((scene, caption))
    return out


def main(argv=None) -> None:
    import torch

    from engine.data import shapes

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--captions", type=int, default=6000, help="training captions (default %(default)s)")
    parser.add_argument("--steps", type=int, default=1500, help="readout training steps (default %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    train = scenes_with_captions(args.captions, seed=0, holdout=True)
    pool = scenes_with_captions(4 * args.captions, seed=77, holdout=False)
    held_pairs = [(s, c) for s, c in pool if shapes.is_held_out(s)]
    probe_train = two_object(train, distinct=False)
    probe_test = two_object(held_pairs, distinct=False)
    print(f"# Binding probes on the shapes captions\nmachine: {machine()}\ncommit:  {commit()}\n")
    rows = linear_probe_rows(probe_train, probe_test, layers=[0, 1, 2, 3, 4, 5, 6])
    print("1. Linear probe: shape-word token state -> that object's hue (two-object captions; test objects in "
          "held-out colour-shape pairs)\n")
    print(format_table(["token states", "accuracy", "majority rate", "test objects"], rows))
    tests = {"held-out pairs, training wordings": two_object(held_pairs),
             "held-out pairs, held-out wordings": heldout_wording_pairs(60, seed=5)}
    rows = readout_experiment(train, tests, args.steps)
    print(f"\n2. Cross-attention readout (one query per shape -> its hue or absent), {args.steps} steps of 64 on "
          f"{len(train)} training captions\n")
    print(format_table(["text encoder", "test captions", "both objects right", "per-object", "captions"], rows))


if __name__ == "__main__":
    main()
