"""Tokenizer training for each model type; HF loadability; special tokens first."""

import pytest

from lmforge.tokenizer import io as tio
from lmforge.tokenizer import train as tt
from lmforge.tokenizer.config import TokenizerConfig

TEXTS = ["The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs!",
         "How vexingly quick daft zebras jump.", "Sphinx of black quartz, judge my vow."] * 30


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_train_save_and_load_with_transformers(tmp_path, kind):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    cfg = TokenizerConfig(type=kind, vocab_size=200, min_frequency=1)
    info = tt.train(cfg, iter(TEXTS), tmp_path)
    assert info["train_docs"] == len(TEXTS)
    tok = tio.load(tmp_path)
    ids = tio.special_ids(tok, tmp_path, cfg)
    assert [ids[k] for k in ("pad", "unk", "bos", "eos", "mask", "cls", "sep")] == list(range(7))
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert hf.eos_token == "</s>" and hf.pad_token_id == 0 and hf.mask_token_id == 4
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    enc = auto("quick brown fox", add_special_tokens=False)["input_ids"]
    assert enc == tok.encode("quick brown fox", add_special_tokens=False).ids
    assert auto.decode(enc).replace(" ", "").lower() == "quickbrownfox"


def test_sample_texts_caps_characters():
    docs = [{"id": str(i), "text": "x" * 100} for i in range(1000)]
    got = list(tt.sample_texts(iter(docs), 100_000, 20_000, seed=0))
    assert 100 < len(got) < 300
    assert got == list(tt.sample_texts(iter(docs), 100_000, 20_000, seed=0))
    assert len(list(tt.sample_texts(iter(docs), 100_000, 10**9, seed=0))) == 1000


def test_load_errors_name_the_path(tmp_path):
    with pytest.raises(tio.TokenizerError, match="no tokenizer.json"):
        tio.load(tmp_path / "nowhere")


def test_char_tokenizer_is_one_token_per_character(tmp_path):
    from transformers import AutoTokenizer

    texts = ["First Citizen:\nBefore we proceed,  hear me speak.\n", "All:\nSpeak, speak.\n\n"]
    cfg = TokenizerConfig(type="char")
    info = tt.train(cfg, iter(texts), tmp_path)
    alphabet = sorted(set("".join(texts)))
    assert info["alphabet"] == len(alphabet) and info["train_chars"] == sum(map(len, texts))
    tok = tio.load(tmp_path)
    assert tok.get_vocab_size() == 7 + len(alphabet)
    assert [tok.token_to_id(c) for c in alphabet] == list(range(7, 7 + len(alphabet)))  # sorted, after specials
    s = "Speak,\n  we proceed."
    enc = tok.encode(s)
    assert enc.tokens == list(s) and tok.decode(enc.ids) == s  # spaces and newlines are tokens; exact round trip
    assert tok.encode("Speak!").tokens == ["S", "p", "e", "a", "k", "<unk>"]  # '!' was never seen in training
    auto = AutoTokenizer.from_pretrained(str(tmp_path))
    assert auto(s, add_special_tokens=False)["input_ids"] == enc.ids and auto.decode(enc.ids) == s
