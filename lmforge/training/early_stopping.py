"""Best-so-far tracking and early stopping for every recipe: ``Best(mode, patience)``."""

from __future__ import annotations

import math
from typing import Literal, Optional


class Best:
    """Tracks the best validation value (``mode`` min or max) and the evaluations since it.
    ``state_dict()`` goes into checkpoints, so early stopping survives a resume."""

    def __init__(self, mode: Literal["min", "max"], patience: Optional[int] = None):
        self.mode, self.patience = mode, patience
        self.value = math.inf if mode == "min" else -math.inf
        self.step: Optional[int] = None
        self.bad_evals = 0
        self.metrics: Optional[dict] = None

    def update(self, value: float, step: int, metrics: Optional[dict] = None) -> bool:
        """Record an evaluation; True when it is a new best (strictly better)."""
        better = value < self.value if self.mode == "min" else value > self.value
        if better:
            self.value, self.step, self.bad_evals, self.metrics = value, step, 0, metrics
        else:
            self.bad_evals += 1
        return better

    @property
    def should_stop(self) -> bool:
        return bool(self.patience) and self.bad_evals >= self.patience

    def state_dict(self) -> dict:
        return {"mode": self.mode, "value": self.value, "step": self.step, "bad_evals": self.bad_evals,
                "metrics": self.metrics}

    def load_state_dict(self, d: dict) -> None:
        """Also reads the shapes checkpoints had before this class ({val_loss, name} / {value, step})."""
        self.value = d["value"] if "value" in d else d["val_loss"]
        self.step = d.get("step")
        if self.step is None and d.get("name"):
            self.step = int(d["name"].rsplit("_", 1)[1])
        self.bad_evals, self.metrics = d.get("bad_evals", 0), d.get("metrics")
