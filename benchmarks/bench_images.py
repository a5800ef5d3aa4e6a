"""Fashion-MNIST from scratch on CPU: lmforge's CNN vs the same network in a plain PyTorch loop.

    python benchmarks/bench_images.py [--epochs 12] [--threads 2]

1. ``lmforge data prepare configs/fashion_mnist.yaml`` (timed): the 60,000 train images minus a
   stratified 5,000 for validation, the official 10,000 test images as the test split.
2. lmforge: ``lmforge finetune fashion_mnist`` (CNN conv 32 → 64 with batch norm and pooling,
   FC 128, dropout 0.3; horizontal flip + shift augmentation; AdamW one-cycle — warmup then
   cosine — batch 128); training seconds and test accuracy from its summary.json.
3. The peer, in a subprocess of its own: the same layers written as an ``nn.Sequential``, the same
   prepared arrays (read with numpy), the same normalization, flips and integer shifts of up to 2
   pixels, Adam with ``OneCycleLR`` (same peak lr, warmup share, weight decay, epochs and batch),
   evaluated on the same test images. torchvision is not used: its PyPI build does not load beside
   the pinned CPU torch here, so the peer's augmentation is written with torch ops.

Prints one JSON line per side, then the ratio of training wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LMFORGE = [sys.executable, "-m", "lmforge.cli"]

PEER = r'''
import json, math, sys, time
import numpy as np, torch
from torch import nn
import torch.nn.functional as F

data, epochs, lr, wd, warm, bs, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
torch.manual_seed(seed)
man = json.load(open(f"{data}/manifest.json"))
mean, std = man["normalize"]["mean"][0], man["normalize"]["std"][0]
load = lambda s: (torch.from_numpy(np.load(f"{data}/images/{s}.images.npy")), torch.from_numpy(np.load(f"{data}/images/{s}.labels.npy")))
xtr, ytr = load("train"); xte, yte = load("test")

def block(i, o):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2)]
net = nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 7 * 7, 128, bias=False),
                    nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
steps = epochs * math.ceil(len(xtr) / bs)
opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=wd)
sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warm)

def augment(x):  # x float (B,1,28,28): random horizontal flip, random shift of up to 2 px (zero fill)
    flip = torch.rand(len(x)) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    p = F.pad(x, (2, 2, 2, 2))
    dx, dy = torch.randint(0, 5, (len(x),)), torch.randint(0, 5, (len(x),))
    rows = (dy[:, None] + torch.arange(28))[:, :, None].expand(-1, 28, 28)
    cols = (dx[:, None] + torch.arange(28))[:, None, :].expand(-1, 28, 28)
    return p[torch.arange(len(x))[:, None, None], 0, rows, cols][:, None]

t0 = time.time()
net.train()
for epoch in range(epochs):
    perm = torch.randperm(len(xtr))
    for i in range(0, len(xtr), bs):
        idx = perm[i:i + bs]
        if len(idx) < 2:
            continue
        x = (augment(xtr[idx].float() / 255) - mean) / std
        loss = F.cross_entropy(net(x), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
train_s = time.time() - t0
net.eval()
with torch.no_grad():
    pred = torch.cat([net((xte[i:i + 1000].float() / 255 - mean) / std).argmax(1) for i in range(0, len(xte), 1000)])
print(json.dumps({"side": "pytorch", "train_seconds": round(train_s, 1), "test_accuracy": float((pred == yte).float().mean()),
                  "params": sum(p.numel() for p in net.parameters())}))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sides", default="lmforge,pytorch")
    ap.add_argument("--run-dir", default=str(ROOT / "benchmarks" / "work" / "fashion_mnist"))
    args = ap.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    sets = [f"run_dir={args.run_dir}", f"finetune.loop.epochs={args.epochs}", f"finetune.loop.threads={args.threads}"]
    data = Path(args.run_dir) / "data"
    if not (data / "manifest.json").is_file():
        t = time.time()
        subprocess.run([*LMFORGE, "data", "prepare", "fashion_mnist", "--no-progress", *sum((["--set", s] for s in sets), [])],
                       check=True, cwd=ROOT, env=env)
        print(json.dumps({"step": "data prepare", "seconds": round(time.time() - t, 1)}), flush=True)
    out = {}
    for side in args.sides.split(","):
        if side == "lmforge":
            subprocess.run([*LMFORGE, "finetune", "fashion_mnist", "--no-progress", "--overwrite",
                            *sum((["--set", s] for s in sets), [])], check=True, cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL)
            s = json.loads((Path(args.run_dir) / "finetune" / "summary.json").read_text())
            out[side] = {"side": "lmforge", "train_seconds": round(s["train_seconds"], 1),
                         "test_accuracy": s["results"]["test"]["accuracy"], "val_accuracy": s["results"]["val"]["accuracy"],
                         "params": s["params"], "best_step": s["best_step"], "steps": s["steps"]}
        else:
            from lmforge.config.experiment import load_config

            o = load_config("fashion_mnist").finetune.optim
            r = subprocess.run([sys.executable, "-c", PEER, str(data), str(args.epochs), str(o.lr), str(o.weight_decay),
                                str(o.warmup_ratio), "128", "1234"], check=True, cwd=ROOT, env=env,
                               capture_output=True, text=True)
            out[side] = json.loads(r.stdout.strip().splitlines()[-1])
        print(json.dumps({**out[side], "epochs": args.epochs, "threads": args.threads}), flush=True)
    if len(out) == 2:
        print(json.dumps({"wall_ratio_lmforge_over_pytorch": round(out["lmforge"]["train_seconds"] / out["pytorch"]["train_seconds"], 3),
                          "accuracy_delta": round(out["lmforge"]["test_accuracy"] - out["pytorch"]["test_accuracy"], 4)}))


if __name__ == "__main__":
    main()
