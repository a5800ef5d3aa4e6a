"""Evaluation outputs of image and table models: the text report (``metrics.json``,
``report.md``, ``confusion_matrix.png``) plus what these kinds need to be looked at —
``mistakes.png`` (images: the most confident mistakes, with gold and predicted labels) and
``residuals.png`` (regression: predicted vs true values)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from lmforge.evaluation.report import write_report
from lmforge.tasks.arrays import ArraySet, is_regression


def write_array_report(out_dir: Path, metrics: dict, meta: dict, data: ArraySet, preds: np.ndarray, title: str,
                       context: Optional[dict] = None) -> Path:
    out_dir = Path(out_dir)
    labels = None if is_regression(meta) else meta["labels"]
    path = write_report(out_dir, {k: v for k, v in metrics.items() if v is not None}, labels, title, context)
    extra: list[str] = []
    mistakes = metrics.get("confident_mistakes") or []
    x = data.inputs["x"]
    if x.ndim == 4 and x.dtype == np.uint8 and mistakes:  # rows are images (N, C, H, W) of pixels: show the mistakes
        from lmforge.data.images.grid import save_image_grid

        rows = [m["row"] for m in mistakes]
        titles = [f"{m['gold']}→{m['predicted']} {m['confidence']:.2f}" for m in mistakes]
        save_image_grid(np.asarray(data.inputs["x"][rows]), titles, out_dir / "mistakes.png",
                        title="most confident mistakes (gold→predicted, confidence)")
        extra += ["## Most confident mistakes", "", "![mistakes](mistakes.png)", ""]
    elif mistakes:
        extra += ["## Most confident mistakes", "", "| id | gold | predicted | confidence |", "| --- | --- | --- | --- |"]
        extra += [f"| {m['id']} | {m['gold']} | {m['predicted']} | {m['confidence']:.4f} |" for m in mistakes[:10]]
        extra.append("")
    if is_regression(meta):
        _residuals(np.asarray(data.y, dtype=float), np.asarray(preds, dtype=float), out_dir / "residuals.png",
                   f"{title}: {meta.get('target', 'target')}")
        extra += ["## Predicted vs true", "", "![residuals](residuals.png)", ""]
    if extra:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n" + "\n".join(extra))
    return path


def _residuals(y: np.ndarray, p: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(y, p, s=10, alpha=0.6)
    lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="perfect")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
