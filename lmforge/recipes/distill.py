"""``lmforge distill``: a smaller student learns from a fine-tuned teacher.

One linear recipe on the fine-tuning recipe: load the teacher → the student starts from the
teacher with fewer layers (``finetune.init: <teacher>``, ``finetune.keep_layers: [0, 2, 4]``) or
at random with the teacher's tokenizer → ``finetune`` with the distillation loss
(:mod:`lmforge.training.distillation`) instead of plain cross-entropy → the same HF folder,
checkpoints and evaluation as any fine-tuning run → a comparison of teacher and student on the
validation set (metrics, parameters, CPU latency at batch 1 and 32) in ``<run>/distill/``.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from lmforge.errors import DataError
from lmforge.layout import RunPaths, task_model_dir
from lmforge.models.config import ModelConfig
from lmforge.models.load import load_task_model
from lmforge.recipes.finetune import finetune
from lmforge.training.distill_config import DistillConfig
from lmforge.training.distillation import TeacherLoss
from lmforge.training.finetune_config import FinetuneConfig


def _say(msg: str) -> None:
    print(f"[distill] {msg}", flush=True)


def latency_ms(model: torch.nn.Module, batch: int, length: int, vocab: int, calls: int = 20) -> float:
    """Median CPU time of one forward pass on random ids (batch, length)."""
    ids = torch.randint(5, vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    model = model.eval()
    times = []
    with torch.inference_mode():
        for i in range(calls + 3):
            t = time.perf_counter()
            model(ids, mask)
            if i >= 3:
                times.append(1000 * (time.perf_counter() - t))
    return round(statistics.median(times), 2)


def distill(dc: DistillConfig, ft: FinetuneConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *,
            name: str = "distill", resume: bool = False, overwrite: bool = False, progress: bool = True) -> dict:
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

    def loss(labels: list[str], device: torch.device):
        if labels != teacher.labels:
            raise DataError(f"distill: the teacher's labels {teacher.labels} differ from the data's {labels}; "
                            "declare the same label set (finetune.data.labels) or use a matching teacher")
        return TeacherLoss(teacher.model.to(device), dc.temperature, dc.alpha)

    summary = finetune(ft, model_cfg, paths, seed, name=name, resume=resume, overwrite=overwrite, progress=progress,
                       loss=loss)
    student = load_task_model(paths.finetune.best)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    emb = lambda m: sum(p.numel() for n, p in m.named_parameters() if ".embed." in n or n.startswith("body.embed"))  # noqa: E731
    vocab = teacher.model.cfg.vocab_size
    torch.set_num_threads(max(1, torch.get_num_threads()))
    sides = {}
    for side, m in (("teacher", teacher.model.cpu()), ("student", student.model)):
        sides[side] = {"layers": m.cfg.n_layer, "params": count(m), "non_embedding_params": count(m) - emb(m),
                       "latency_ms_batch1": latency_ms(m, 1, dc.latency_length, vocab),
                       "latency_ms_batch32": latency_ms(m, 32, dc.latency_length, vocab)}
    sides["student"]["val"] = summary["results"].get("val")
    record = {"teacher": str(teacher_dir), "temperature": dc.temperature, "alpha": dc.alpha, **sides,
              "speedup_batch32": round(sides["teacher"]["latency_ms_batch32"] / sides["student"]["latency_ms_batch32"], 2),
              "non_embedding_param_ratio": round(sides["student"]["non_embedding_params"]
                                                 / max(1, sides["teacher"]["non_embedding_params"]), 3)}
    out = Path(dc.out_dir) if dc.out_dir else paths.finetune.root.parent / "distill"
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
         f"Student on val: {json.dumps(sides['student']['val'])}", "",
         "Evaluate the teacher on the same data with `lmforge evaluate` to compare quality.", ""]))
    _say(f"student: {sides['student']['params']:,} params ({record['non_embedding_param_ratio']:.0%} of the teacher's "
         f"non-embedding parameters), {record['speedup_batch32']}× faster at batch 32 → {out / 'report.md'}")
    return {**summary, "distill": record}
