"""Training library pieces: schedules, parameter groups, batch plans, MLM masking, early stopping."""

import numpy as np
import pytest
import torch

from lmforge.models.config import ModelConfig
from lmforge.models.transformer import build_decoder_lm
from lmforge.training.config import PretrainConfig
from lmforge.training.objectives import mask_tokens
from lmforge.training.optim import build_optimizer, param_groups
from lmforge.training.sampling import BatchPlan
from lmforge.training.schedules import WarmupDecay


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """The pretrain recipe's schedule for ``cfg``."""
    return WarmupDecay(cfg.warmup_steps, cfg.decay_steps or cfg.max_steps, cfg.schedule, cfg.min_lr, "nanogpt")(step, cfg.lr)


def test_warmup_then_cosine_to_min():
    cfg = PretrainConfig(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    lrs = [lr_at(s, cfg) for s in range(120)]
    assert lrs[0] < lrs[5] < lrs[9] <= 1e-3
    assert abs(lrs[10] - 1e-3) < 1e-9 and abs(lrs[99] - 1e-4) < 1e-6 and lrs[110] == 1e-4
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:100]))


def test_no_decay_on_norms_biases_embeddings():
    m = build_decoder_lm(ModelConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    groups, decayed = param_groups(m, 1e-3, 0.1)
    decay_group = [g for g in groups if g["weight_decay"] > 0][0]
    assert all(p.ndim == 2 for p in decay_group["params"])
    ids = {id(p) for p in decay_group["params"]}
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


def test_mlm_head_runs_on_scored_positions_only_with_the_same_loss_and_grads():
    """The encoder's head is applied to the masked positions alone: same loss and gradients as
    running it on every position and ignoring the unscored ones (what it did before)."""
    import torch.nn.functional as F

    from lmforge.models.config import ModelConfig
    from lmforge.models.transformer import build_encoder_mlm

    torch.manual_seed(0)
    model = build_encoder_mlm(ModelConfig(arch="encoder", vocab_size=300, n_layer=2, n_head=2, d_model=32,
                                          max_seq_len=64, mlp="gelu"))
    ids = torch.randint(7, 300, (4, 48))
    inp, lab = mask_tokens(ids, 4, 300, [0, 1, 2, 3, 4, 5, 6], 0.15, seed=1, step=0, micro_index=0, rank=0)
    logits, loss = model(inp, lab)
    assert logits.shape == (int((lab != -100).sum()), 300)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full = model.head(model.body(inp))  # (B, T, V): the head on every position
    ref = F.cross_entropy(full.reshape(-1, 300), lab.reshape(-1), ignore_index=-100)
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    assert torch.allclose(logits, full[lab != -100], atol=1e-5)
    for n, p in model.named_parameters():
        assert torch.allclose(grads[n], p.grad, atol=1e-6), n


def test_sgd_option_and_linear_schedule():
    m = build_decoder_lm(ModelConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    cfg = PretrainConfig(optimizer="sgd", momentum=0.8, schedule="linear", lr=1.0, min_lr=0.0, warmup_steps=0,
                         max_steps=10)
    opt = build_optimizer(param_groups(m, cfg.lr, cfg.weight_decay)[0], cfg.optimizer, cfg.lr, momentum=cfg.momentum)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.8
    assert [round(lr_at(s, cfg), 3) for s in (0, 5, 10)] == [1.0, 0.5, 0.0]


def test_decay_embeddings_option():
    m = build_decoder_lm(ModelConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8))
    _, decayed = param_groups(m, 1e-3, 0.1, decay_embeddings=True)
    ids = {id(p) for p in decayed}
    assert id(m.body.embed.tok.weight) in ids and id(m.body.embed.pos.weight) in ids
    assert all(p.ndim == 2 for p in decayed)  # norms and biases still not decayed


def test_head_params_get_their_own_lr():
    from lmforge.models.heads import build_classifier
    from lmforge.models.transformer import TransformerBody

    cfg = ModelConfig(arch="encoder", vocab_size=20, n_layer=1, n_head=1, d_model=8, max_seq_len=8)
    clf = build_classifier(cfg, TransformerBody(cfg, causal=False), "sequence", 3)
    groups, _ = param_groups(clf, 1e-4, 0.01, head_lr=1e-2, head_prefixes=("classifier", "pooler"))
    head = {id(p) for g in groups if g["lr"] == 1e-2 for p in g["params"]}
    assert head == {id(p) for p in list(clf.classifier.parameters()) + list(clf.pooler.parameters())}
    assert all(g["base_lr"] == g["lr"] for g in groups)


def test_finetune_schedule_starts_at_zero_and_decays_to_zero():
    s = WarmupDecay(4, 20, "linear", 0.0, "from_zero")
    assert s(0, 1.0) == 0.0 and s(2, 1.0) == 0.5 and s(4, 1.0) == 1.0 and s(19, 1.0) == pytest.approx(1 / 16)


def test_best_tracks_mode_patience_and_survives_a_state_round_trip():
    from lmforge.training.early_stopping import Best

    b = Best("min", patience=2)
    assert b.update(1.0, 10) and not b.update(1.0, 20) and not b.should_stop
    assert not b.update(2.0, 30) and b.should_stop and b.step == 10
    again = Best("min", patience=2)
    again.load_state_dict(b.state_dict())
    assert (again.value, again.step, again.bad_evals) == (1.0, 10, 2)
    old = Best("min")
    old.load_state_dict({"val_loss": 0.5, "name": "step_0000040", "bad_evals": 1})  # pre-refactor checkpoints
    assert (old.value, old.step) == (0.5, 40)
