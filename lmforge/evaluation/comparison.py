"""A pretrained start against random init on the same task: the gain with both sides' spread,
as the fine-tuning summary records it (``comparison``) and as reports and model cards print it."""

from __future__ import annotations

import statistics


def spread(values: list[float]) -> dict:
    return {"values": values, "mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def comparison_lines(c: dict) -> list[str]:
    """The comparison as Markdown: one row per split, the gain with both sides' spread."""
    n = len(c["seeds"])
    lines = [f"## Pretrained start vs random init ({c['metric']}, {n} seed{'s' if n > 1 else ''} per side)", "",
             "| split | pretrained: mean (min–max) | random init: mean (min–max) | gain (points) | seeds won |",
             "| --- | --- | --- | --- | --- |"]
    for split, r in c["splits"].items():
        o, x = r["own"], r["random"]
        lines.append(f"| {split} | {o['mean']:.4f} ({o['min']:.4f}–{o['max']:.4f}) | {x['mean']:.4f} "
                     f"({x['min']:.4f}–{x['max']:.4f}) | {100 * r['gain']:+.1f} | {r['own_wins']}/{n} |")
    if n < 3:
        lines += ["", "Fewer than 3 seeds per side: the spread is not measured (set finetune.compare_seeds: 3)."]
    return lines
