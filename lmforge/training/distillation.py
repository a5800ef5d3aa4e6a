"""Knowledge distillation as a loss: a fine-tuning run whose loss also pulls the student's
softened predictions toward a teacher's, on the same batch.

``loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)``
(Hinton et al.; the ``T^2`` keeps the soft term's gradients on the scale of the hard one). For
token classification the KL is taken per token over the positions that carry a label (the first
sub-token of each word), like the cross-entropy. The teacher sees exactly the student's batch —
padded or packed rows, positions, pooling index — so it must read the same token ids: the
student uses the teacher's tokenizer.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from lmforge.training.losses import classification_loss


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float, alpha: float,
            weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Logits (N, K) or (B, T, K); labels -100 are not scored (by either term)."""
    K = student.size(-1)
    s, t, y = student.reshape(-1, K).float(), teacher.reshape(-1, K).float(), labels.reshape(-1)
    keep = y != -100
    soft = F.kl_div(F.log_softmax(s[keep] / temperature, -1), F.log_softmax(t[keep] / temperature, -1),
                    log_target=True, reduction="batchmean") * temperature ** 2
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
