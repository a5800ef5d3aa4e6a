"""Hugging Face interop for task models: classifiers to and from ``*ForSequenceClassification`` /
``*ForTokenClassification`` folders (BERT and GPT-2 layouts), and bodies (+ BERT pooler) from
any BERT/GPT-2 folder as a fine-tuning starting point.

Key layout (HF → ours): ``bert.*``/``transformer.*`` → ``body.*`` (via the LM converters in
:mod:`lmforge.models.hf_interop`), ``bert.pooler.dense`` → ``pooler.dense``, ``classifier`` →
``classifier`` (GPT-2's sequence head is called ``score`` and has no bias).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from lmforge.models.config import ModelConfig
from lmforge.models.heads import Classifier, Task, build_classifier
from lmforge.models.hf_interop import (bert_to_ours, config_from_hf, config_to_hf, gpt2_to_ours,
                                       ours_to_bert, ours_to_gpt2, save_with_tokenizer)
from lmforge.models.transformer import TransformerBody
from lmforge.errors import ModelError
from lmforge.layout import TASK_META_FILE
from lmforge.models.weights import read_state_dict

_HF_CLASSES = {("bert", "sequence"): "BertForSequenceClassification", ("bert", "token"): "BertForTokenClassification",
               ("gpt2", "sequence"): "GPT2ForSequenceClassification", ("gpt2", "token"): "GPT2ForTokenClassification"}


def _hf_kind(cfg: ModelConfig) -> str:
    if cfg.arch == "encoder":
        return "bert"
    if cfg.pos == "rope":
        raise ModelError("exporting RoPE (Llama-style) classifiers to Hugging Face is not supported; "
                         "use a GPT-2-style (learned positions) decoder or a BERT-style encoder")
    return "gpt2"


def body_state_from_hf(sd: dict[str, torch.Tensor], model_type: str, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Body weights (keys without the ``body.`` prefix) from an HF state dict of any head."""
    if model_type == "bert":
        ours = bert_to_ours(sd, cfg, with_head=False)
    elif model_type == "gpt2":
        ours = gpt2_to_ours(sd, cfg)
    else:
        raise ModelError(f"fine-tuning from Hugging Face model_type {model_type!r} is not supported (bert, gpt2)")
    return {k.removeprefix("body."): v for k, v in ours.items() if k.startswith("body.")}


def load_hf_start(folder: str | Path) -> tuple[TransformerBody, Optional[dict[str, torch.Tensor]], str]:
    """An HF model folder as a starting point: (body, BERT pooler weights if the folder has them, model_type)."""
    from transformers import AutoConfig

    folder = Path(folder)
    hf_cfg = AutoConfig.from_pretrained(str(folder))
    cfg = config_from_hf(hf_cfg)
    sd = read_state_dict(folder)
    body = TransformerBody(cfg, causal=cfg.arch == "decoder")
    body.load_state_dict(body_state_from_hf(sd, hf_cfg.model_type, cfg), strict=True)
    pooler = None
    for prefix in ("bert.pooler.dense.", "pooler.dense."):
        if prefix + "weight" in sd:
            pooler = {"weight": sd[prefix + "weight"], "bias": sd[prefix + "bias"]}
            break
    return body, pooler, hf_cfg.model_type


def classifier_state_to_hf(model: Classifier) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if _hf_kind(cfg) == "bert":
        out = {f"bert.{k}": v for k, v in ours_to_bert(sd, cfg, with_head=False).items()}
        if model.pooler is not None:  # BERT's pooler: sequence classifiers
            out["bert.pooler.dense.weight"] = sd["pooler.dense.weight"]
            out["bert.pooler.dense.bias"] = sd["pooler.dense.bias"]
    else:
        out = {k: v for k, v in ours_to_gpt2(sd, cfg).items() if k != "lm_head.weight"}
    if model.classifier.bias is None:  # GPT-2's score: a decoder's sequence classifier
        out["score.weight"] = sd["classifier.weight"]
    else:
        out["classifier.weight"] = sd["classifier.weight"]
        out["classifier.bias"] = sd["classifier.bias"]
    return {k: v.contiguous() for k, v in out.items()}


