"""Examples → token ids for classification heads.

Encoder inputs are ``[CLS] tokens [SEP]``; decoder inputs are ``tokens [EOS]`` (the pooled last
position then always sees the same end marker). For token tasks each word is tokenized into
sub-words; the first sub-word carries the word's tag and the rest get -100 (not scored), and
``word_index`` maps sub-word positions back to words for predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from lmforge.data.labeled_files import Example
from lmforge.errors import DataError
from lmforge.tokenizer.io import Specials


class TooLongError(DataError):
    """An example longer than ``max_length`` with ``on_overflow: error`` (names its file and line)."""

    pass


@dataclass
class Encoded:
    """Token ids and label ids of a set of examples, plus what truncation cut."""

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
    return TooLongError(f"{ex.source}:{ex.line}: example has {n} tokens, more than finetune.data.max_length={max_length}; "
                          "raise max_length or set finetune.data.on_overflow: truncate")


def encode_sequences(tok, examples: list[Example], label_ids: Optional[dict[str, int]], specials: Specials,
                     causal: bool, max_length: int, on_overflow: str = "truncate") -> Encoded:
    """Each text → ``specials.wrap(tokens)``, cut to ``max_length``; one label id per example (-100 if none)."""
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
    """Each word list → sub-tokens; the first sub-token of a word carries its tag id, the rest -100."""
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
