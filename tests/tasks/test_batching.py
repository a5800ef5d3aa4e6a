"""Task batching: word/label alignment, bucketing order, and packing = padding (same math)."""

import numpy as np
import pytest
import torch

from lmforge.data.labeled_files import Example
from lmforge.models.config import ModelConfig
from lmforge.models.heads import build_classifier
from lmforge.models.layers import init_weights
from lmforge.models.transformer import TransformerBody
from lmforge.tasks.batching import collate, pack
from lmforge.tasks.encoding import Encoded, encode_words
from lmforge.tokenizer.io import Specials
from lmforge.training.sampling import epoch_batches


class CharTok:
    """A stand-in tokenizer: every character of a word is a sub-token."""

    class E:
        def __init__(self, ids, word_ids):
            self.ids, self.word_ids = ids, word_ids

    def encode_batch(self, texts, is_pretokenized=False, add_special_tokens=False):
        out = []
        for words in texts:
            ids, wids = [], []
            for w, word in enumerate(words):
                ids += [10 + (ord(c) % 50) for c in word]
                wids += [w] * len(word)
            out.append(self.E(ids, wids))
        return out


def test_first_subtoken_carries_the_tag_and_truncation_is_counted():
    ex = [Example(["ab", "c", "def"], ["B-PER", "O", "B-LOC"], "f", 1)]
    enc = encode_words(CharTok(), ex, {"O": 0, "B-PER": 1, "B-LOC": 2}, Specials(pad=0, cls=1, sep=2), False, 12)
    assert enc.ids[0].tolist()[0] == 1 and enc.ids[0].tolist()[-1] == 2
    assert enc.labels[0].tolist() == [-100, 1, -100, 0, 2, -100, -100, -100]
    assert enc.word_index[0].tolist() == [-1, 0, -1, 1, 2, -1, -1, -1]
    short = encode_words(CharTok(), ex, {"O": 0, "B-PER": 1, "B-LOC": 2}, Specials(pad=0, cls=1, sep=2), False, 5)
    assert short.truncated == 1 and short.words_truncated == 1  # "def" lost all its sub-tokens


def test_bucketed_epochs_are_permutations_with_less_padding():
    lengths = np.random.default_rng(0).integers(3, 100, 1000)
    for bucket in (False, True):
        b = epoch_batches(lengths, 16, seed=1, epoch=0, bucket=bucket)
        assert sorted(np.concatenate(b).tolist()) == list(range(1000))
        assert [x.tolist() for x in b] == [x.tolist() for x in epoch_batches(lengths, 16, 1, 0, bucket)]
    pad = {bk: sum(lengths[x].max() * len(x) - lengths[x].sum() for x in epoch_batches(lengths, 16, 1, 0, bk))
           for bk in (False, True)}
    assert pad[True] < 0.2 * pad[False]


ENC = ModelConfig(arch="encoder", vocab_size=60, n_layer=2, n_head=2, d_model=32, max_seq_len=64, mlp="gelu",
                  norm_position="post", type_vocab_size=2, embedding_norm=True, final_norm=False)
DEC = ModelConfig(arch="decoder", vocab_size=60, n_layer=2, n_head=2, d_model=32, max_seq_len=64)


@pytest.mark.parametrize("cfg", [ENC, DEC], ids=["encoder", "decoder"])
@pytest.mark.parametrize("task", ["sequence", "token"])
def test_packed_rows_compute_exactly_what_padded_batches_do(cfg, task):
    torch.manual_seed(0)
    body = TransformerBody(cfg, causal=cfg.arch == "decoder")
    init_weights(body)
    model = build_classifier(cfg, body, task, 3, dropout=0.0).eval()
    rng = np.random.default_rng(0)
    ids = [rng.integers(3, 60, n) for n in (5, 17, 3, 9, 30, 2, 11)]
    labels = [rng.integers(0, 3, len(x)) for x in ids] if task == "token" else list(rng.integers(0, 3, len(ids)))
    enc = Encoded(ids, labels)
    idx = np.arange(len(ids))
    padded = collate(enc, idx, 0)
    packed = pack(enc, idx, 0, 32, causal=cfg.arch == "decoder")
    assert packed["ids"].shape[0] < len(ids)  # several examples per row
    with torch.no_grad():
        lp, loss_p = model(padded["ids"], padded["attention_mask"], padded["labels"])
        lk, loss_k = model(packed["ids"], packed["attention_mask"], packed["labels"],
                           positions=packed["positions"], pool_index=packed["pool_index"])
    torch.testing.assert_close(loss_k, loss_p, atol=1e-5, rtol=1e-5)
    if task == "sequence":
        torch.testing.assert_close(lk, lp, atol=1e-5, rtol=1e-5)


def test_row_length_packs_short_texts_into_short_rows():
    from lmforge.tasks.batching import _first_fit, row_length

    rng = np.random.default_rng(0)
    short = np.clip(rng.normal(17, 6, 32).round(), 6, 48).astype(int).tolist()
    L = row_length(short, 128, 384)
    assert max(short) <= L < 64 and L % 8 == 0
    rows, free = _first_fit(short, L)
    assert sorted(j for r in rows for j in r) == list(range(32)) and min(free) >= 0  # every example, none cut
    assert len(rows) * L < 32 * max(short)  # fewer positions than padding the batch
    long = [128] * 20 + [100] * 12
    assert row_length(long, 128, 384) == 128
    assert row_length([5], 4, 384) == 5  # never shorter than the longest example


@pytest.mark.parametrize("row_len", [None, 12, 64])
def test_packed_rows_of_any_length_match_padded(row_len):
    from lmforge.tasks.batching import row_length

    torch.manual_seed(0)
    body = TransformerBody(ENC, causal=False)
    init_weights(body)
    model = build_classifier(ENC, body, "sequence", 3, dropout=0.0).eval()
    rng = np.random.default_rng(1)
    ids = [rng.integers(3, 60, n) for n in (5, 12, 3, 9, 4, 2, 11, 7)]
    enc = Encoded(ids, list(rng.integers(0, 3, len(ids))))
    idx = np.arange(len(ids))
    L = row_len or row_length([len(x) for x in ids], 64, ENC.d_model)
    padded, packed = collate(enc, idx, 0), pack(enc, idx, 0, L, causal=False)
    with torch.no_grad():
        lp, _ = model(padded["ids"], padded["attention_mask"])
        lk, _ = model(packed["ids"], packed["attention_mask"], positions=packed["positions"],
                      pool_index=packed["pool_index"])
    torch.testing.assert_close(lk, lp, atol=1e-5, rtol=1e-5)
