"""Co-occurrence embeddings (PPMI + SVD) before the first pretraining step: words used alike end
up close, documents do not leak into each other, unseen rows and the scale are kept."""

import numpy as np
import torch

from lmforge.training.embedding_init import cooccurrence_counts, init_from_cooccurrence, ppmi_svd

SEP, CLS = 1, 0


def _topics(n_docs: int, seed: int = 0) -> np.ndarray:
    """Rows of 16: CLS, then documents of 5 tokens ending in SEP, each from one topic:
    tokens 2-9 (topic A) or 10-17 (topic B)."""
    rng = np.random.default_rng(seed)
    stream = []
    for _ in range(n_docs):
        lo = 2 if rng.random() < 0.5 else 10
        stream += list(rng.integers(lo, lo + 8, size=5)) + [SEP]
    rows = []
    for i in range(0, len(stream) - 15, 15):
        rows.append([CLS] + stream[i:i + 15])
    return np.asarray(rows, dtype=np.int64)


def _cos(e: np.ndarray, a, b) -> float:
    x, y = e[a], e[b]
    return float((x @ y.T).mean() / (np.linalg.norm(x, axis=1).mean() * np.linalg.norm(y, axis=1).mean()))


def test_tokens_of_one_topic_end_up_closer_than_tokens_of_two():
    rows = _topics(3000)
    counts = cooccurrence_counts(rows.reshape(-1), 24, 8, {SEP}, {CLS})
    emb = ppmi_svd(counts, 8, seed=0)
    A, B = list(range(2, 10)), list(range(10, 18))
    within = (_cos(emb, A, A) + _cos(emb, B, B)) / 2
    assert within > _cos(emb, A, B) + 0.3


def test_documents_are_counted_apart_and_windows_read_as_one_stream():
    # windows of 4: [CLS 2 3 SEP] [CLS 4 5 6] [CLS 7 SEP 8]: document (2 3), then (4 5 6 7) across a
    # window edge, then (8 ...)
    stream = np.array([CLS, 2, 3, SEP, CLS, 4, 5, 6, CLS, 7, SEP, 8])
    counts = cooccurrence_counts(stream, 9, 2, {SEP}, {CLS}).toarray()
    assert counts[2, 3] == counts[3, 2] == 1 and counts[4, 5] == 1
    assert counts[3, 4] == 0 and counts[7, 8] == 0  # not across a document end
    assert counts[6, 7] == 1 and counts[5, 7] == 1  # across a window edge, the <cls> not counted as a step
    assert counts[4, 7] == 0  # 3 content tokens apart: outside the window of 2
    assert counts[SEP].sum() == counts[CLS].sum() == 0  # specials are not counted


def test_the_table_is_filled_in_place_at_the_model_scale():
    torch.manual_seed(0)
    emb = torch.nn.Embedding(24, 8)
    torch.nn.init.normal_(emb.weight, std=0.02)
    before = emb.weight.detach().clone()
    info = init_from_cooccurrence(emb.weight, iter([_topics(500).reshape(-1)]), 8, {SEP}, {CLS}, 10**6, 0)
    seen = list(range(2, 18))
    assert info["kind"] == "cooccurrence" and info["vocab_rows"] == len(seen)
    unseen = [0, 1] + list(range(18, 24))
    assert torch.equal(emb.weight[unseen], before[unseen])  # specials and unseen ids keep their random rows
    assert not torch.allclose(emb.weight[seen], before[seen])
    ratio = emb.weight.detach()[seen].norm(dim=1).mean() / before.norm(dim=1).mean()
    assert 0.9 < float(ratio) < 1.1
