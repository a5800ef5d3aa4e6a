"""Sequence classification (text classification, sentiment): one label per text."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lmforge.data.labeled_files import Example, read_prepared_split, read_records
from lmforge.evaluation.metrics import classification_curves, classification_metrics
from lmforge.tasks.encoding import Encoded, encode_sequences


class SequenceTask:
    """One label per text; scored with accuracy, F1, ROC-AUC, confusion matrix."""

    name = "sequence"
    default_metric = "accuracy"
    metrics = frozenset({"accuracy", "f1_macro", "f1_micro", "f1_weighted", "roc_auc"})
    headline = ("accuracy", "f1_macro", "roc_auc", "loss", "examples")
    has_baselines = True  # majority class and TF-IDF + logistic regression are fitted beside the model
    whole_text = True  # one prediction per text (not per word)
    pipeline_tag = "text-classification"

    def read(self, path: str | Path, text_field: str, label_field: str, need_label: bool = True,
             header: bool = True, id_field: Optional[str] = None) -> list[Example]:
        return read_records(path, text_field, label_field, need_label=need_label, id_field=id_field, header=header)

    def read_prepared(self, data_dir: Path, split: str) -> list[Example]:
        return read_prepared_split(data_dir, split)

    def label_names(self, train: list[Example], declared: Optional[list[str]]) -> list[str]:
        return list(declared) if declared else sorted({ex.label for ex in train})

    def encode(self, tok, examples, label_ids, specials, causal, max_length, on_overflow="truncate") -> Encoded:
        return encode_sequences(tok, examples, label_ids, specials, causal, max_length, on_overflow)

    def score(self, probs: list[np.ndarray], enc: Encoded, examples: list[Example], labels: list[str]) -> dict:
        y, p = np.asarray(enc.labels), np.stack(probs)
        m = classification_metrics(y, p, labels)
        m.update(classification_curves(y, p, labels))
        wrong = np.flatnonzero(p.argmax(1) != y)
        worst = wrong[np.argsort(-p[wrong].max(1), kind="stable")][:10]  # the most confident mistakes
        m["confident_mistakes"] = [{"line": examples[i].line, "text": str(examples[i].text)[:300],
                                    "gold": labels[y[i]], "predicted": labels[int(p[i].argmax())],
                                    "confidence": round(float(p[i].max()), 4)} for i in worst]
        return m

    def format(self, examples: list[Example], enc: Encoded, probs: list[np.ndarray],
               labels: list[str]) -> Iterator[dict]:
        for ex, p, cut in zip(examples, probs, enc.was_truncated):
            k = int(p.argmax())
            yield {"line": ex.line, "label": labels[k], "score": float(p[k]),
                   "probs": {name: round(float(v), 6) for name, v in zip(labels, p)}, "truncated": cut}
