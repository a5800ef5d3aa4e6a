"""nanoGPT's CPU reference setup on character-level tinyshakespeare: lmforge vs HF GPT2LMHeadModel.

Both sides: 4 layers, 4 heads, 128 dim, block 64, batch 12, dropout 0, GPT-2 architecture
(learned positions, pre-LayerNorm, biases, tied embeddings) with nanoGPT's exact GELU
(``--act gelu_tanh`` for GPT-2's approximation), AdamW lr 1e-3,
betas (0.9, 0.99), weight decay 0.1 on matrices, 100 warmup steps, cosine to 1e-4 over 2000
iterations, clip 1.0; batches of random 64-character windows (x = data[i:i+64],
y = data[i+1:i+65]) from the first 90% of the text, the same batches for both sides; val loss
on 20 batches of the last 10%. The loop code is shared; only the model differs. The sides
step in turn (A B, B A, ...) on each batch, so load from other processes on this shared
machine falls on both alike; ms/iter is the median over iterations 10+.

    python benchmarks/bench_pretrain_cpu.py [--iters 2000] [--sides lmforge,hf,lmforge-compiled]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
PEAK = 128e9  # fp32 FLOP/s of the 2-core AVX2-FMA reference machine


def load_data():
    text = DATA.read_text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(0.9 * len(ids))
    return torch.from_numpy(ids[:n]), torch.from_numpy(ids[n:]), len(chars)


def batches(data: torch.Tensor, n: int, batch: int, block: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        ix = torch.randint(len(data) - block, (batch,), generator=g)
        yield torch.stack([data[i:i + block] for i in ix]), torch.stack([data[i + 1:i + 1 + block] for i in ix])


ACT = "gelu"  # nanoGPT's MLP uses exact GELU (nn.GELU()); --act gelu_tanh for GPT-2's approximation


def build(side: str, vocab: int):
    torch.manual_seed(1337)
    if side.startswith("hf"):
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=128, n_layer=4, n_head=4, resid_pdrop=0.0,
                         embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa",
                         activation_function="gelu" if ACT == "gelu" else "gelu_new")
        m = GPT2LMHeadModel(cfg)
        m.config.use_cache = False
        fwd = lambda x: m(x).logits  # noqa: E731
    else:
        from lmforge.models.config import ModelConfig
        from lmforge.models.transformer import build_decoder_lm

        m = build_decoder_lm(ModelConfig(vocab_size=vocab, n_layer=4, n_head=4, d_model=128, max_seq_len=64,
                                         dropout=0.0, mlp=ACT))
        fwd = lambda x: m(x)[0]  # noqa: E731
    if side.endswith("compiled"):
        fwd = torch.compile(fwd)
    return m, fwd


class Side:
    """One model with its optimizer, stepping on the shared batches."""

    def __init__(self, name: str, vocab: int):
        from lmforge.training.config import PretrainConfig
        from lmforge.training.optim import build_optimizer, param_groups
        from lmforge.training.schedules import WarmupDecay

        self.name, self.vocab = name, vocab
        self.model, self.fwd = build(name, vocab)
        self.p = PretrainConfig(lr=1e-3, min_lr=1e-4, betas=[0.9, 0.99], weight_decay=0.1, warmup_steps=100,
                                max_steps=2000, decay_steps=2000, schedule="cosine")
        p = self.p
        self.opt = build_optimizer(param_groups(self.model, p.lr, p.weight_decay)[0], p.optimizer, p.lr, tuple(p.betas))
        self.schedule = WarmupDecay(p.warmup_steps, p.decay_steps, p.schedule, p.min_lr, ramp="nanogpt")
        self.model.train()
        self.times: list[float] = []

    def step(self, it: int, x: torch.Tensor, y: torch.Tensor) -> None:
        from lmforge.training.optim import apply_lr

        t = time.perf_counter()
        apply_lr(self.opt, self.schedule, it)
        loss = F.cross_entropy(self.fwd(x).reshape(-1, self.vocab), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.times.append(time.perf_counter() - t)

    @torch.no_grad()
    def result(self, val, iters: int) -> dict:
        self.model.eval()
        vl = [F.cross_entropy(self.fwd(x).reshape(-1, self.vocab), y.reshape(-1)).item()
              for x, y in batches(val, 20, 12, 64, seed=1)]
        steady = self.times[10:] if len(self.times) > 20 else self.times
        ms = 1000 * float(np.median(steady))
        n_params = sum(q.numel() for q in self.model.parameters())
        tokens_per_s = 12 * 64 / (ms / 1000)
        flops_tok = 6 * n_params + 12 * 4 * 128 * 64
        return {"side": self.name, "iters": iters, "ms_per_iter_median": ms,
                "ms_per_iter_mean": 1000 * float(np.mean(steady)), "tokens_per_s": tokens_per_s,
                "val_loss": float(np.mean(vl)), "params": n_params, "fraction_of_peak": tokens_per_s * flops_tok / PEAK,
                "total_s": float(np.sum(self.times))}


def run_interleaved(names: list[str], iters: int, train, val, vocab: int) -> list[dict]:
    """All sides step in turn on the same batch, so machine noise hits every side alike."""
    sides = [Side(n, vocab) for n in names]
    for it, (x, y) in enumerate(batches(train, iters, 12, 64, seed=0)):
        for s in (sides if it % 2 == 0 else sides[::-1]):
            s.step(it, x, y)
    return [s.result(val, iters) for s in sides]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--sides", default="lmforge,hf")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None)
    ap.add_argument("--act", default="gelu", choices=["gelu", "gelu_tanh"])
    args = ap.parse_args()
    global ACT
    ACT = args.act
    torch.set_num_threads(args.threads)
    train, val, vocab = load_data()
    results = run_interleaved(args.sides.split(","), args.iters, train, val, vocab)
    for r in results:
        print(json.dumps(r), flush=True)
    print(f"\n{'side':<18}{'ms/iter':>9}{'tok/s':>9}{'val loss':>10}{'% peak':>8}")
    for r in results:
        print(f"{r['side']:<18}{r['ms_per_iter_median']:>9.1f}{r['tokens_per_s']:>9.0f}{r['val_loss']:>10.4f}"
              f"{100 * r['fraction_of_peak']:>7.1f}%")
    for a in results:
        for b in results:
            if a["side"].startswith("lmforge") and b["side"].startswith("hf"):
                print(f"tokens/s ratio {a['side']} / {b['side']}: {a['tokens_per_s'] / b['tokens_per_s']:.2f}x")
        if a["side"].startswith("lmforge"):
            print(f"tokens/s ratio {a['side']} / nanoGPT reference 7,700 tok/s: {a['tokens_per_s'] / 7700:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
