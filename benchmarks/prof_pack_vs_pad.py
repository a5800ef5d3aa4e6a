"""Where fine-tuning time goes for short vs long texts: one MiniLM training step (forward +
backward, 8 labels, 2 threads) on the same 32 examples as a packed batch (``pack: true``, rows of
128 with a block-diagonal mask; rows as long as the batch's longest example; rows of the length
``row_length`` picks, what ``pack: true`` uses), a padded batch of random examples, and a padded batch of
length-grouped examples (``bucket: true``; HF Trainer's ``group_by_length``). Median of 8 steps,
the layouts alternating.

    python benchmarks/prof_pack_vs_pad.py
"""
import time, statistics, json, numpy as np, torch, torch.nn.functional as F
from lmforge.training.finetune_config import FinetuneConfig
from lmforge.models.config import ModelConfig
from lmforge.training.starts import start_from
from lmforge.tasks.encoding import Encoded
from lmforge.tasks.batching import pack, collate, row_length
torch.set_num_threads(2)
st = start_from(FinetuneConfig(init="minilm"), ModelConfig(), [str(i) for i in range(8)], None)
model = st.model; model.train()
rng = np.random.default_rng(0)
def make(lengths):
    ids = [np.concatenate([[101], rng.integers(1000, 20000, n - 2), [102]]).astype(np.int64) for n in lengths]
    return Encoded(ids=ids, labels=[int(rng.integers(0, 8)) for _ in lengths])
def step(b):
    logits, _ = model(b["ids"], b["attention_mask"], positions=b.get("positions"), pool_index=b.get("pool_index"))
    loss = F.cross_entropy(logits, b["labels"]); model.zero_grad(); loss.backward()
for name, lengths in (("short", np.clip(rng.normal(17, 6, 32).round(), 6, 48).astype(int)),
                      ("long", np.clip(rng.normal(110, 25, 32).round(), 40, 128).astype(int)),
                      ("medium", np.clip(rng.normal(45, 15, 32).round(), 8, 128).astype(int))):
    enc = make(lengths); idx = np.arange(32)
    batches = {"packed": pack(enc, idx, 0, 128, False), "packed_longest": pack(enc, idx, 0, int(lengths.max()), False),
               "packed_auto": pack(enc, idx, 0, row_length(lengths.tolist(), 128, 384), False),
               "padded": collate(enc, idx, 0)}
    res = {}
    for _ in range(2):
        for k, b in batches.items(): step(b)
    t = {k: [] for k in batches}
    for r in range(8):
        for k, b in (batches.items() if r % 2 else reversed(list(batches.items()))):
            t0 = time.perf_counter(); step(b); t[k].append(time.perf_counter() - t0)
    shapes = {k: list(b["ids"].shape) for k, b in batches.items()}
    print(json.dumps({"texts": name, "mean_len": float(lengths.mean()), "shapes": shapes,
                      **{f"{k}_ms": round(1000 * statistics.median(v), 1) for k, v in t.items()}}))
# length-grouped (HF group_by_length / our bucket: true): 32 short texts of similar length, padded
lengths = np.sort(np.clip(rng.normal(17, 6, 256).round(), 6, 48).astype(int))[112:144]
enc = make(lengths); idx = np.arange(32)
b = collate(enc, idx, 0)
for _ in range(2): step(b)
ts = []
for _ in range(8):
    t0 = time.perf_counter(); step(b); ts.append(time.perf_counter() - t0)
print(json.dumps({"texts": "short, length-grouped", "shape": list(b["ids"].shape), "padded_ms": round(1000 * statistics.median(ts), 1)}))
