"""MLM pretraining step: the head on the masked positions only (lmforge's encoder) vs the head on
every position with the unscored ones ignored in the loss (what lmforge did before, and what
HF's ``BertForMaskedLM`` does).

    python benchmarks/bench_mlm_head.py [--preset bert-mini --vocab 8000 --seq 64 --batch 32 --steps 20]

Same model weights, same batches and masks (15 %, BERT's 80/10/10), one process: the two
variants alternate step by step (AdamW step included), so machine noise hits both alike. Prints
the median ms per training step of each, the ratio, and the largest loss difference over the
steps (the two compute the same loss on the same masked tokens).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from lmforge.models.config import ModelConfig, resolve
from lmforge.models.transformer import build_encoder_mlm
from lmforge.training.objectives import mask_tokens


def full_head_loss(model, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model.head(model.body(inputs))  # (B, T, V): every position through the vocabulary projection
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), labels.reshape(-1), ignore_index=-100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="bert-mini")
    ap.add_argument("--vocab", type=int, default=8000)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = resolve(ModelConfig(preset=args.preset, vocab_size=args.vocab, max_seq_len=max(args.seq, 128)))
    masked = build_encoder_mlm(cfg)
    full = copy.deepcopy(masked)
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in (("masked", masked), ("full", full))}
    times: dict[str, list[float]] = {"masked": [], "full": []}
    diffs = []
    for step in range(args.steps + 2):  # the first two steps warm up and are not timed
        ids = torch.randint(10, args.vocab, (args.batch, args.seq))
        inputs, labels = mask_tokens(ids, 4, args.vocab, list(range(10)), 0.15, seed=0, step=step, micro_index=0, rank=0)
        losses = {}
        for name in (("masked", "full") if step % 2 else ("full", "masked")):
            model, opt = (masked, opts["masked"]) if name == "masked" else (full, opts["full"])
            t = time.perf_counter()
            loss = model(inputs, labels)[1] if name == "masked" else full_head_loss(model, inputs, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step >= 2:
                times[name].append(time.perf_counter() - t)
            losses[name] = loss.item()
        diffs.append(abs(losses["masked"] - losses["full"]))
    ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    print(json.dumps({"preset": args.preset, "vocab": args.vocab, "seq": args.seq, "batch": args.batch,
                      "threads": args.threads, "ms_per_step_masked_only": round(ms["masked"], 1),
                      "ms_per_step_full_head": round(ms["full"], 1),
                      "speedup": round(ms["full"] / ms["masked"], 3), "max_loss_diff": max(diffs),
                      "params": sum(p.numel() for p in masked.parameters())}))


if __name__ == "__main__":
    main()
