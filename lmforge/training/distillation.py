"""Knowledge distillation as a loss: a fine-tuning (or pretraining) run whose loss also pulls the
student's softened predictions toward a teacher's, on the same batch.

``loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)``
(Hinton et al.; the ``T^2`` keeps the soft term's gradients on the scale of the hard one).

* Sequence classification: the soft term covers every example of the batch, the hard term the
  examples that have a label — so unlabeled transfer texts (label -100) learn from the teacher alone.
* Token classification: both terms per token, over the positions that carry a label (the first
  sub-token of each word).
* Causal LM: the soft term at every position of the packed window, over the whole vocabulary,
  added to the student's next-token loss.

The teacher's logits come from one of two places:

* **on the fly** (:class:`TeacherLoss`): the teacher runs on each batch. It sees exactly the
  student's batch — padded or packed rows, positions, pooling index — so it must read the same
  token ids (the student uses the teacher's tokenizer). Costs a teacher forward pass per step and
  the teacher in memory for the whole run.
* **cached** (:func:`teacher_logits`, :class:`CachedTeacherLoss`; sequence classification): one
  teacher pass over the training set before training, kept on disk as float16 (N × labels) and
  memory-mapped; reused by reruns, ``--resume`` and tune trials on the same data. Pays off from the
  second epoch, or whenever the same set is distilled more than once; the teacher leaves memory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from lmforge.training.losses import classification_loss


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over rows (N, K)."""
    return F.kl_div(F.log_softmax(student.float() / temperature, -1), F.log_softmax(teacher.float() / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float,
            weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Logits (N, K) or (B, T, K). Per example (N, K): the soft term over every row, the hard term
    over rows with a label. Per token (B, T, K): both over the positions whose label is not -100."""
    K = student.size(-1)
    s, t, y = student.reshape(-1, K), teacher.reshape(-1, K), labels.reshape(-1)
    labeled = y != -100
    soft_rows = torch.ones_like(labeled) if student.dim() == 2 else labeled
    soft = soft_loss(s[soft_rows], t[soft_rows], temperature)
    if alpha >= 1.0 or not bool(labeled.any()):
        return soft if alpha > 0.0 else soft * 0.0
    return alpha * soft + (1.0 - alpha) * classification_loss(student, labels, weight)


class TeacherLoss:
    """The loss of a distillation run: the teacher runs on each batch without gradients."""

    def __init__(self, teacher: torch.nn.Module, temperature: float, alpha: float):
        self.teacher, self.temperature, self.alpha = teacher.eval(), temperature, alpha

    def __call__(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        if self.alpha == 0.0:  # labels only: the teacher's forward pass would be wasted
            return classification_loss(logits, batch["labels"], None)
        with torch.no_grad():
            t, _ = self.teacher(batch["ids"], batch["attention_mask"], positions=batch.get("positions"),
                                pool_index=batch.get("pool_index"))
        return kd_loss(logits, t, batch["labels"], self.temperature, self.alpha)


class CachedTeacherLoss:
    """Like :class:`TeacherLoss`, with the teacher's logits looked up by example (``batch["index"]``)."""

    def __init__(self, logits: np.ndarray, temperature: float, alpha: float):
        self.logits, self.temperature, self.alpha = logits, temperature, alpha

    def __call__(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        idx = batch["index"].cpu().numpy()
        t = torch.from_numpy(np.asarray(self.logits[idx], dtype=np.float32)).to(logits.device)
        return kd_loss(logits, t, batch["labels"], self.temperature, self.alpha)


def _fingerprint(enc, teacher_id: str) -> str:
    h = hashlib.sha256(teacher_id.encode())
    for ids in enc.ids:
        h.update(np.asarray(ids, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()


@torch.inference_mode()
def teacher_logits(teacher: torch.nn.Module, enc, pad_id: int, cache: Path, teacher_id: str,
                   batch_size: int = 64, say=print) -> np.ndarray:
    """The teacher's logits (N, K) for every example of ``enc`` (a sequence task's encoded set),
    from ``cache`` (``teacher_logits.npy`` + ``.json``) when it was made for these exact token ids
    and this teacher, else computed in length-sorted batches and written there (float16)."""
    from lmforge.tasks.batching import collate

    meta_path, arr_path = cache.with_suffix(".json"), cache.with_suffix(".npy")
    key = _fingerprint(enc, teacher_id)
    if meta_path.is_file() and arr_path.is_file():
        try:
            if json.loads(meta_path.read_text()).get("fingerprint") == key:
                arr = np.load(arr_path, mmap_mode="r")
                if arr.shape[0] == len(enc):
                    say(f"teacher logits: reusing {arr_path} ({arr.shape[0]} examples)")
                    return arr
        except (OSError, ValueError, json.JSONDecodeError):
            pass  # unreadable: recompute
    teacher = teacher.eval()
    device = next(teacher.parameters()).device
    order = np.argsort([len(x) for x in enc.ids], kind="stable")
    out: Optional[np.ndarray] = None
    for b in range(0, len(order), batch_size):
        idx = order[b:b + batch_size]
        batch = {k: v.to(device) for k, v in collate(enc, idx, pad_id).items()}
        logits, _ = teacher(batch["ids"], batch["attention_mask"], pool_index=batch.get("pool_index"))
        if out is None:
            out = np.zeros((len(enc), logits.size(-1)), dtype=np.float16)
        out[idx] = logits.float().cpu().numpy().astype(np.float16)
    assert out is not None
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = arr_path.with_name(arr_path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, out)
    tmp.replace(arr_path)
    meta_path.write_text(json.dumps({"fingerprint": key, "teacher": teacher_id, "examples": len(enc),
                                     "labels": int(out.shape[1]), "dtype": "float16"}))
    say(f"teacher logits: {len(enc)} examples → {arr_path} ({arr_path.stat().st_size / 1e6:.1f} MB)")
    return np.load(arr_path, mmap_mode="r")


class CausalTeacherLoss:
    """The loss of a causal-LM distillation run (a ``pretrain`` loss hook): ``alpha`` × the soft
    term at every position + ``(1 - alpha)`` × the student's next-token loss."""

    def __init__(self, teacher: torch.nn.Module, temperature: float, alpha: float):
        self.teacher, self.temperature, self.alpha = teacher.eval(), temperature, alpha

    def __call__(self, logits: torch.Tensor, ids: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
        if self.alpha == 0.0:
            return ce
        self.teacher.to(logits.device)
        with torch.no_grad():
            t, _ = self.teacher(ids)
        soft = soft_loss(logits.reshape(-1, logits.size(-1)), t.reshape(-1, t.size(-1)), self.temperature)
        return soft if self.alpha >= 1.0 else self.alpha * soft + (1.0 - self.alpha) * ce
