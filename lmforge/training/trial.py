"""The trial side of ``lmforge tune``: a training run started by the tuner reports each
validation to its Optuna trial and stops at once when the pruner says so.

The tuner starts each trial as a fresh ``lmforge finetune|pretrain`` process (memory cannot grow
from trial to trial) with ``LMFORGE_TUNE_TRIAL`` set to ``{"storage", "study", "trial_id",
"metric", "pruner"}``; :func:`trial_hook` turns that into the recipe's ``on_eval`` callback. A pruned
trial ends with :class:`TrialPruned` (exit code 3), which the tuner records as pruned.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

from lmforge.errors import LmforgeError, TrainingError

TRIAL_ENV = "LMFORGE_TUNE_TRIAL"


class TrialPruned(LmforgeError):
    """The tuner's pruner stopped this trial (not an error: exit code 3 tells the tuner)."""

    exit_code = 3


def make_pruner(name: str):
    """The Optuna pruner ``tune.pruner`` names (built the same way by the tuner and by its trials,
    which decide pruning themselves: a study loaded from storage does not carry its pruner)."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def trial_hook() -> Optional[Callable[[int, dict], bool]]:
    """``on_eval(step, metrics)`` for a run started by ``lmforge tune``; None otherwise."""
    spec = os.environ.get(TRIAL_ENV)
    if not spec:
        return None
    import optuna

    d = json.loads(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=d["study"], storage=d["storage"], pruner=make_pruner(d["pruner"]))
    trial = optuna.trial.Trial(study, d["trial_id"])
    metric = d["metric"]

    def on_eval(step: int, metrics: dict) -> bool:
        if metric not in metrics:
            raise TrainingError(f"tune.metric {metric!r} is not among the validation metrics {sorted(metrics)}")
        trial.report(float(metrics[metric]), step)
        if trial.should_prune():
            raise TrialPruned(f"trial {trial.number} pruned at step {step} ({metric} {metrics[metric]:.4f})")
        return False

    return on_eval
