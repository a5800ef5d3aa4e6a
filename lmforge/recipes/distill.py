"""``lmforge distill``: a smaller student learns from a teacher.

One linear recipe per kind of teacher, each on an existing recipe with a different loss:

* a fine-tuned classifier or tagger → the student starts from the teacher with fewer layers
  (``finetune.init: <teacher>``, ``finetune.keep_layers: [0, 2, 4]``) or at random with the
  teacher's tokenizer → ``finetune`` with the distillation loss instead of plain cross-entropy →
  the same HF folder, checkpoints and evaluation as any fine-tuning run;
* a causal LM (our pretrain folder or checkpoint, an HF GPT-2/Llama folder) → the student is the
  teacher with fewer layers (``distill.keep_layers``, weights copied) or the ``model`` section at
  random → ``pretrain`` (CLM) on ``pretrain.data_dir`` with the soft term added to the next-token
  loss → a pretrain folder like any other (generate, export, serve). The shards must be tokenized
  with the teacher's vocabulary (logit distillation compares distributions over one vocabulary).

Both end with a comparison of teacher and student (quality on the validation set, parameters,
CPU latency at batch 1 and 32) in ``<run>/distill/`` (``distill.json``, ``report.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import torch

from lmforge.data.shards import PackedDataset
from lmforge.errors import DataError
from lmforge.layout import CHECKSUMS_FILE, RunPaths, kind_of, task_model_dir, tokenizer_of_tokens
from lmforge.models.config import ModelConfig
from lmforge.models.heads import keep_layers
from lmforge.models.load import load_checkpoint_model, load_language_model, load_task_model, resolve_init
from lmforge.models.transformer import LanguageModel
from lmforge.recipes.finetune import finetune
from lmforge.training.text_setup import subsample
from lmforge.recipes.pretrain import pretrain, validate
from lmforge.kinds import is_array_task
from lmforge.tasks import get_task
from lmforge.tasks.encoding import Encoded
from lmforge.tokenizer.io import load_folder
from lmforge.training.config import PretrainConfig
from lmforge.training.distill_config import DistillConfig
from lmforge.training.distillation import CachedTeacherLoss, CausalTeacherLoss, TeacherLoss, teacher_logits
from lmforge.training.distributed import Dist
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.training.objectives import CausalLM
from lmforge.training.precision import Precision


def _say(msg: str) -> None:
    print(f"[distill] {msg}", flush=True)


def latency_ms(forward: Callable[[torch.Tensor], object], batch: int, length: int, vocab: int,
               calls: int = 20) -> float:
    """Median CPU time of one forward pass on random ids (batch, length)."""
    ids = torch.randint(5, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    times = []
    with torch.inference_mode():
        for i in range(calls + 3):
            t = time.perf_counter()
            forward(ids)
            if i >= 3:
                times.append(1000 * (time.perf_counter() - t))
    return round(statistics.median(times), 2)


def distill(dc: DistillConfig, ft: FinetuneConfig, pt: PretrainConfig, model_cfg: ModelConfig, paths: RunPaths,
            seed: int, *, name: str = "distill", resume: bool = False, overwrite: bool = False,
            progress: bool = True) -> dict:
    """Distil ``dc.teacher`` into a student: fine-tuning for a classifier/tagger teacher,
    CLM pretraining for a causal-LM teacher. Returns the run's summary plus ``distill``."""
    if is_array_task(ft.task):
        raise DataError(f"distill is built for text models; finetune.task: {ft.task} has no distillation yet")
    if kind_of(resolve_init(dc.teacher)) in ("checkpoint", "pretrain", "hf_model"):
        return distill_causal_lm(dc, pt, model_cfg, paths, seed, resume=resume, overwrite=overwrite,
                                 progress=progress)
    return distill_classifier(dc, ft, model_cfg, paths, seed, name=name, resume=resume, overwrite=overwrite,
                              progress=progress)


