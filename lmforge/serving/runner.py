"""The model behind the server: texts in, predictions out, in one batched call.

Backends: ``torch`` (our task model from a finetune folder / HF classification folder) and
``onnx`` (an ``lmforge export`` folder, run with onnxruntime). :func:`load_runner` picks the
runner for any model folder (decoders and encoders: :mod:`lmforge.serving.lm_runner`). Both share the task's encoding,
so the same text gets the same ids. NER input is split on whitespace with character offsets
kept, so every entity comes back with ``start``/``end`` offsets into the original text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from lmforge.data.labeled_files import Example
from lmforge.errors import ArtifactError
from lmforge.inference.ort import session as ort_session
from lmforge.kinds import KINDS
from lmforge.layout import LM_META_FILE, TASK_META_FILE, kind_of
from lmforge.serving.config import ServeConfig
from lmforge.tasks import get_task
from lmforge.tasks.batching import collate
from lmforge.tasks.token import entities, word_tags
from lmforge.tokenizer.io import load_for_model

WORD = re.compile(r"\S+")


ENDPOINTS = {"sequence": "/v1/classify", "token": "/v1/ner", "causal_lm": "/v1/generate", "encoder": "/v1/embed",
             # image, table and audio models (every kind the registry names inputs for) classify too
             **{k.name: "/v1/classify" for k in KINDS.values() if k.inputs}}


def load_runner(cfg: ServeConfig):
    """The runner for ``cfg.model``: a task model (:class:`Runner`), an image or table model
    (:mod:`lmforge.serving.array_runner`), or a decoder / encoder
    (:mod:`lmforge.serving.lm_runner`); ``runner.kind`` is a key of :data:`ENDPOINTS`. A folder that
    is none of these is an :class:`ArtifactError`, before any port opens."""
    from lmforge.serving.array_runner import ArrayRunner, array_source
    from lmforge.serving.lm_runner import load_lm_runner

    if (arrays := array_source(cfg)) is not None:  # an image or table model, or its export
        return ArrayRunner(cfg, arrays)
    folder = Path(cfg.model)
    if cfg.backend == "onnx":
        if (folder / LM_META_FILE).is_file():
            return load_lm_runner(cfg)
        return Runner(cfg)  # checks the folder itself
    kind = kind_of(folder)
    if kind in ("finetune", "task_model"):
        return Runner(cfg)
    if cfg.model == "minilm" or kind in ("checkpoint", "pretrain", "hf_model"):
        return load_lm_runner(cfg)
    raise ArtifactError(f"{folder}: not a model folder (give a finetune folder or its best/, a pretrain folder or "
                        "checkpoint, an HF model folder or minilm; or an export folder with --backend onnx)")


class Runner:
    """A classifier or tagger: ``predict(texts) -> list[dict]``; safe to call from one worker thread at a time."""

    def __init__(self, cfg: ServeConfig):
        folder = Path(cfg.model)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.backend == "onnx":
            graph = folder / cfg.onnx_file
            if not graph.is_file() or not (folder / TASK_META_FILE).is_file():
                raise ArtifactError(f"{folder}: not an ONNX export folder (no {cfg.onnx_file} / {TASK_META_FILE}); "
                                    "run `lmforge export` first")
            meta = json.loads((folder / TASK_META_FILE).read_text())
            self.task_name, self.labels = meta["task"], meta["labels"]
            self.max_length = meta.get("max_length") or meta["model"]["max_seq_len"]
            self.causal = meta["model"]["arch"] == "decoder"
            self.tokenizer, self.specials = load_for_model(folder)
            session = ort_session(graph, cfg.threads)
            self._logits = lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
            self.folder = folder
        else:
            from lmforge.models.load import load_task_model

            tm = load_task_model(folder)
            self.task_name, self.labels, self.tokenizer, self.specials = tm.model.task, tm.labels, tm.tokenizer, tm.specials
            self.max_length = tm.meta.get("max_length") or tm.model.cfg.max_seq_len
            self.causal = tm.model.causal
            model = tm.model.eval()

            def logits(ids, mask):
                with torch.no_grad():
                    return model(torch.from_numpy(ids), torch.from_numpy(mask))[0].float().numpy()

            self._logits = logits
            self.folder = tm.folder
        self.task = get_task(self.task_name)
        self.kind = self.task_name
        self.backend = cfg.backend

    def info(self) -> dict:
        return {"task": self.task_name, "labels": self.labels, "max_length": self.max_length, "backend": self.backend,
                "model": str(self.folder)}

    def _probs(self, enc) -> list[np.ndarray]:
        order = np.argsort(-enc.lengths, kind="stable")  # length-sorted: little padding
        out: list = [None] * len(enc)
        batch = collate(enc, order, self.specials.pad, with_labels=False)
        logits = self._logits(batch["ids"].numpy(), batch["attention_mask"].numpy())
        e = np.exp(logits - logits.max(-1, keepdims=True))
        p = e / e.sum(-1, keepdims=True)
        for r, i in enumerate(order):
            out[i] = p[r] if p.ndim == 2 else p[r, :len(enc.ids[i])]
        return out

    def predict(self, texts: list[str]) -> list[dict]:
        if not self.task.whole_text:  # a tagger: the request's words, with their character spans
            spans = [[(m.start(), m.end()) for m in WORD.finditer(t)] for t in texts]
            examples = [Example([t[a:b] for a, b in s], None, "request", i) for i, (t, s) in enumerate(zip(texts, spans))]
            enc = self.task.encode(self.tokenizer, examples, None, self.specials, self.causal, self.max_length)
            probs = self._probs(enc)
            tags, confs = word_tags(enc, probs, self.labels)
            out = []
            for t, s, ex, tg, cf in zip(texts, spans, examples, tags, confs):
                ents = []
                for e in entities(ex.text, tg):
                    start, end = s[e["start"]][0], s[e["end"] - 1][1]
                    ents.append({"type": e["type"], "text": t[start:end], "start": start, "end": end,
                                 "score": round(float(np.mean(cf[e["start"]:e["end"]])), 6)})
                out.append({"entities": ents, "words_truncated": sum(x is None for x in tg)})
            return out
        examples = [Example(t, None, "request", i) for i, t in enumerate(texts)]
        enc = self.task.encode(self.tokenizer, examples, None, self.specials, self.causal, self.max_length)
        return list(self.task.format(examples, enc, self._probs(enc), self.labels))
