"""Schema of the ``tune`` section (``lmforge tune``): a search space over any config key, the
sampler and pruner, the objective and the budget."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


@dataclass
class ParamSpec:
    """One searched key: ``{type: float, low: 1e-5, high: 3e-4, log: true}``,
    ``{type: int, low: 2, high: 6}`` or ``{type: categorical, choices: [16, 32]}``."""

    type: Literal["float", "int", "categorical"] = "float"
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = field(default=None, metadata={"help": "grid spacing (the grid sampler needs it for float/int)"})
    choices: Optional[list[Any]] = None

    def validate(self):
        if self.type == "categorical":
            if not self.choices:
                yield "choices", "a categorical parameter needs a non-empty list of choices"
            return
        if self.low is None or self.high is None:
            yield "low", f"a {self.type} parameter needs low and high"
            return
        if self.low > self.high:
            yield "low", f"low ({self.low}) is above high ({self.high})"
        if self.log and self.low <= 0:
            yield "low", "a log-scaled range needs low > 0"
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            yield "low", "an int parameter needs whole-number low and high"
        if self.step is not None and self.step <= 0:
            yield "step", "must be > 0"


@dataclass
class TuneConfig:
    space: dict[str, ParamSpec] = field(default_factory=dict, metadata={
        "help": "dotted config key → range, e.g. finetune.optim.lr: {type: float, low: 1e-5, high: 3e-4, log: true}"})
    target: Literal["finetune", "pretrain"] = field(default="finetune", metadata={"help": "which recipe a trial runs"})
    sampler: Literal["tpe", "random", "grid"] = field(default="tpe", metadata={"help": "Optuna sampler (grid: every combination once)"})
    pruner: Literal["median", "hyperband", "none"] = field(default="median", metadata={"help": "stop unpromising trials at a validation"})
    metric: Optional[str] = field(default=None, metadata={"help": "validation metric to optimize (default: the target's selection metric; val_loss for pretrain)"})
    direction: Literal["auto", "maximize", "minimize"] = field(default="auto", metadata={"help": "auto: minimize losses and perplexity, maximize the rest"})
    n_trials: int = field(default=20, metadata={"min": 1, "help": "trials in the study (finished, pruned and failed ones count)"})
    timeout_s: Optional[float] = field(default=None, metadata={"min": 1.0, "help": "start no new trial after this many seconds"})
    n_jobs: int = field(default=1, metadata={"min": 1, "help": "trials run at once on this machine (cores divided among them)"})
    keep_best: int = field(default=1, metadata={"min": 0, "help": "trial folders kept (the best ones); the others are deleted"})
    storage: Optional[str] = field(default=None, metadata={"help": "Optuna storage URL (default sqlite:///<run>/tune/study.db; a PostgreSQL/MySQL URL shares the study across machines)"})
    seed: Optional[int] = field(default=None, metadata={"help": "sampler seed (default: the run's seed)"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "default <run>/tune"})

    def validate(self):
        if not self.space:
            yield "space", "name at least one key to search, e.g. finetune.optim.lr: {type: float, low: 1e-5, high: 1e-3, log: true}"
        if self.sampler == "grid":
            for k, p in self.space.items():
                if p.type != "categorical" and p.step is None:
                    yield f"space.{k}.step", "the grid sampler needs a step (or type: categorical with choices)"