def distill_classifier(dc: DistillConfig, ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *,
                       name: str = "distill", resume: bool = False, overwrite: bool = False,
                       progress: bool = True) -> dict:
    if dc.keep_layers is not None:
        raise DataError("distill.keep_layers is for causal-LM teachers; a classifier student keeps teacher layers "
                        "with finetune.init: <teacher> and finetune.keep_layers")
    if (dc.transfer_file or dc.teacher_logits == "cache") and not get_task(ft.task).whole_text:
        raise DataError("distill.transfer_file and distill.teacher_logits: cache are for sequence classification; "
                        f"finetune.task is {ft.task} (its teacher runs on the fly)")
    teacher = load_task_model(dc.teacher)
    if teacher.model.task != ft.task:
        raise DataError(f"distill.teacher is a {teacher.model.task} model; finetune.task is {ft.task}")
    teacher_dir = task_model_dir(Path(dc.teacher))
    if ft.init == "random":
        if ft.tokenizer and Path(ft.tokenizer).resolve() != teacher_dir.resolve():
            raise DataError("distill: the student must read the teacher's token ids; leave finetune.tokenizer unset "
                            "(students with another tokenizer are not supported yet)")
        ft = replace(ft, tokenizer=str(teacher_dir))
    _say(f"teacher {teacher_dir}: {teacher.model.cfg.n_layer} layers, d_model {teacher.model.cfg.d_model}, "
         f"labels {teacher.labels}; student from {ft.init}"
         + (f" keeping layers {ft.keep_layers}" if ft.keep_layers else "")
         + f"; loss {dc.alpha} × T² KL (T = {dc.temperature}) + {1 - dc.alpha:g} × CE")

    unlabeled = []
    if dc.transfer_file:
        task = get_task(ft.task)
        unlabeled = [replace(ex, label=None) for ex in
                     task.read(dc.transfer_file, ft.data.text_field, ft.data.label_field, need_label=False,
                               header=ft.data.csv_header)]
        unlabeled = subsample(unlabeled, dc.max_transfer_examples, seed + 1)
        _say(f"transfer set: {len(unlabeled)} unlabeled texts from {dc.transfer_file} (teacher soft labels only)")
    out = Path(dc.out_dir) if dc.out_dir else paths.finetune.root.parent / "distill"

    def loss(labels: list[str], device: torch.device, train: Encoded):
        if labels != teacher.labels:
            raise DataError(f"distill: the teacher's labels {teacher.labels} differ from the data's {labels}; "
                            "declare the same label set (finetune.data.labels) or use a matching teacher")
        if dc.teacher_logits == "cache" and dc.alpha > 0.0:
            cached = teacher_logits(teacher.model.to(device), train, teacher.specials.pad, out / "teacher_logits",
                                    str(teacher_dir.resolve()) + ":" + _teacher_stamp(teacher_dir), say=_say)
            teacher.model.cpu()
            return CachedTeacherLoss(cached, dc.temperature, dc.alpha)
        return TeacherLoss(teacher.model.to(device), dc.temperature, dc.alpha)

    summary = finetune(ft, model_cfg, paths, seed, name=name, resume=resume, overwrite=overwrite, progress=progress,
                       loss=loss, unlabeled=unlabeled)
    student = load_task_model(paths.finetune.best)
    sides = compare(dc, teacher.model.cpu().eval(), student.model.eval(),
                    lambda m: (lambda ids: m(ids, torch.ones_like(ids))))
    sides["student"]["val"] = summary["results"].get("val")
    note = (f"Student trained on {summary['train_examples']} labeled"
            + (f" + {len(unlabeled)} unlabeled (teacher soft labels only)" if unlabeled else "")
            + f" examples; teacher logits {dc.teacher_logits.replace('_', ' ')}. "
            "Evaluate the teacher on the same data with `lmforge evaluate` to compare quality.")
    sides["student"]["trained_on"] = {"labeled": summary["train_examples"], "unlabeled": len(unlabeled),
                                      "teacher_logits": dc.teacher_logits}
    record = write_report(dc, teacher_dir, sides, out, note)
    return {**summary, "distill": record}


