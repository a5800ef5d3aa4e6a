"""``lmforge transfer``: how much does pretraining buy on *your* task, in numbers?

For every starting point in ``transfer.starts``, every training-set size in
``transfer.label_counts`` (a seeded random subset of the training labels; 0 = all) and every
seed in ``transfer.seeds``, fine-tune with the ``finetune`` section and score the **final** model
on the validation set (no model selection on the set that is reported). Runs are recorded one by
one in ``results.jsonl`` (with the TF-IDF + logistic-regression baseline of the same subset); a
rerun skips finished runs, so an interrupted study continues where it stopped.

Outputs under ``<run>/transfer/``: ``results.jsonl``, ``table.md`` (mean and min–max over the
seeds, and the baseline row) and ``transfer.png`` (validation metric against number of labels,
log scale, one line per starting point with its min–max band, the baseline dashed).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

from lmforge.layout import RunPaths
from lmforge.models.config import ModelConfig
from lmforge.recipes.finetune import finetune
from lmforge.training.text_setup import load_examples
from lmforge.kinds import is_array_task
from lmforge.tasks import get_task
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.transfer_config import TransferConfig


def _say(msg: str) -> None:
    print(f"[transfer] {msg}", flush=True)


def steps_for(n: int, ft: FinetuneConfig, t: TransferConfig) -> int:
    """Steps for ``n`` training examples: ``loop.epochs`` of them, within [min_steps, max_steps]."""
    spe = max(1, math.ceil(n / ft.loop.batch_size) // ft.loop.grad_accum)
    steps = max(t.min_steps, math.ceil(ft.loop.epochs * spe))
    return min(steps, t.max_steps) if t.max_steps else steps


def run_config(ft: FinetuneConfig, t: TransferConfig, start: str, init: str, count: int, n: int) -> FinetuneConfig:
    """The fine-tuning section of one run: the study's, with this start, subset and budget."""
    steps = steps_for(n, ft, t)
    return replace(ft, init=init,
                   data=replace(ft.data, max_train_examples=None if count == 0 else count, test_file=None),
                   loop=replace(ft.loop, max_steps=steps, eval_every=steps),  # score the final model only
                   optim=replace(ft.optim, lr=t.start_lr.get(start, ft.optim.lr),
                                 head_lr=t.start_head_lr.get(start, ft.optim.head_lr)))


def transfer(t: TransferConfig, ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int) -> list[dict]:
    """Run the study (finished runs in ``results.jsonl`` are skipped); returns its result rows."""
    if is_array_task(ft.task):
        from lmforge.errors import UsageError

        raise UsageError(f"transfer compares text starting points; finetune.task: {ft.task} is not supported")
    out = paths.transfer
    out.mkdir(parents=True, exist_ok=True)
    results_file = out / "results.jsonl"
    seeds = list(t.seeds or [seed])
    done = {}
    if results_file.exists():
        for line in results_file.read_text().splitlines():
            r = json.loads(line)
            done[(r["start"], r["labels_requested"], r.get("seed", seed))] = r
    task = get_task(ft.task)
    n_train = len(load_examples(ft, task, paths.finetune_data)["train"])
    metric = ft.selection_metric()
    for start, init in t.starts.items():
        for count in t.label_counts:
            for s in seeds:
                if (start, count, s) in done:
                    _say(f"{start} × {count or 'all'} labels, seed {s}: done before, skipped")
                    continue
                done[(start, count, s)] = _one_run(ft, t, model_cfg, paths, out, start, init, count, n_train, s,
                                                   metric, len(seeds) > 1)
                with open(results_file, "a") as fh:
                    fh.write(json.dumps(done[(start, count, s)]) + "\n")
    results = [done[(st, c, s)] for st in t.starts for c in t.label_counts for s in seeds if (st, c, s) in done]
    table = write_table(results, list(t.starts), t.label_counts, n_train, metric, out / "table.md")
    plot(results, list(t.starts), metric, out / "transfer.png")
    print(table)
    _say(f"table {out / 'table.md'}, plot {out / 'transfer.png'}")
    return results


