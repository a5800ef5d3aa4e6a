"""Pretraining objectives: what a batch of packed windows becomes (inputs, labels) and what an
evaluation reports beyond the loss.

* :class:`CausalLM` (``clm``) — next-token prediction on a decoder; inputs = labels = the window
  (the model shifts).
* :class:`MaskedLM` (``mlm``) — BERT masking on an encoder; masks come from a generator seeded by
  (seed, step, micro-batch, rank), so no RNG state is needed to resume; validation uses fixed
  masks (seed + 1) so evaluations are comparable.
* :class:`ReplacedTokens` (``rtd``) — ELECTRA: the same masks feed a small generator, and the
  encoder kept (the discriminator) learns from every position whether its token was replaced.

Each objective also builds the model it trains (``build_model``).
"""

from __future__ import annotations

import numpy as np
import torch

from lmforge.errors import TrainingError
from lmforge.models.config import ModelConfig


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids: list[int], prob: float,
                seed: int, step: int, micro_index: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``prob`` of non-special tokens are targets; of those 80% → [MASK],
    10% → a random token, 10% unchanged. Returns (inputs, labels with -100 elsewhere)."""
    g = torch.Generator().manual_seed(hash((seed, step, micro_index, rank)) & ((1 << 62) - 1))
    labels = ids.clone()
    can = torch.ones_like(ids, dtype=torch.bool)
    for s in special_ids:
        can &= ids != s
    target = (torch.rand(ids.shape, generator=g) < prob) & can
    labels[~target] = -100
    inputs = ids.clone()
    r = torch.rand(ids.shape, generator=g)
    inputs[target & (r < 0.8)] = mask_id
    rand_pos = target & (r >= 0.8) & (r < 0.9)
    inputs[rand_pos] = torch.randint(0, vocab_size, ids.shape, generator=g)[rand_pos]
    return inputs, labels


class CausalLM:
    """Next-token prediction: the window is both input and target (the model shifts)."""

    name = "clm"
    arch = "decoder"

    def build_model(self, cfg: ModelConfig):
        from lmforge.models.transformer import build_decoder_lm

        return build_decoder_lm(cfg)

    def train_batch(self, ids: torch.Tensor, step: int, micro: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ids, ids

    def eval_batch(self, ids: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        return ids, ids

    def eval_counts(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
        return 0, 0

    def eval_extra(self, correct: int, total: int) -> dict:
        return {}


class MaskedLM:
    """BERT masking with seeded, stateless masks; reports masked-token accuracy."""

    name = "mlm"
    arch = "encoder"

    def __init__(self, special: dict, vocab_size: int, prob: float, seed: int):
        if special.get("mask") is None:
            raise TrainingError("pretrain.objective=mlm needs a mask token in the tokenizer "
                               "(tokenizer.special_tokens.mask)")
        self.mask_id, self.vocab_size, self.prob, self.seed = special["mask"], vocab_size, prob, seed
        self.specials = [v for k, v in special.items() if v is not None and k != "unk"]

    def build_model(self, cfg: ModelConfig):
        from lmforge.models.transformer import build_encoder_mlm

        return build_encoder_mlm(cfg)

    def train_batch(self, ids: torch.Tensor, step: int, micro: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(ids, self.mask_id, self.vocab_size, self.specials, self.prob, self.seed, step, micro, rank)

    def eval_batch(self, ids: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        return mask_tokens(ids.cpu(), self.mask_id, self.vocab_size, self.specials, self.prob, self.seed + 1, 0,
                           offset, 0)

    def eval_counts(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
        """``logits`` (N, V) of the scored positions (the encoder's output with labels) or (B, T, V)."""
        m = labels != -100
        pred = logits.argmax(-1) if logits.dim() == 2 else logits.argmax(-1)[m]
        return int((pred == labels[m]).sum()), int(m.sum())

    def eval_extra(self, correct: int, total: int) -> dict:
        return {"val_masked_acc": correct / max(total, 1)}


class ReplacedTokens(MaskedLM):
    """ELECTRA's replaced-token detection: MLM masks for the generator, a per-position binary
    loss for the discriminator. Reports the generator's masked accuracy, the discriminator's
    accuracy over all positions and its recall on the replaced ones."""

    name = "rtd"

    def __init__(self, special: dict, vocab_size: int, prob: float, seed: int, generator_ratio: float,
                 disc_weight: float):
        super().__init__(special, vocab_size, prob, seed)
        self.generator_ratio, self.disc_weight = generator_ratio, disc_weight

    def build_model(self, cfg: ModelConfig):
        from lmforge.models.electra import build_rtd

        return build_rtd(cfg, self.generator_ratio, self.disc_weight)

    def eval_counts(self, out, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        gen_c, gen_t = super().eval_counts(out.gen_logits, labels)
        said = out.disc_logits > 0
        right = int((said == out.replaced).sum())
        caught = int((said & out.replaced).sum())
        return np.array([gen_c, right, caught]), np.array([gen_t, out.replaced.numel(), int(out.replaced.sum())])

    def eval_extra(self, correct, total) -> dict:
        c, t = np.asarray(correct), np.maximum(np.asarray(total), 1)
        return {"val_masked_acc": float(c[0] / t[0]), "val_disc_acc": float(c[1] / t[1]),
                "val_replaced_recall": float(c[2] / t[2])}


def build_objective(name: str, special: dict, vocab_size: int, mlm_probability: float, seed: int,
                    generator_ratio: float = 0.25, disc_weight: float = 50.0):
    """The objective object for ``pretrain.objective``."""
    if name == "clm":
        return CausalLM()
    if name == "rtd":
        return ReplacedTokens(special, vocab_size, mlm_probability, seed, generator_ratio, disc_weight)
    return MaskedLM(special, vocab_size, mlm_probability, seed)