def _teacher_stamp(folder: Path) -> str:
    """Identifies the teacher's weights: their checksum file when there is one, else size + mtime."""
    sums = folder / CHECKSUMS_FILE
    if sums.is_file():
        return hashlib.sha256(sums.read_bytes()).hexdigest()[:16]
    w = folder / "model.safetensors"
    return f"{w.stat().st_size}:{w.stat().st_mtime_ns}" if w.is_file() else "unknown"


def distill_causal_lm(dc: DistillConfig, pt: PretrainConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *,
                      resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
    if dc.transfer_file or dc.teacher_logits == "cache":
        raise DataError("distill.transfer_file and distill.teacher_logits: cache are for classifier teachers; a causal "
                        "LM student learns from pretrain.data_dir with the teacher on the fly (its logits are "
                        "vocabulary-sized: caching them would take seq_len × vocab floats per window)")
    teacher = load_language_model(dc.teacher)
    if not teacher.causal or not isinstance(teacher.model, LanguageModel):
        raise DataError(f"distill.teacher {teacher.source} is an encoder; language-model distillation needs a causal "
                        "LM teacher (a decoder pretrain folder or an HF GPT-2/Llama folder)")
    if pt.objective != "clm":
        raise DataError(f"distill from a causal LM trains with pretrain.objective: clm (got {pt.objective})")
    tokens = paths.pretrain_tokens
    train = PackedDataset(tokens, "train")
    _check_vocabulary(teacher.tokenizer_dir, teacher.cfg.vocab_size, tokens, train.index["vocab_size"])
    start = None
    if dc.keep_layers is not None:
        student_cfg = replace(teacher.cfg, n_layer=len(dc.keep_layers))

        def start(model: LanguageModel) -> None:
            import copy

            donor = copy.deepcopy(teacher.model)
            keep_layers(donor, dc.keep_layers, "distill.keep_layers")
            model.load_state_dict(donor.state_dict())
    else:
        student_cfg = model_cfg
    _say(f"teacher {teacher.source}: decoder, {teacher.cfg.n_layer} layers, d_model {teacher.cfg.d_model}; student "
         + (f"keeps teacher layers {dc.keep_layers}" if dc.keep_layers else
            f"at random: {student_cfg.n_layer} layers, d_model {student_cfg.d_model}")
         + f"; loss {dc.alpha} × T² KL (T = {dc.temperature}) + {1 - dc.alpha:g} × next-token CE on {tokens}")
    summary = pretrain(pt, student_cfg, paths, seed, resume=resume, overwrite=overwrite, progress=progress,
                       loss=CausalTeacherLoss(teacher.model, dc.temperature, dc.alpha), start=start, name="distill")
    if int(os.environ.get("RANK", "0")) != 0:
        return summary
    student, _ = load_checkpoint_model(paths.pretrain.root, prefer="best")
    val = PackedDataset(tokens, "val")
    n = min(len(val), pt.eval_batches * pt.batch_size)
    sides = compare(dc, teacher.model.cpu().eval(), student, lambda m: (lambda ids: m(ids)))
    for side, m in (("teacher", teacher.model), ("student", student)):  # pretrain's own validation, on both
        ev = validate(m, val, CausalLM(), pt, Dist(), Precision(torch.device("cpu"), "fp32"))
        sides[side]["val"] = {"val_loss": round(ev["val_loss"], 4), "val_ppl": round(ev["val_ppl"], 3), "windows": n}
    note = f"Both sides scored on the first {n} validation windows of {tokens} (next-token loss, perplexity)."
    _say(f"val perplexity: teacher {sides['teacher']['val']['val_ppl']}, student {sides['student']['val']['val_ppl']}")
    record = write_report(dc, teacher.source, sides, paths.pretrain.root.parent / "distill", note)
    return {**summary, "distill": record}


def _check_vocabulary(teacher_tok: Path, teacher_vocab: int, tokens: Path, data_vocab: int) -> None:
    """Logit distillation needs the teacher to read the shards' ids: one vocabulary."""
    hint = ("logit distillation of a causal LM needs one vocabulary: prepare pretrain.data_dir with the teacher's "
            f"tokenizer (tokenizer.path: {teacher_tok}). Sequence-level distillation (the student trains on the "
            "teacher's generations) is not supported yet")
    if teacher_vocab != data_vocab:
        raise DataError(f"distill: the teacher has {teacher_vocab} token ids, the shards in {tokens} "
                        f"{data_vocab}; {hint}")
    data_tok = tokenizer_of_tokens(tokens)
    if data_tok is None or not data_tok.is_dir():
        return  # sizes match; nothing more to compare
    if load_folder(data_tok)[0].get_vocab() != load_folder(teacher_tok)[0].get_vocab():
        raise DataError(f"distill: the shards in {tokens} were tokenized with {data_tok}, whose vocabulary differs "
                        f"from the teacher's ({teacher_tok}); {hint}")


def compare(dc: DistillConfig, teacher: torch.nn.Module, student: torch.nn.Module,
            forward: Callable[[torch.nn.Module], Callable[[torch.Tensor], object]]) -> dict:
    """Layers, parameters and CPU latency (batch 1 and 32) of both sides."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    emb = lambda m: sum(p.numel() for n, p in m.named_parameters() if ".embed." in n or n.startswith("body.embed"))  # noqa: E731
    vocab = teacher.cfg.vocab_size
    sides = {}
    for side, m in (("teacher", teacher), ("student", student)):
        sides[side] = {"layers": m.cfg.n_layer, "params": count(m), "non_embedding_params": count(m) - emb(m),
                       "latency_ms_batch1": latency_ms(forward(m), 1, dc.latency_length, vocab),
                       "latency_ms_batch32": latency_ms(forward(m), 32, dc.latency_length, vocab)}
    return sides


def write_report(dc: DistillConfig, teacher_dir: Path, sides: dict, default_out: Path, note: str) -> dict:
    record = {"teacher": str(teacher_dir), "temperature": dc.temperature, "alpha": dc.alpha, **sides,
              "speedup_batch32": round(sides["teacher"]["latency_ms_batch32"] / sides["student"]["latency_ms_batch32"], 2),
              "non_embedding_param_ratio": round(sides["student"]["non_embedding_params"]
                                                 / max(1, sides["teacher"]["non_embedding_params"]), 3)}
    out = Path(dc.out_dir) if dc.out_dir else default_out
    out.mkdir(parents=True, exist_ok=True)
    (out / "distill.json").write_text(json.dumps(record, indent=2))
    rows = ["| | layers | params | non-embedding | batch-1 ms | batch-32 ms |", "|---|---:|---:|---:|---:|---:|"]
    for side in ("teacher", "student"):
        s = sides[side]
        rows.append(f"| {side} | {s['layers']} | {s['params']:,} | {s['non_embedding_params']:,} | "
                    f"{s['latency_ms_batch1']} | {s['latency_ms_batch32']} |")
    (out / "report.md").write_text("\n".join(
        [f"# Distillation from {teacher_dir}", "", f"Loss: {dc.alpha} × T² KL (T = {dc.temperature}) + "
         f"{1 - dc.alpha:g} × cross-entropy.", "", *rows, "",
         *[f"{side.capitalize()} on val: {json.dumps(sides[side]['val'])}" for side in ("teacher", "student")
           if sides[side].get("val")], "", note, ""]))
    _say(f"student: {sides['student']['params']:,} params ({record['non_embedding_param_ratio']:.0%} of the teacher's "
         f"non-embedding parameters), {record['speedup_batch32']}× faster at batch 32 → {out / 'report.md'}")
    return record
