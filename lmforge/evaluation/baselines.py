"""Classical baselines fitted in seconds on the same split as a fine-tuned classifier, so its
report says at once whether the neural model earns its cost.

* ``majority`` — always the most frequent training label;
* ``tfidf_logreg`` — TF-IDF of word 1–2-grams (sublinear tf) + logistic regression, its ``C``
  picked by 3-fold cross-validation on the training split only (never on val/test).

Scored with the same accuracy / macro-F1 as the model (scikit-learn's definitions).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

C_GRID = (1.0, 10.0)


def _scores(gold: list[str], pred: list[str]) -> dict:
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(gold, pred)), "f1_macro": float(f1_score(gold, pred, average="macro"))}


def text_baselines(train_texts: list[str], train_labels: list[str], splits: dict[str, tuple[list[str], list[str]]]) -> dict:
    """``{"majority": {split: scores}, "tfidf_logreg": {split: scores, "C": c, "fit_seconds": s}}``
    for ``splits`` = {name: (texts, labels)}; an empty dict when train has fewer than 2 labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    counts = Counter(train_labels)
    if len(counts) < 2:
        return {}
    majority = counts.most_common(1)[0][0]
    out: dict = {"majority": {s: _scores(y, [majority] * len(y)) for s, (_, y) in splits.items() if y}}
    t = time.time()
    vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, max_features=50_000)
    x = vec.fit_transform(train_texts)
    y = np.array(train_labels)
    folds = min(3, min(counts.values()))
    if folds >= 2:
        search = GridSearchCV(LogisticRegression(max_iter=300, tol=1e-3), {"C": list(C_GRID)},
                              cv=StratifiedKFold(folds, shuffle=True, random_state=0), scoring="accuracy")
        clf = search.fit(x, y).best_estimator_
    else:  # a label with a single example: no cross-validation possible
        clf = LogisticRegression(max_iter=300, tol=1e-3, C=1.0).fit(x, y)
    rec: dict = {"C": float(clf.C), "fit_seconds": round(time.time() - t, 2)}
    for s, (texts, gold) in splits.items():
        if gold:
            rec[s] = _scores(gold, list(clf.predict(vec.transform(texts))))
    out["tfidf_logreg"] = rec
    return out


def baseline_lines(baselines: dict, split: str, model_metrics: dict) -> list[str]:
    """A Markdown section comparing the model with the baselines on ``split``."""
    rows = [(name, b[split]) for name, b in baselines.items() if split in b]
    if not rows:
        return []
    lines = ["## Classical baselines (same training split, fitted in seconds)", "",
             "| model | accuracy | macro F1 |", "| --- | --- | --- |",
             f"| this model | {model_metrics.get('accuracy', float('nan')):.4f} | "
             f"{model_metrics.get('f1_macro', float('nan')):.4f} |"]
    lines += [f"| {name} | {m['accuracy']:.4f} | {m['f1_macro']:.4f} |" for name, m in rows]
    best = max(rows, key=lambda r: r[1]["accuracy"])
    gap = model_metrics.get("accuracy", 0.0) - best[1]["accuracy"]
    lines += ["", f"The model is {abs(gap) * 100:.1f} points {'above' if gap >= 0 else 'below'} the best baseline "
              f"({best[0]}) in accuracy." + ("" if gap >= 0 else " It does not earn its cost on this split yet."), ""]
    return lines
