"""Knowledge distillation as a loss: a fine-tuning run whose loss also pulls the student's
softened predictions toward a teacher's, on the same batch.

``loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)``
(Hinton et al.; the ``T^2`` keeps the soft term's gradients on the scale of the hard one). For
token classification the KL is taken per token over the positions that carry a label (the first
sub-token of each word), like the cross-entropy. For a causal LM it is taken at every position
of the packed window, over the whole vocabulary, and added to the student's next-token loss. The
teacher sees exactly the student's batch — padded or packed rows, positions, pooling index — so
it must read the same token ids: the student uses the teacher's tokenizer.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.training.losses import classification_loss


def soft_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over rows (N, K)."""
    return F.kl_div(F.log_softmax(student.float() / temperature, -1), F.log_softmax(teacher.float() / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float,
            weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Logits (N, K) or (B, T, K); labels -100 are not scored (by either term)."""
    K = student.size(-1)
    s, t, y = student.reshape(-1, K).float(), teacher.reshape(-1, K).float(), labels.reshape(-1)
    keep = y != -100
    soft = soft_loss(s[keep], t[keep], temperature)
    if alpha >= 1.0:
        return soft
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
