"""Evaluation outputs: ``metrics.json``, ``confusion_matrix.png`` and ``report.md``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(cm, dtype=float)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    if len(labels) <= 20:
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of gold row")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def summary_table(metrics: dict) -> str:
    """The headline numbers as a Markdown table (also printed by the CLI)."""
    keys = [k for k in ("examples", "accuracy", "f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro",
                        "roc_auc", "entity_precision", "entity_recall", "entity_f1", "tag_accuracy", "loss",
                        "perplexity", "tokens", "truncated") if k in metrics]
    return "| metric | value |\n| --- | --- |\n" + "".join(f"| {k} | {_fmt(metrics[k])} |\n" for k in keys)


def write_report(out_dir: Path, metrics: dict, labels: Optional[list[str]], title: str,
                 context: Optional[dict] = None, extra: Optional[list[str]] = None) -> Path:
    """``metrics.json`` and ``report.md`` (+ confusion matrix) in ``out_dir``; ``extra``: Markdown
    lines placed after the per-class table (e.g. the classical baselines)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps({**(context or {}), **metrics}, indent=2))
    lines = [f"# {title}", ""]
    for k, v in (context or {}).items():
        lines.append(f"- **{k}**: {v}")
    lines += ["", summary_table(metrics), ""]
    if "per_class" in metrics:
        lines += ["## Per class", "", "| label | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
                  for k, v in metrics["per_class"].items()]
        lines.append("")
    lines += extra or []
    if "per_type" in metrics:
        lines += ["## Per entity type (seqeval, exact spans)", "",
                  "| type | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | {v['support']} |"
                  for k, v in metrics["per_type"].items()]
        lines.append("")
    if "confusion_matrix" in metrics and labels:
        plot_confusion(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png", title)
        what = "word tags" if "per_type" in metrics else "labels"
        lines += [f"## Confusion matrix ({what}; rows = gold)", "", "![confusion matrix](confusion_matrix.png)", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
