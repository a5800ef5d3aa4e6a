"""``finetune.compare_random``: does the pretrained start pay off on this task? The same
fine-tuning from random init, on the same labeled split, with the same steps and settings, for
``compare_seeds`` seeds per side; the gain (or loss) of the pretrained start with its spread.

Outputs: ``<finetune>/compare/{own,random}_seed<S>/`` (the extra runs, each a finetune folder),
``<finetune>/compare/comparison.json`` and ``comparison.md``; the comparison is also added to
``<finetune>/summary.json`` (``comparison``), which the run report and the model card read.
"""

from __future__ import annotations

import json
from dataclasses import replace

from lmforge.config.schema import build
from lmforge.evaluation.comparison import comparison_lines, spread
from lmforge.kinds import is_array_task
from lmforge.layout import RunPaths
from lmforge.models.arrays import read_array_config
from lmforge.models.config import ModelConfig
from lmforge.models.load import load_task_model
from lmforge.recipes.finetune import finetune
from lmforge.training.finetune_config import FinetuneConfig


def _say(msg: str) -> None:
    print(f"[compare] {msg}", flush=True)


def _random_side(ft: FinetuneConfig, paths: RunPaths) -> tuple[ModelConfig, FinetuneConfig]:
    """The model shape (and, for text, the tokenizer) of the pretrained start, from random init."""
    best = paths.finetune.best
    if is_array_task(ft.task):  # images and tables: the saved model's own config
        return build(ModelConfig, read_array_config(best)["model"]), replace(ft, init="random")
    model = load_task_model(best).model
    return model.body.cfg, replace(ft, init="random", tokenizer=str(best), init_embeddings="pretrained")


def compare_with_random(ft: FinetuneConfig, paths: RunPaths, seed: int, main: dict, progress: bool = False) -> dict:
    """Run the extra arms after the main fine-tuning (whose summary is ``main``) and return the
    comparison (also written to disk, see the module docstring)."""
    root = paths.finetune.root
    metric = main.get("selection_metric") or ft.selection_metric()
    random_cfg, random_ft = _random_side(ft, paths)
    seeds = [seed + i for i in range(ft.compare_seeds)]
    sides: dict[str, dict[str, list[float]]] = {"own": {}, "random": {}}

    def record(side: str, summary: dict) -> None:
        for split, m in summary["results"].items():
            if metric in m:
                sides[side].setdefault(split, []).append(float(m[metric]))

    record("own", main)
    for i, s in enumerate(seeds):
        for side in ("own", "random"):
            if side == "own" and i == 0:
                continue  # the main run
            run_ft = replace(ft if side == "own" else random_ft, compare_random=False, baselines=False)
            run_paths = replace(paths, finetune_override=root / "compare" / f"{side}_seed{s}")
            _say(f"{side} start, seed {s}")
            record(side, finetune(run_ft, random_cfg, run_paths, s, name=f"compare {side} seed {s}", overwrite=True,
                                  progress=progress))
    out = {"metric": metric, "seeds": seeds, "start": main.get("start"), "splits": {}}
    for split in sides["own"]:
        if split not in sides["random"]:
            continue
        own, rnd = spread(sides["own"][split]), spread(sides["random"][split])
        out["splits"][split] = {"own": own, "random": rnd, "gain": own["mean"] - rnd["mean"],
                                "own_wins": sum(o > r for o, r in zip(own["values"], rnd["values"]))}
    lines = comparison_lines(out)
    (root / "compare").mkdir(parents=True, exist_ok=True)
    (root / "compare" / "comparison.json").write_text(json.dumps(out, indent=2))
    (root / "compare" / "comparison.md").write_text("\n".join(lines) + "\n")
    summary_file = paths.finetune.summary
    summary = json.loads(summary_file.read_text())
    summary["comparison"] = out
    summary_file.write_text(json.dumps(summary, indent=2))
    for line in filter(None, lines):
        _say(line)
    return out
