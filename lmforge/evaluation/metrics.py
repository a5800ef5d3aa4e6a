"""Metrics from well-kept libraries: scikit-learn for classification, seqeval for entities.

Classification: accuracy; precision/recall/F1 macro, micro, weighted and per class; ROC-AUC
(binary on the positive-class probability; multi-class one-vs-rest, macro over the classes
present in the gold labels); confusion matrix (rows = gold, columns = predicted); mean
cross-entropy; curves for plots (:func:`classification_curves`): ROC and precision-recall
(binary: the positive class; multi-class: one-vs-rest per class), and calibration (a reliability
table of confidence vs accuracy in 10 bins, and the expected calibration error). Entities: seqeval's CoNLL-style exact span matching (IOB2), micro P/R/F1 and per
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


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """RMSE, MAE, R² (scikit-learn) and the mean squared error as ``loss``, in the target's units."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    if len(y_true) == 0:
        raise DataError("cannot evaluate an empty set")
    mse = float(mean_squared_error(y_true, y_pred))
    return {"examples": int(len(y_true)), "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y_true, y_pred)),
            "r2": float(r2_score(y_true, y_pred)) if len(y_true) > 1 else None, "loss": mse}


LOWER_IS_BETTER = ("loss", "rmse", "mae")


def metric_value(metrics: dict, name: str) -> float:
    """The number used for model selection; higher is better (loss, RMSE and MAE are negated)."""
    if name in LOWER_IS_BETTER:
        return -metrics[name]
    v = metrics.get(name)
    return -math.inf if v is None else float(v)


def _thin(xs: np.ndarray, n: int = 101) -> list[float]:
    """At most ``n`` points of a curve (first and last kept), rounded for JSON."""
    idx = np.unique(np.linspace(0, len(xs) - 1, min(n, len(xs))).round().astype(int))
    return [round(float(v), 5) for v in xs[idx]]


def classification_curves(y_true: np.ndarray, probs: np.ndarray, labels: list[str], bins: int = 10) -> dict:
    """ROC and precision-recall curves per scored class, and calibration of the top prediction."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_curve

    K = len(labels)
    present = sorted(set(int(x) for x in y_true))
    classes = [1] if K == 2 else (present if len(present) >= 2 else [])
    roc, pr = {}, {}
    for k in classes:
        pos = y_true == k
        if pos.all() or not pos.any():
            continue
        fpr, tpr, _ = roc_curve(pos, probs[:, k])
        prec, rec, _ = precision_recall_curve(pos, probs[:, k])
        roc[labels[k]] = {"fpr": _thin(fpr), "tpr": _thin(tpr)}
        pr[labels[k]] = {"recall": _thin(rec[::-1]), "precision": _thin(prec[::-1]),
                         "average_precision": float(average_precision_score(pos, probs[:, k]))}
    conf = probs.max(1)
    right = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            c, a = float(conf[m].mean()), float(right[m].mean())
            table.append({"low": round(float(lo), 2), "high": round(float(hi), 2), "confidence": round(c, 4),
                          "accuracy": round(a, 4), "count": int(m.sum())})
            ece += m.mean() * abs(c - a)
    return {"roc_curves": roc, "pr_curves": pr, "calibration": table, "ece": float(ece)}
