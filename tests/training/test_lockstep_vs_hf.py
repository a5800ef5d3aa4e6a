"""Fine-tuning math against Hugging Face at a tiny size: the same BERT classifier trained in lockstep
(same batches, dropout off) by our optimizer groups, schedule and clipping and by a plain HF setup
(AdamW with HF's decay groups, get_linear_schedule_with_warmup) gives the same losses step by step."""

import math

import torch


def test_lockstep_fine_tuning_matches_hf(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification, get_linear_schedule_with_warmup

    from lmforge.models.hf_tasks import classifier_from_hf
    from lmforge.training.optim import apply_lr, build_optimizer, param_groups
    from lmforge.training.schedules import WarmupDecay

    torch.manual_seed(0)
    hf = BertForSequenceClassification(BertConfig(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=64, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2}))
    hf.save_pretrained(str(tmp_path / "hf"))
    ours, labels, _ = classifier_from_hf(tmp_path / "hf")
    assert labels == ["a", "b", "c"]
    ours.dropout.p = 0.0
    steps, lr, wd, warm = 12, 3e-3, 0.01, 2
    groups, _ = param_groups(ours, lr, wd, head_prefixes=("classifier", "pooler"))
    opt_o = build_optimizer(groups, "adamw", lr, (0.9, 0.999), eps=1e-8)
    sched_o = WarmupDecay(warm, steps, "linear", 0.0, ramp="from_zero")
    no_decay = ("bias", "LayerNorm.weight")
    opt_h = torch.optim.AdamW(
        [{"params": [p for n, p in hf.named_parameters() if not n.endswith(no_decay)], "weight_decay": wd},
         {"params": [p for n, p in hf.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.999), eps=1e-8)
    sched_h = get_linear_schedule_with_warmup(opt_h, warm, steps)
    ours.train()
    hf.train()
    g = torch.Generator().manual_seed(1)
    for step in range(steps):
        ids = torch.randint(5, 120, (8, 20), generator=g)
        mask = (torch.arange(20)[None] < torch.randint(6, 21, (8, 1), generator=g)).long()  # right padding
        ids = ids * mask
        y = torch.randint(0, 3, (8,), generator=g)
        apply_lr(opt_o, sched_o, step)
        logits, _ = ours(ids, mask)
        loss_o = torch.nn.functional.cross_entropy(logits, y)
        opt_o.zero_grad()
        loss_o.backward()
        torch.nn.utils.clip_grad_norm_(ours.parameters(), 1.0)
        opt_o.step()
        out = hf(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=y)
        opt_h.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(hf.parameters(), 1.0)
        opt_h.step()
        sched_h.step()
        assert math.isclose(loss_o.item(), out.loss.item(), abs_tol=1e-5), (step, loss_o.item(), out.loss.item())
    assert loss_o.item() < math.log(3)  # it trained
