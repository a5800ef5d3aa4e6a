"""A fine-tuned task model as a verified Hugging Face folder.

The folder loads with ``AutoModelFor{Sequence,Token}Classification`` and HF pipelines (its
tokenizer adds the specials the model was trained with), carries ``lmforge_task.json`` (task,
labels, max_length) and ``lmforge_checksums.json`` (sha256 of every file, checked when lmforge
loads it back). It is written beside its final place and renamed in, so a crash mid-export
leaves the previous folder intact.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

from lmforge.models.heads import Classifier
from lmforge.models.hf_tasks import classifier_to_hf
from lmforge.models.lora import merge_lora
from lmforge.models.weights import write_checksums
from lmforge.tokenizer.io import Specials, add_post_processor


def export_task_model(model: Classifier, folder: Path, labels: list[str], specials: Specials, tokenizer_dir: Path,
                      meta: dict) -> None:
    """Write ``model`` (a copy, LoRA merged, on CPU) to ``folder``, atomically replacing it."""
    m = merge_lora(copy.deepcopy(model).cpu())
    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    classifier_to_hf(m, tmp, labels, specials.pad, tokenizer_dir, {"pad_id": specials.pad, **meta})
    add_post_processor(tmp / "tokenizer.json", specials, m.causal)
    write_checksums(tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
