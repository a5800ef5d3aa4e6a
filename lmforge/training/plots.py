"""Training curves from ``metrics.jsonl``: loss (train and validation) and, for fine-tuning,
the validation metric model selection uses."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from lmforge.training.metric_logging import read_records


def plot_curves(metrics: Path, out: Path, title: str, val_loss_key: str, metric: Optional[str] = None) -> None:
    """One panel of losses (train line, validation points); a second panel with ``metric`` if given."""
    recs = read_records(metrics)
    if not recs:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = [(r["step"], r["loss"]) for r in recs if r["kind"] == "train"]
    ev = [(r["step"], r[val_loss_key]) for r in recs if r["kind"] == "eval" and val_loss_key in r]
    fig, axes = plt.subplots(1, 2 if metric else 1, figsize=(10, 3.8) if metric else (7, 4), squeeze=False)
    ax = axes[0][0]
    if tr:
        ax.plot(*zip(*tr), label="train loss")
    if ev:
        ax.plot(*zip(*ev), "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    if metric:
        pts = [(r["step"], r.get(metric, r.get("loss"))) for r in recs if r["kind"] == "eval"]
        if pts:
            axes[0][1].plot(*zip(*pts), "o-")
        axes[0][1].set_xlabel("step")
        axes[0][1].set_title(f"val {metric}")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
