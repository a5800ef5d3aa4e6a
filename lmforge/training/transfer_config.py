"""Schema of the ``transfer`` section (``lmforge transfer``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class TransferConfig:
    label_counts: list[int] = field(default_factory=lambda: [100, 1000, 10000, 0],
                                    metadata={"help": "training-set sizes to try (a seeded subset); 0 = all labels"})
    starts: dict[str, str] = field(default_factory=lambda: {"random": "random"},
                                   metadata={"help": "name → finetune.init (random, a pretrain folder, an HF folder, minilm)"})
    seeds: Optional[list[int]] = field(default=None, metadata={"help": "seeds per cell (each draws its own label subset and, for random, its own init); the table shows mean (min-max); default [seed]"})
    start_lr: dict[str, float] = field(default_factory=dict, metadata={"help": "optional learning rate per start name"})
    start_head_lr: dict[str, float] = field(default_factory=dict, metadata={"help": "optional learning rate of the new head (pooler + classifier) per start name (default finetune.optim.head_lr)"})
    min_steps: int = field(default=100, metadata={"min": 1, "help": "at least this many steps per run (small sets get more epochs)"})
    max_steps: Optional[int] = field(default=None, metadata={"min": 1, "help": "at most this many steps per run"})
    out_dir: Optional[str] = field(default=None, metadata={"help": "default <run>/transfer"})

    def validate(self):
        if not self.starts:
            yield "starts", "name at least one starting point, e.g. {random: random, minilm: minilm}"
        if any(n < 0 for n in self.label_counts):
            yield "label_counts", "counts must be >= 0 (0 = all)"
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            yield "seeds", "a non-empty list of distinct seeds, e.g. [1234, 1, 2]"
        for key in ("start_lr", "start_head_lr"):
            for k in getattr(self, key):
                if k not in self.starts:
                    yield f"{key}.{k}", f"no start named {k!r}; starts: {sorted(self.starts)}"
