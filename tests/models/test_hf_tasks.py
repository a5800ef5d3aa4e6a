"""Classifier export/import against transformers' AutoModelFor{Sequence,Token}Classification."""

import pytest
import torch

from lmforge.models.config import ModelConfig
from lmforge.models.heads import build_classifier
from lmforge.models.hf_tasks import classifier_from_hf, classifier_to_hf
from lmforge.models.layers import init_weights
from lmforge.models.lora import apply_lora, merge_lora
from lmforge.models.transformer import TransformerBody

BERT = ModelConfig(arch="encoder", vocab_size=97, n_layer=2, n_head=2, d_model=32, max_seq_len=40, mlp="gelu",
                   norm_position="post", norm_eps=1e-12, type_vocab_size=2, embedding_norm=True, final_norm=False)
GPT2 = ModelConfig(arch="decoder", vocab_size=97, n_layer=2, n_head=2, d_model=32, max_seq_len=40)
LABELS = {"sequence": ["neg", "neu", "pos"], "token": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]}


def _model(cfg, task):
    torch.manual_seed(0)
    body = TransformerBody(cfg, causal=cfg.arch == "decoder")
    init_weights(body)
    model = build_classifier(cfg, body, task, len(LABELS[task]), dropout=0.0)
    with torch.no_grad():  # a non-trivial head (fresh heads are near zero)
        model.classifier.weight.normal_(0, 0.5)
    return model.eval()


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(5, 97, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # right padding
    mask[2, 5:] = 0
    ids[mask == 0] = 0  # pad id 0
    return ids, mask


@pytest.mark.parametrize("cfg", [BERT, GPT2], ids=["bert", "gpt2"])
@pytest.mark.parametrize("task", ["sequence", "token"])
def test_export_matches_transformers(tmp_path, cfg, task):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification

    model = _model(cfg, task)
    classifier_to_hf(model, tmp_path / "m", LABELS[task], pad_id=0)
    auto = AutoModelForSequenceClassification if task == "sequence" else AutoModelForTokenClassification
    hf = auto.from_pretrained(str(tmp_path / "m")).eval()
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).id2label == dict(enumerate(LABELS[task]))
    ids, mask = _batch()
    ours, _ = model(ids, mask)
    theirs = hf(input_ids=ids, attention_mask=mask).logits
    if task == "token":  # padded positions are meaningless on both sides
        keep = mask.bool()
        ours, theirs = ours[keep], theirs[keep]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    back, labels, meta = classifier_from_hf(tmp_path / "m")
    assert labels == LABELS[task] and back.task == task
    again, _ = back.eval()(ids, mask)
    if task == "token":
        again = again[mask.bool()]
    torch.testing.assert_close(again, ours, atol=1e-5, rtol=1e-5)


def test_decoder_pools_last_real_token():
    model = _model(GPT2, "sequence")
    ids, mask = _batch()
    logits, _ = model(ids, mask)
    alone, _ = model(ids[2:3, :5], mask[2:3, :5])  # row 2 without its padding
    torch.testing.assert_close(logits[2:3], alone, atol=1e-5, rtol=1e-5)


def test_lora_starts_as_identity_and_merges_exactly():
    model = _model(BERT, "sequence")
    ids, mask = _batch()
    before, _ = model(ids, mask)
    n = apply_lora(model.body, ["qkv_proj", "o_proj"], r=4, alpha=8, dropout=0.0)
    assert n == 2 * BERT.n_layer
    torch.testing.assert_close(model(ids, mask)[0], before)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_b" in name:
                p.normal_(0, 0.1)
    qkv = model.body.blocks[0].attn.qkv_proj
    assert not qkv.base.weight.requires_grad and qkv.lora_a.requires_grad and qkv.lora_b.requires_grad
    adapted, _ = model(ids, mask)
    assert not torch.allclose(adapted, before)
    merge_lora(model)
    torch.testing.assert_close(model(ids, mask)[0], adapted, atol=1e-5, rtol=1e-5)


def test_lora_bad_target_names_the_choices():
    model = _model(BERT, "sequence")
    with pytest.raises(ValueError, match="qkv_proj"):
        apply_lora(model.body, ["query"], r=2, alpha=4, dropout=0.0)


def test_gpt2_lm_folder_as_a_starting_point(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmforge.models.hf_tasks import load_hf_start

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_positions=40, n_embd=32, n_layer=2, n_head=2)).eval()
    hf.save_pretrained(str(tmp_path / "g"))
    body, pooler, kind = load_hf_start(tmp_path / "g")
    assert kind == "gpt2" and pooler is None and body.causal
    ids, mask = _batch()
    with torch.no_grad():
        theirs = hf.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
        ours = body.eval()(ids, mask)
    keep = mask.bool()
    torch.testing.assert_close(ours[keep], theirs[keep], atol=1e-4, rtol=1e-4)
