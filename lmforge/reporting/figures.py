"""The report's plots, each drawn from one file's numbers and returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Optional


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    _plt().close(fig)
    return buf.getvalue()


def length_histograms(manifest: dict) -> Optional[bytes]:
    """Character and token length histograms per split (from the data manifest)."""
    bins = manifest.get("histogram_bins") or {}
    splits = manifest.get("splits") or {}
    if not bins or not splits:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, key, hist_key in ((axes[0], "chars", "char_length_hist"), (axes[1], "tokens", "token_length_hist")):
        edges = bins.get(key)
        if not edges:
            continue
        hists = {split: s.get(hist_key) or [] for split, s in splits.items()}
        n = max((len(h) for h in hists.values()), default=0)
        used = [j for j in range(n) if any(j < len(h) and h[j] for h in hists.values())]
        if not used:
            continue
        lo, hi = used[0], used[-1] + 1  # the bins between the first and last non-empty one
        labels = [f">{edges[j]:,}" if j + 1 >= len(edges) or edges[j + 1] >= 2 ** 40 else f"≤{edges[j + 1]:,}"
                  for j in range(lo, hi)]  # the last edge is an "infinity" sentinel
        width = 0.8 / max(1, len(hists))
        for i, (split, h) in enumerate(hists.items()):
            total = max(1, sum(h))
            ax.bar([j - lo + i * width for j in range(lo, hi)], [(h[j] if j < len(h) else 0) / total
                                                                  for j in range(lo, hi)], width=width, label=split)
        ax.set_xticks(range(hi - lo), labels, rotation=60, fontsize=7)
        ax.set(title=f"{key} per document", ylabel="share of split")
        ax.legend(fontsize=7)
    return _png(fig)


def label_distribution(manifest: dict) -> Optional[bytes]:
    splits = {s: v.get("labels") or {} for s, v in (manifest.get("splits") or {}).items()}
    names = sorted({k for v in splits.values() for k in v})
    if not names:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(names) + 2), 3.2))
    width = 0.8 / max(1, len(splits))
    for i, (split, counts) in enumerate(splits.items()):
        total = max(1, sum(counts.values()))
        ax.bar([j + i * width for j in range(len(names))], [counts.get(n, 0) / total for n in names], width=width,
               label=split)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set(ylabel="share of split", title="labels per split")
    ax.legend(fontsize=7)
    return _png(fig)


def training_curves(metrics: list[dict], panels: list[tuple[str, str, str]], title: str) -> Optional[bytes]:
    """One panel per (record kind, key, label) that has values (from ``metrics.jsonl``)."""
    series = []
    for kind, key, label in panels:
        pts = [(r["step"], r[key]) for r in metrics if r.get("kind") == kind and isinstance(r.get(key), (int, float))]
        if pts:
            series.append((label, pts))
    if not series:
        return None
    plt = _plt()
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (label, pts) in zip([a for row in axes for a in row], series):
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="." if len(pts) < 40 else None, lw=1.2)
        ax.set(xlabel="step", title=label)
        ax.grid(alpha=0.3)
    for ax in [a for row in axes for a in row][len(series):]:
        ax.set_axis_off()
    fig.suptitle(title)
    return _png(fig)


def roc_pr(metrics: dict) -> Optional[bytes]:
    roc, pr = metrics.get("roc_curves") or {}, metrics.get("pr_curves") or {}
    if not roc:
        return None
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for name, c in roc.items():
        a.plot(c["fpr"], c["tpr"], lw=1.2, label=name)
    a.plot([0, 1], [0, 1], ls=":", color="gray")
    a.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one-vs-rest)" if len(roc) > 1 else "ROC")
    for name, c in pr.items():
        b.plot(c["recall"], c["precision"], lw=1.2, label=f"{name} (AP {c['average_precision']:.3f})")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall")
    for ax in (a, b):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _png(fig)


def reliability(metrics: dict) -> Optional[bytes]:
    table = metrics.get("calibration") or []
    if not table:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], ls=":", color="gray", label="perfectly calibrated")
    ax.bar([r["confidence"] for r in table], [r["accuracy"] for r in table], width=0.08, alpha=0.7,
           label="accuracy in bin")
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"reliability (ECE {metrics.get('ece', float('nan')):.3f})")
    ax.legend(fontsize=7)
    return _png(fig)


def tune_history(trials: list[dict]) -> Optional[bytes]:
    done = [t for t in trials if t.get("value") is not None]
    if not done:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.scatter([t["number"] for t in done], [t["value"] for t in done], label="complete")
    pruned = [t["number"] for t in trials if t.get("state") == "pruned"]
    if pruned:
        ax.scatter(pruned, [min(t["value"] for t in done)] * len(pruned), marker="x", color="gray", label="pruned")
    ax.set(xlabel="trial", ylabel="value", title="tuning trials")
    ax.legend(fontsize=7)
    return _png(fig)