def _one_run(ft: FinetuneConfig, t: TransferConfig, model_cfg: ModelConfig, paths: RunPaths, out: Path, start: str,
             init: str, count: int, n_train: int, seed: int, metric: str, per_seed_folder: bool) -> dict:
    """Fine-tune one cell of the study and return its result row."""
    n = n_train if count == 0 else min(count, n_train)
    run = run_config(ft, t, start, init, count, n)
    folder = f"{start}_{count or 'all'}" + (f"_s{seed}" if per_seed_folder else "")
    run_paths = replace(paths, finetune_override=out / "runs" / folder)
    _say(f"{start} × {count or 'all'} labels, seed {seed} ({n} examples, {run.loop.max_steps} steps)")
    t0 = time.time()
    # an unfinished run (not in results.jsonl) starts over: overwrite its checkpoints
    summary = finetune(run, model_cfg, run_paths, seed, name=f"transfer {start}", overwrite=True, progress=False)
    return {"start": start, "init": init, "labels_requested": count, "seed": seed, "train_examples": n,
            "steps": run.loop.max_steps, "lr": run.optim.lr, "head_lr": run.optim.head_lr, "metric": metric,
            "value": summary["results"]["val"][metric], "seconds": round(time.time() - t0, 1),
            # the classical baseline on the same labeled subset (text classification)
            "tfidf_logreg": summary.get("baselines", {}).get("tfidf_logreg", {}).get("val", {}).get(metric)}


def _cells(results: list[dict], key: str = "value") -> dict[tuple[str, int], list[float]]:
    """(start, labels_requested) → the values of its seeds; ``key="tfidf_logreg"`` gives the
    baseline per label count under start ``"TF-IDF + logistic regression"`` (one value per subset)."""
    cells: dict[tuple[str, int], dict] = {}
    for r in results:
        if r.get(key) is None:
            continue
        start = r["start"] if key == "value" else "TF-IDF + logistic regression"
        cells.setdefault((start, r["labels_requested"]), {})[r.get("seed")] = r[key]
    return {k: list(v.values()) for k, v in cells.items()}


def _cell(values: list[float] | None) -> str:
    if not values:
        return "—"
    mean = sum(values) / len(values)
    return f"{mean:.4f}" if len(values) == 1 else f"{mean:.4f} ({min(values):.4f}–{max(values):.4f})"


def write_table(results: list[dict], starts: list[str], counts: list[int], n_train: int, metric: str, path: Path) -> str:
    """The study as a Markdown table (starts × label counts; mean and min–max over seeds, and
    the TF-IDF baseline row when the runs recorded it), written to ``path`` and returned."""
    cols = [str(c) if c else f"all ({n_train})" for c in counts]
    lines = [f"| start \\ labels | {' | '.join(cols)} |", "| --- |" + " --- |" * len(cols)]
    cells = {**_cells(results), **_cells(results, "tfidf_logreg")}
    seeds = sorted({r.get("seed") for r in results if r.get("seed") is not None})
    for s in starts + (["TF-IDF + logistic regression"] if any(k[0].startswith("TF-IDF") for k in cells) else []):
        lines.append(f"| {s} | {' | '.join(_cell(cells.get((s, c))) for c in counts)} |")
    over = f" (mean and min–max over seeds {', '.join(map(str, seeds))})" if len(seeds) > 1 else ""
    text = (f"Validation {metric} of the final model after fine-tuning on N labels{over}.\n\n"
            + "\n".join(lines) + "\n")
    path.write_text(text)
    return text


def plot(results: list[dict], starts: list[str], metric: str, path: Path) -> None:
    """Validation metric against labeled examples (log scale), one line per start."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    n_of = {r["labels_requested"]: r["train_examples"] for r in results}
    cells = _cells(results)
    for s in starts:
        pts = sorted((n_of[c], v) for (st, c), v in cells.items() if st == s)
        if pts:
            x = [p[0] for p in pts]
            line, = ax.plot(x, [sum(v) / len(v) for _, v in pts], "o-", label=s)
            if any(len(v) > 1 for _, v in pts):  # the seeds' min–max
                ax.fill_between(x, [min(v) for _, v in pts], [max(v) for _, v in pts], color=line.get_color(), alpha=0.15)
    base = sorted((n_of[c], sum(v) / len(v)) for (_, c), v in _cells(results, "tfidf_logreg").items())
    if base:
        ax.plot(*zip(*base), "k--", alpha=0.6, label="TF-IDF + logistic regression")
    ax.set_xscale("log")
    ax.set_xlabel("labeled training examples")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Transfer benefit")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
