"""Examples → token ids for classification heads, and batches with dynamic padding.

Encoder inputs are ``[CLS] tokens [SEP]``; decoder inputs are ``tokens [EOS]`` (the pooled last
position then always sees the same end marker). For token tasks each word is tokenized into
sub-words; the first sub-word carries the word's tag and the rest get -100 (not scored), and
``word_index`` maps sub-word positions back to words for predictions.

Packing (``finetune.pack``): the examples of a batch are placed several to a row of up to
``row_len`` tokens (first-fit by decreasing length), with a block-diagonal attention mask and
positions restarting at 0 for each example. Every example sees exactly what it would see alone
in a padded batch — the same math and the same (random) batch composition — while the padding
compute disappears.

Batches: each epoch is a seeded permutation; with bucketing, windows of 50 batches are sorted
by length before being cut, and the batch order is shuffled again — so batches hold similar
lengths (little padding) but the order stays random. The order is a pure function of
(seed, epoch), which makes resume exact without saving sampler state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from lmforge.data.labeled_files import Example
from lmforge.errors import DataError, LmforgeError


class TooLongError(LmforgeError, ValueError):
    pass


@dataclass
class Specials:
    pad: int
    cls: Optional[int] = None
    sep: Optional[int] = None
    eos: Optional[int] = None

    def wrap(self, ids: list[int], causal: bool) -> tuple[list[int], int]:
        """Add the specials; returns (ids, number of leading specials)."""
        if causal:
            return ids + ([self.eos] if self.eos is not None else []), 0
        head = [self.cls] if self.cls is not None else []
        return head + ids + ([self.sep] if self.sep is not None else []), len(head)

    def count(self, causal: bool) -> int:
        if causal:
            return int(self.eos is not None)
        return int(self.cls is not None) + int(self.sep is not None)


@dataclass
class Encoded:
    ids: list[np.ndarray]
    labels: list  # int per example (sequence) or an int64 array per example (token; -100 = not scored)
    word_index: list[np.ndarray] = field(default_factory=list)  # token task: word of each position, -1 = none
    n_words: list[int] = field(default_factory=list)
    truncated: int = 0  # examples cut at max_length
    was_truncated: list[bool] = field(default_factory=list)
    words_truncated: int = 0  # token task: words that lost their tokens to truncation

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.ids), dtype=np.int64, count=len(self.ids))


def _too_long(ex: Example, n: int, max_length: int) -> TooLongError:
    return TooLongError(f"{ex.source}:{ex.line}: example has {n} tokens, more than finetune.max_length={max_length}; "
                          "raise max_length or set finetune.on_overflow: truncate")


def encode_sequences(tok, examples: list[Example], label_ids: Optional[dict[str, int]], specials: Specials,
                     causal: bool, max_length: int, on_overflow: str = "truncate") -> Encoded:
    budget = max_length - specials.count(causal)
    encs = tok.encode_batch([ex.text for ex in examples], add_special_tokens=False)
    ids, labels, cut = [], [], []
    for ex, e in zip(examples, encs):
        toks = e.ids
        cut.append(len(toks) > budget)
        if cut[-1]:
            if on_overflow == "error":
                raise _too_long(ex, len(toks) + specials.count(causal), max_length)
            toks = toks[:budget]
        ids.append(np.asarray(specials.wrap(list(toks), causal)[0], dtype=np.int64))
        labels.append(_label_id(ex, ex.label, label_ids) if label_ids is not None and ex.label is not None else -100)
    return Encoded(ids, labels, truncated=sum(cut), was_truncated=cut)


def encode_words(tok, examples: list[Example], label_ids: Optional[dict[str, int]], specials: Specials,
                 causal: bool, max_length: int, on_overflow: str = "truncate") -> Encoded:
    budget = max_length - specials.count(causal)
    encs = tok.encode_batch([ex.text for ex in examples], is_pretokenized=True, add_special_tokens=False)
    out = Encoded([], [])
    for ex, e in zip(examples, encs):
        toks = list(e.ids)
        words = np.asarray([-1 if w is None else w for w in e.word_ids], dtype=np.int64)
        n_words = len(ex.text)
        out.was_truncated.append(len(toks) > budget)
        if len(toks) > budget:
            if on_overflow == "error":
                raise _too_long(ex, len(toks) + specials.count(causal), max_length)
            toks, words = toks[:budget], words[:budget]
            out.truncated += 1
            out.words_truncated += n_words - len(set(words[words >= 0].tolist()))
        full, lead = specials.wrap(toks, causal)
        word_index = np.full(len(full), -1, dtype=np.int64)
        word_index[lead:lead + len(words)] = words
        first = np.zeros(len(full), dtype=bool)  # the first sub-token of each word carries its tag
        prev = -1
        for i, w in enumerate(word_index):
            if w >= 0 and w != prev:
                first[i] = True
            if w >= 0:
                prev = w
        labels = np.full(len(full), -100, dtype=np.int64)
        if label_ids is not None and ex.label is not None:
            tags = np.asarray([_label_id(ex, t, label_ids, i) for i, t in enumerate(ex.label)], dtype=np.int64)
            labels[first] = tags[word_index[first]]
        out.ids.append(np.asarray(full, dtype=np.int64))
        out.labels.append(labels)
        out.word_index.append(np.where(first, word_index, -1))
        out.n_words.append(n_words)
    return out


def _label_id(ex: Example, label: str, label_ids: dict[str, int], offset: Optional[int] = None) -> int:
    try:
        return label_ids[label]
    except KeyError:
        line = ex.line + offset if offset is not None else ex.line
        raise DataError(f"{ex.source}:{line}: label {label!r} is not one of the model's labels "
                         f"{list(label_ids)}") from None


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[np.ndarray]:
    """Index arrays of one epoch's batches (the last may be smaller)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if bucket:
        window = batch_size * 50
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, -(-len(order) // window)))]) \
            if len(order) else order
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        perm = rng.permutation(len(batches))
        batches = [batches[i] for i in perm]
    return batches


def collate(enc: Encoded, idx: np.ndarray, pad_id: int, with_labels: bool = True) -> dict[str, torch.Tensor]:
    """Right-pad the examples ``idx`` to the longest of them."""
    T = max(len(enc.ids[i]) for i in idx)
    ids = np.full((len(idx), T), pad_id, dtype=np.int64)
    mask = np.zeros((len(idx), T), dtype=np.int64)
    for r, i in enumerate(idx):
        n = len(enc.ids[i])
        ids[r, :n] = enc.ids[i]
        mask[r, :n] = 1
    out = {"ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if with_labels:
        if isinstance(enc.labels[0], np.ndarray):
            lab = np.full((len(idx), T), -100, dtype=np.int64)
            for r, i in enumerate(idx):
                lab[r, :len(enc.labels[i])] = enc.labels[i]
        else:
            lab = np.asarray([enc.labels[i] for i in idx], dtype=np.int64)
        out["labels"] = torch.from_numpy(lab)
    return out


def pack(enc: Encoded, idx: np.ndarray, pad_id: int, row_len: int, causal: bool) -> dict[str, torch.Tensor]:
    """Pack the examples ``idx`` into rows (see the module docstring). Returns ids (R, L), a boolean
    attention mask (R, 1, L, L), positions (R, L), labels ((N,) or (R, L)) and pool_index (N, 2):
    the (row, position) read by the pooler — the first token (encoders) or the last (decoders) —
    in the order of ``idx``."""
    lengths = [len(enc.ids[i]) for i in idx]
    rows: list[list[int]] = []  # members (positions in idx) of each row
    free: list[int] = []
    for j in sorted(range(len(idx)), key=lambda j: -lengths[j]):
        for r, room in enumerate(free):
            if lengths[j] <= room:
                rows[r].append(j)
                free[r] -= lengths[j]
                break
        else:
            rows.append([j])
            free.append(row_len - lengths[j])
    L = max(row_len - f for f in free)
    R = len(rows)
    ids = np.full((R, L), pad_id, dtype=np.int64)
    seg = -1 - np.arange(L, dtype=np.int64)[None].repeat(R, 0)  # padding: a segment of its own
    pos = np.zeros((R, L), dtype=np.int64)
    pool = np.zeros((len(idx), 2), dtype=np.int64)
    token_labels = isinstance(enc.labels[0], np.ndarray) if len(enc.labels) else False
    lab = np.full((R, L), -100, dtype=np.int64) if token_labels else None
    for r, members in enumerate(rows):
        o = 0
        for j in members:
            i, n = idx[j], lengths[j]
            ids[r, o:o + n] = enc.ids[i]
            seg[r, o:o + n] = j
            pos[r, o:o + n] = np.arange(n)
            pool[j] = (r, o + n - 1 if causal else o)
            if token_labels:
                lab[r, o:o + n] = enc.labels[i]
            o += n
    mask = seg[:, :, None] == seg[:, None, :]  # (R, L, L) same example
    if causal:
        mask &= np.tril(np.ones((L, L), dtype=bool))[None]
    labels = lab if token_labels else np.asarray([enc.labels[i] for i in idx], dtype=np.int64)
    return {"ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask[:, None]),
            "positions": torch.from_numpy(pos), "labels": torch.from_numpy(labels),
            "pool_index": torch.from_numpy(pool)}