def classifier_to_hf(model: Classifier, out_dir: str | Path, labels: list[str], pad_id: Optional[int],
                     tokenizer_dir: Optional[str | Path] = None, extra: Optional[dict] = None):
    """Write an HF folder (config.json with id2label, model.safetensors, tokenizer files) that
    ``AutoModelFor{Sequence,Token}Classification`` loads; plus ``lmforge_task.json`` (our metadata)."""
    import transformers

    from lmforge.models.lora import LoRALinear

    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ModelError("merge LoRA weights before export (lmforge.models.lora.merge_lora)")
    cfg = model.cfg
    kind = _hf_kind(cfg)
    hf_cfg = config_to_hf(cfg)
    hf_cfg.num_labels = len(labels)
    hf_cfg.id2label = {i: name for i, name in enumerate(labels)}
    hf_cfg.label2id = {name: i for i, name in enumerate(labels)}
    hf_cfg.pad_token_id = pad_id
    hf_cfg.classifier_dropout = model.dropout.p
    if kind == "gpt2":
        hf_cfg.summary_first_dropout = model.dropout.p
    cls_name = _HF_CLASSES[(kind, model.task)]
    hf_cfg.architectures = [cls_name]
    hf = getattr(transformers, cls_name)(hf_cfg)
    missing, unexpected = hf.load_state_dict(classifier_state_to_hf(model), strict=False)
    missing = [k for k in missing if "position_ids" not in k and "attn.bias" not in k and "masked_bias" not in k]
    if missing or unexpected:
        raise RuntimeError(f"export to {cls_name} does not line up: missing {missing[:5]}, unexpected {unexpected[:5]}")
    out = Path(out_dir)
    save_with_tokenizer(hf, out, tokenizer_dir)
    meta = {"task": model.task, "labels": labels, "model": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "hf_class": cls_name, **(extra or {})}
    (out / TASK_META_FILE).write_text(json.dumps(meta, indent=2))
    return hf


def classifier_from_hf(folder: str | Path) -> tuple[Classifier, list[str], dict]:
    """Load a fine-tuned HF classification folder (ours or any BERT/GPT-2 one, e.g. from HF Trainer)."""
    from transformers import AutoConfig

    folder = Path(folder)
    hf_cfg = AutoConfig.from_pretrained(str(folder))
    arch = (hf_cfg.architectures or [""])[0]
    if arch.endswith("ForSequenceClassification"):
        task: Task = "sequence"
    elif arch.endswith("ForTokenClassification"):
        task = "token"
    else:
        raise ModelError(f"{folder}: config.json architectures={hf_cfg.architectures}; expected a "
                         "*ForSequenceClassification or *ForTokenClassification model")
    cfg = config_from_hf(hf_cfg)
    sd = read_state_dict(folder)
    labels = [hf_cfg.id2label[i] for i in range(hf_cfg.num_labels)]
    body = TransformerBody(cfg, causal=cfg.arch == "decoder")
    model = build_classifier(cfg, body, task, len(labels), dropout=0.0)
    ours = {f"body.{k}": v for k, v in body_state_from_hf(sd, hf_cfg.model_type, cfg).items()}
    if model.pooler is not None:  # the layout build_classifier chose for this task and body
        ours["pooler.dense.weight"], ours["pooler.dense.bias"] = sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"]
    if model.classifier.bias is None:
        ours["classifier.weight"] = sd["score.weight"]
    else:
        ours["classifier.weight"], ours["classifier.bias"] = sd["classifier.weight"], sd["classifier.bias"]
    model.load_state_dict(ours, strict=True)
    meta_file = folder / TASK_META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {"task": task, "labels": labels}
    meta.setdefault("pad_id", hf_cfg.pad_token_id if hf_cfg.pad_token_id is not None else 0)
    return model, labels, meta
