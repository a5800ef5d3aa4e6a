"""What a data kind hands the one fine-tuning loop (:mod:`lmforge.recipes.finetune`).

Every kind (text, image, table) prepares the same thing from the config: the model and its
optimizer, the schedule's length, how the g-th micro-batch of the run is drawn, the loss of a
micro-batch, a validation pass, how the best model is written and how it is evaluated at the end.
The loop itself — seeding, learning rate, accumulation, clipping, logging, validation, early
stopping, interruption, exact-resume checkpoints, the summary — is the same for all of them, so
resume, Ctrl-C and early stopping behave identically whatever the data.

A kind's setup lives beside its task (:mod:`lmforge.training.text_setup`,
:mod:`lmforge.training.array_setup`); :mod:`lmforge.kinds` says which one a run uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

def say(msg: str) -> None:
    """A fine-tuning console line (the loop and every kind's setup print through it)."""
    print(f"[finetune] {msg}", flush=True)


# (indices of the micro-batch's examples, step, micro-batch number) -> (loss to minimize, loss to log[, its
# weight in loss units: labeled tokens, summed class weights; default the number of examples]), or None to
# skip the micro-batch (an image/table epoch's last batch of one row). Under DDP the loop scales the loss by
# each rank's share of the units, so the mean must be over those units.
TrainLoss = Callable[[np.ndarray, int, int], Optional[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class FinetuneSetup:
    """Everything the loop needs from one kind of data (see the module docstring)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    trainable: list[nn.Parameter]
    total: int  # optimizer steps of the run
    steps_per_epoch: int
    micro_batch: Callable[[int], np.ndarray]  # g-th micro-batch of the run -> example indices
    train_loss: TrainLoss
    evaluate: Optional[Callable[[], dict]]  # validation metrics of the model now; None without a val split
    headline_keys: tuple[str, ...]  # metrics logged and printed at each validation (besides the selection metric)
    metric: str  # the selection metric
    save_best: Callable[[int, dict], None]  # (step, {metric: value}) -> write the best model
    final: Callable[[int, Optional[dict]], dict]  # (best step, full val metrics of the in-memory best or None) -> results
    describe: str  # the console line that opens the run
    checkpoint_extra: dict = field(default_factory=dict)  # kept in every checkpoint's state (labels, task)
    net: Optional[nn.Module] = None  # what train_loss calls when it is not ``model`` itself (DDP's wrapper)
    summary: dict = field(default_factory=dict)  # kind-specific keys of summary.json
