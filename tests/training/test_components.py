"""Schedules, parameter groups, batch plans and MLM masking."""

import numpy as np
import torch

from lmforge.models.config import ModelConfig
from lmforge.models.transformer import build_decoder_lm
from lmforge.training.batches import BatchPlan, mask_tokens
from lmforge.training.config import PretrainConfig
from lmforge.training.optim import lr_at, param_groups


def test_warmup_then_cosine_to_min():
    cfg = PretrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    lrs = [lr_at(s, cfg) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3
    assert abs(lrs[10] - 1e-3) < 1e-9 and abs(lrs[99] - 1e-4) < 1e-6 and lrs[110] == 1e-4
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100]))


def test_no_decay_on_norms_biases_embeddings():
    m = build_decoder_lm(ModelConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    groups, decayed = param_groups(m, PretrainConfig())
    assert all(p.ndim == 2 for p in groups[0]["params"])
    ids = {id(p) for p in groups[0]["params"]}
    assert id(m.body.embed.tok.weight) not in ids and id(m.body.embed.pos.weight) not in ids
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in m.parameters())


class FakeDS:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def window(self, i):
        return np.array([i, i], dtype=np.uint16)


def test_batch_plan_one_process_accum_equals_two_ranks():
    ds = FakeDS(37)
    one = BatchPlan(ds, micro=3, accum=2, world=1, rank=0, seed=5)
    r0 = BatchPlan(ds, micro=3, accum=1, world=2, rank=0, seed=5)
    r1 = BatchPlan(ds, micro=3, accum=1, world=2, rank=1, seed=5)
    for step in range(20):  # crosses epochs
        assert np.array_equal(one.indices(step, 0), r0.indices(step, 0))
        assert np.array_equal(one.indices(step, 1), r1.indices(step, 0))
    seen = np.concatenate([one.indices(s, a) for s in range(7) for a in range(2)])[:37]
    assert sorted(seen.tolist()) == list(range(37))  # one epoch = each window once


def test_mlm_masking_80_10_10_and_deterministic():
    ids = torch.randint(7, 1000, (64, 128))
    inp, lab = mask_tokens(ids, 4, 1000, [0, 1, 2, 3, 4, 5, 6], 0.15, seed=1, step=3, micro_index=0, rank=0)
    inp2, lab2 = mask_tokens(ids, 4, 1000, [0, 1, 2, 3, 4, 5, 6], 0.15, seed=1, step=3, micro_index=0, rank=0)
    assert torch.equal(inp, inp2) and torch.equal(lab, lab2)
    t = lab != -100
    assert abs(t.float().mean().item() - 0.15) < 0.01
    masked = (inp == 4) & t
    assert abs(masked.sum().item() / t.sum().item() - 0.8) < 0.03
    unchanged = (inp == ids) & t
    assert abs(unchanged.sum().item() / t.sum().item() - 0.1) < 0.03
    assert torch.equal(lab[t], ids[t])


def test_sgd_option_and_linear_schedule():
    from lmforge.training.optim import build_optimizer

    m = build_decoder_lm(ModelConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    cfg = PretrainConfig(optimizer="sgd", momentum=0.8, schedule="linear", lr=1.0, min_lr=0.0, warmup_steps=0,
                         max_steps=10)
    opt, _ = build_optimizer(m, cfg, torch.device("cpu"))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.8
    assert [round(lr_at(s, cfg), 3) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]


def test_sampling_filters():
    from lmforge.training.generate import sample_next

    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9]])
    assert all(sample_next(logits, 1.0, 1, None, g).item() == 1 for _ in range(20))  # top-k 1 = greedy
    assert all(sample_next(logits, 1.0, None, 0.01, g).item() == 1 for _ in range(20))  # tiny top-p = greedy
    picks = {sample_next(logits, 1.0, 2, None, g).item() for _ in range(200)}
    assert picks == {1, 3}  # top-k 2 keeps the two best
    assert sample_next(logits, 0.0, None, None, g).item() == 1  # temperature 0 = argmax
