"""What a fine-tuning task is: the small protocol every task implements.

A task knows how its examples are read (files, prepared folders), which labels it has, how an
example becomes token ids, how predictions are scored and how they are written out. The
recipes, ``evaluate`` and ``predict`` call these methods and never branch on the task's name,
so adding a task (image or tabular classification, say) is adding a file under ``tasks/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Protocol

import numpy as np

from lmforge.data.labeled_files import Example
from lmforge.tasks.encoding import Encoded
from lmforge.tokenizer.io import Specials


class Task(Protocol):
    """The methods every task provides (see the module docstring)."""

    name: str  # the finetune.task value and the head kind (models.heads.Task)
    default_metric: str  # what finetune.loop.metric: auto selects on
    metrics: frozenset[str]  # the selectable validation metrics (plus "loss")
    headline: tuple[str, ...]  # metric keys that summaries and transfer tables report
    has_baselines: bool  # classical baselines (majority, TF-IDF + LR) are fitted beside the model
    whole_text: bool  # one prediction per text (classifiers), not per word (taggers)
    pipeline_tag: str  # the Hugging Face pipeline tag of its models

    def read(self, path: str | Path, text_field: str, label_field: str, need_label: bool = True,
             header: bool = True) -> list[Example]:
        """Examples of a labeled file (or an unlabeled one, for prediction); ``header=False``: a
        CSV/TSV without a header row, columns named "0", "1", ..."""

    def read_prepared(self, data_dir: Path, split: str) -> list[Example]:
        """Examples of a split of a ``data prepare`` folder."""

    def label_names(self, train: list[Example], declared: Optional[list[str]]) -> list[str]:
        """Label names in id order, from the declared list or the training data."""

    def encode(self, tok, examples: list[Example], label_ids: Optional[dict[str, int]], specials: Specials,
               causal: bool, max_length: int, on_overflow: str = "truncate") -> Encoded:
        """Token ids (and label ids, when ``label_ids`` is given) of each example."""

    def score(self, probs: list[np.ndarray], enc: Encoded, examples: list[Example], labels: list[str]) -> dict:
        """Metrics of predicted probabilities against the examples' gold labels."""

    def format(self, examples: list[Example], enc: Encoded, probs: list[np.ndarray],
               labels: list[str]) -> Iterator[dict]:
        """One JSON-ready prediction record per example."""
