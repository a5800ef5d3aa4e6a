"""Metrics from well-kept libraries: scikit-learn for classification, seqeval for entities.

Classification: accuracy; precision/recall/F1 macro, micro, weighted and per class; ROC-AUC
(binary on the positive-class probability; multi-class one-vs-rest, macro over the classes
present in the gold labels); confusion matrix (rows = gold, columns = predicted); mean
cross-entropy. Entities: seqeval's CoNLL-style exact span matching (IOB2), micro P/R/F1 and per
entity type, plus word-level tag accuracy.
"""

from __future__ import annotations

import math

import numpy as np

from lmforge.errors import DataError


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    if len(y_true) == 0:
        raise DataError("cannot evaluate an empty set")
    K = len(labels)
    y_pred = probs.argmax(1)
    ks = list(range(K))
    out: dict = {"examples": int(len(y_true)), "accuracy": float(accuracy_score(y_true, y_pred))}
    for avg in ("macro", "micro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ks, average=avg, zero_division=0)
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = float(p), float(r), float(f)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ks, average=None, zero_division=0)
    out["per_class"] = {labels[k]: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                                    "support": int(s[k])} for k in ks}
    present = sorted(set(int(x) for x in y_true))
    if K == 2 and len(present) == 2:
        out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
    elif K > 2 and len(present) >= 2:
        aucs = {labels[k]: float(roc_auc_score(y_true == k, probs[:, k])) for k in present}
        out["roc_auc"] = float(np.mean(list(aucs.values())))
        out["roc_auc_per_class"] = aucs
    else:
        out["roc_auc"] = None  # undefined with a single gold class
    out["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=ks).tolist()
    picked = probs[np.arange(len(y_true)), y_true]
    out["loss"] = float(-np.mean(np.log(np.clip(picked, 1e-12, None))))
    return out


def entity_metrics(true_tags: list[list[str]], pred_tags: list[list[str]]) -> dict:
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    if not true_tags:
        raise DataError("cannot evaluate an empty set")
    out: dict = {"examples": len(true_tags),
                 "entity_precision": float(precision_score(true_tags, pred_tags)),
                 "entity_recall": float(recall_score(true_tags, pred_tags)),
                 "entity_f1": float(f1_score(true_tags, pred_tags))}
    report = classification_report(true_tags, pred_tags, output_dict=True, zero_division=0)
    out["per_type"] = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                           "f1": float(v["f1-score"]), "support": int(v["support"])}
                       for k, v in report.items() if not k.endswith(" avg")}
    for avg in ("macro", "weighted"):
        if f"{avg} avg" in report:
            out[f"entity_f1_{avg}"] = float(report[f"{avg} avg"]["f1-score"])
    flat_t = [t for s in true_tags for t in s]
    flat_p = [t for s in pred_tags for t in s]
    out["tag_accuracy"] = float(np.mean([a == b for a, b in zip(flat_t, flat_p)])) if flat_t else math.nan
    return out


def perplexity_metrics(losses: list[float], tokens: int) -> dict:
    loss = float(np.mean(losses)) if losses else math.nan
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "tokens": tokens}


def metric_value(metrics: dict, name: str) -> float:
    """The number used for model selection; higher is better (loss is negated)."""
    if name == "loss":
        return -metrics["loss"]
    v = metrics.get(name)
    return -math.inf if v is None else float(v)
