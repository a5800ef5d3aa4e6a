"""The human side of a prepared table: ``report.md`` and ``missingness.png``, both from the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_missingness_plot(path: Path, m: dict) -> Path:
    """Per column, the fraction of missing cells before and after imputation, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s, n in m["splits"].items() if n or sum(m["missing_before"][s].values())]
    splits = splits or ["train"]
    columns = list(m["missing_before"]["train"])
    fig, axes = plt.subplots(1, len(splits), figsize=(4 + 3 * len(splits), 0.35 * len(columns) + 1.8),
                             sharey=True, sharex=True, squeeze=False)
    y = np.arange(len(columns))
    top = 1e-3
    for ax, s in zip(axes[0], splits):
        rows_before = max(m["rows_before_drop_row"][s], 1)
        before = [m["missing_before"][s].get(c, 0) / rows_before for c in columns]
        after = [m["missing_after"][s].get(c, 0) / max(m["splits"][s], 1) for c in columns]
        ax.barh(y - 0.2, before, 0.4, label="before", color="tab:orange")
        ax.barh(y + 0.2, after, 0.4, label="after", color="tab:blue")
        ax.set_title(f"{s} ({m['splits'][s]} rows)")
        ax.set_xlabel("missing fraction")
        top = max([top] + before + after)
    axes[0][0].set_xlim(0, min(1.0, top * 1.15))
    axes[0][0].set_yticks(y, columns)
    axes[0][0].invert_yaxis()
    axes[0][-1].legend(loc="lower right")
    fig.suptitle("Missing values before and after imputation")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(path: Path, m: dict) -> Path:
    c = m["counts"]
    lines = [f"# Tabular data: {m['target']} ({m['task']})", "",
             f"- rows read: {c['read']}, kept: {c['kept']}, rejected: {c['rejected']}",
             "- splits: " + ", ".join(f"{s} {n}" for s, n in m["splits"].items())
             + (" (stratified by label)" if m.get("stratified") else ""),
             f"- features: {len(m['feature_names'])} ({m['n_numeric']} numeric, "
             f"{len(m['feature_names']) - m['n_numeric']} categorical columns)"]
    if m.get("labels"):
        lines.append(f"- labels: {', '.join(m['labels'])}")
    if m["ignored_columns"]:
        lines.append(f"- ignored columns (not declared): {', '.join(m['ignored_columns'])}")
    if m["dropped_columns"]:
        lines.append(f"- dropped columns (missing in too many train rows): {', '.join(m['dropped_columns'])}")
    if c["rejected_by_reason"]:
        lines += ["", "## Rejected rows", "", "| reason | rows |", "|---|---:|"]
        lines += [f"| {r} | {n} |" for r, n in c["rejected_by_reason"].items()]
        lines += ["", "Every rejected row, with its file and line: `rejected/rows.jsonl`."]
    lines += ["", "## Missing values", "",
              "Cells missing per column, before imputation (rows of the split before `drop_row` "
              "rejections) → after (the prepared arrays).", ""]
    splits = list(m["splits"])
    lines += ["| column | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for col in m["missing_before"]["train"]:
        cells = []
        for s in splits:
            after = m["missing_after"][s].get(col)
            cells.append(f"{m['missing_before'][s][col]} → {'dropped' if after is None else after}")
        lines.append(f"| {col} | " + " | ".join(cells) + " |")
    lines += ["", "![missingness](missingness.png)"]
    if m["type_errors"]:
        lines += ["", "## Cells that did not parse", "",
                  "These cells were treated as missing.", "", "| column | count | examples (line: value) |", "|---|---:|---|"]
        for col, e in m["type_errors"].items():
            ex = "; ".join(f"{x['line']}: `{x['value']}`" for x in e["examples"])
            lines.append(f"| {col} | {e['count']} | {ex} |")
    cfg = m["config"]
    lines += ["", "## Preprocessing (fit on the train split only)", "",
              f"- missing values: {cfg['missing']['strategy']}"
              + (f" (per column: {cfg['missing']['per_column']})" if cfg["missing"]["per_column"] else ""),
              f"- outliers: {cfg['outliers']}, scaling: {cfg['scaling']}, categorical encoding: {cfg['categorical_encoding']}",
              f"- log features: {cfg['features']['log'] or 'none'}; polynomial features: {cfg['features']['polynomial'] or 'none'}",
              "", "Features, in the order of the `x` columns: " + ", ".join(f"`{f}`" for f in m["feature_names"]), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
