"""Token classification (NER with IOB2 tags): one tag per word, scored as entity spans.

Words are split into sub-words; the first sub-word of each word carries its tag. Predictions are
mapped back to words through that first sub-word; words cut off by truncation get no tag
(``None``), are predicted ``O`` for scoring, and are counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lmforge.data.labeled_files import Example, read_token_file
from lmforge.errors import DataError
from lmforge.evaluation.metrics import entity_metrics
from lmforge.tasks.encoding import Encoded, encode_words


class TokenTask:
    """One IOB2 tag per word; scored as entity spans (seqeval) plus a word-tag confusion matrix."""

    name = "token"
    default_metric = "entity_f1"
    metrics = frozenset({"entity_f1"})
    headline = ("entity_f1", "entity_precision", "entity_recall", "loss", "examples")
    has_baselines = False
    whole_text = False
    pipeline_tag = "token-classification"

    def read(self, path: str | Path, text_field: str, label_field: str, need_label: bool = True,
             header: bool = True) -> list[Example]:
        return read_token_file(path, need_label=need_label)

    def read_prepared(self, data_dir: Path, split: str) -> list[Example]:
        raise DataError("finetune.task=token reads CoNLL files: set finetune.data.train_file (and val_file/test_file)")

    def label_names(self, train: list[Example], declared: Optional[list[str]]) -> list[str]:
        if declared:
            return list(declared)
        tags = sorted({t for ex in train for t in ex.label} - {"O"}, key=lambda t: (t[2:], t[:2]))
        return ["O"] + tags

    def encode(self, tok, examples, label_ids, specials, causal, max_length, on_overflow="truncate") -> Encoded:
        return encode_words(tok, examples, label_ids, specials, causal, max_length, on_overflow)

    def score(self, probs: list[np.ndarray], enc: Encoded, examples: list[Example], labels: list[str]) -> dict:
        from sklearn.metrics import confusion_matrix

        pred, _ = word_tags(enc, probs, labels)
        missing = sum(t is None for s in pred for t in s)
        pred = [[t or "O" for t in s] for s in pred]
        gold = [list(ex.label) for ex in examples]
        m = entity_metrics(gold, pred)
        m["words_truncated_predicted_O"] = missing
        m["confusion_matrix"] = confusion_matrix([t for s in gold for t in s], [t for s in pred for t in s],
                                                 labels=labels).tolist()  # word-level tags, gold rows
        return m

    def format(self, examples: list[Example], enc: Encoded, probs: list[np.ndarray],
               labels: list[str]) -> Iterator[dict]:
        tags, confs = word_tags(enc, probs, labels)
        for ex, t, c in zip(examples, tags, confs):
            yield {"line": ex.line, "words": ex.text, "tags": [x or "O" for x in t],
                   "scores": [round(x, 6) for x in c], "entities": entities(ex.text, t),
                   "words_truncated": sum(x is None for x in t)}


def word_tags(enc: Encoded, probs: list[np.ndarray], labels: list[str]) -> tuple[list[list], list[list[float]]]:
    """Per example, the tag of each word (None where truncation removed the word) and its probability."""
    tags, confs = [], []
    for i, p in enumerate(probs):
        t: list = [None] * enc.n_words[i]
        c: list = [0.0] * enc.n_words[i]
        pos = np.nonzero(enc.word_index[i] >= 0)[0]
        best = p[pos].argmax(-1)
        for j, k in zip(pos, best):
            w = enc.word_index[i][j]
            t[w] = labels[k]
            c[w] = float(p[j, k])
        tags.append(t)
        confs.append(c)
    return tags, confs


def entities(words: list[str], tags: list) -> list[dict]:
    """IOB2 tags → entity spans ``{type, start, end (exclusive), text}`` (an I- without B- starts one)."""
    spans, cur = [], None
    for i, t in enumerate(list(tags) + ["O"]):
        t = t or "O"
        if t == "O" or t.startswith("B-") or (cur is not None and t[2:] != cur["type"]):
            if cur is not None:
                cur["end"] = i
                cur["text"] = " ".join(words[cur["start"]:i])
                spans.append(cur)
                cur = None
        if t != "O" and cur is None:
            cur = {"type": t[2:], "start": i}
    return spans
