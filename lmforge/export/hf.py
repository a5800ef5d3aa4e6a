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
from lmforge.swap import swap_in
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
    swap_in(tmp, folder)


def export_hf(model: str | Path, out: str | Path | None) -> Path:
    """``lmforge export --format hf``: a language-model checkpoint (or pretrain folder) as an HF
    ``*ForCausalLM`` / ``*ForMaskedLM`` folder, or a fine-tuned model's verified HF folder copied."""
    from lmforge.errors import ArtifactError
    from lmforge.layout import checkpoint_tokenizer, kind_of, task_model_dir
    from lmforge.models.hf_interop import to_hf
    from lmforge.models.load import load_checkpoint_model
    from lmforge.models.weights import verify

    src = Path(model)
    kind = kind_of(src)
    if kind in ("checkpoint", "pretrain"):
        lm, state = load_checkpoint_model(src)
        dst = Path(out) if out else state["path"].parent.parent / "export" / "hf"
        to_hf(lm, dst, checkpoint_tokenizer(state["path"], state))
        write_checksums(dst)
        return dst
    if kind in ("finetune", "task_model"):
        folder = task_model_dir(src)
        verify(folder)
        dst = Path(out) if out else folder.parent / "export" / "hf"
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(folder, dst)
        return dst
    raise ArtifactError(f"{src}: not a model folder lmforge can export (a checkpoint, pretrain or finetune folder)")
