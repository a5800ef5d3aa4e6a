"""Does masked-image pretraining pay off? Fashion-MNIST with 1,000 labels (issue 26 §4).

    python benchmarks/bench_mae.py [--steps 4000] [--seeds 1234 1 2] [--threads 2]

1. ``data prepare`` of ``configs/fashion_mnist_mae.yaml`` (skipped when already prepared):
   55,017 train / 4,983 val / the official 10,000 test images.
2. MAE pretraining (``lmforge pretrain``) of the config's ViT on the 55,017 training images,
   labels unused, for ``--steps`` steps of 256 (timed).
3. Fine-tuning with the same 1,000 labeled training images per seed (``max_train_examples``: the
   subset is a function of the seed, the same for every arm), the config's fine-tuning settings
   (400 steps of 128, AdamW 2e-3, cosine, flips and shifts), best model by validation accuracy,
   scored on the 10,000 test images, for three arms:
   * ``vit_mae``: the ViT from the MAE encoder;
   * ``vit_random``: the same ViT from random init;
   * ``cnn_random``: lmforge's CNN (``configs/fashion_mnist.yaml``'s network and optimizer
     settings) from random init, the same labeled images, steps, batch and validation.

Prints one JSON line per arm (test accuracy per seed, mean, min, max) and the gains in points.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmforge import api  # noqa: E402

CONFIG = ROOT / "configs" / "fashion_mnist_mae.yaml"
CNN_CONFIG = ROOT / "configs" / "fashion_mnist.yaml"  # the CNN and its optimizer settings; no pretrain section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4000, help="MAE pretraining steps (batch 256)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1234, 1, 2])
    ap.add_argument("--labels", type=int, default=1000)
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "bench_mae"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-pretrain", action="store_true", help="reuse <run-dir>/pretrain")
    ap.add_argument("--arms", nargs="+", default=["vit_mae", "vit_random", "cnn_random"])
    args = ap.parse_args()
    run = Path(args.run_dir)
    base = [f"run_dir={run}", f"pretrain.max_steps={args.steps}", f"pretrain.threads={args.threads}",
            f"finetune.loop.threads={args.threads}", f"finetune.data.max_train_examples={args.labels}",
            "finetune.compare_random=false"]
    cfg = api.config(str(CONFIG), base)
    if not (run / "data" / "manifest.json").is_file():
        api.prepare(cfg, progress=False)
    if not args.skip_pretrain:
        t0 = time.time()
        pre = api.pretrain(cfg, overwrite=True, progress=False)
        print(json.dumps({"arm": "pretrain_mae", "steps": pre["steps"], "seconds": round(time.time() - t0, 1),
                          "best_val_loss": pre["best"]["val_loss"], "epochs": pre["epochs"]}), flush=True)
    same = [f"finetune.data.data_dir={run / 'data'}", f"finetune.data.max_train_examples={args.labels}",
            "finetune.loop.max_steps=400", "finetune.loop.eval_every=100", "finetune.loop.batch_size=128",
            f"finetune.loop.threads={args.threads}"]
    arms = {"vit_mae": (CONFIG, [*base, f"finetune.init={run / 'pretrain'}"]),
            "vit_random": (CONFIG, [*base, "finetune.init=random"]),
            "cnn_random": (CNN_CONFIG, [f"run_dir={run}", *same])}
    means = {}
    for arm in args.arms:
        config, extra = arms[arm]
        accs, secs = [], []
        for seed in args.seeds:
            c = api.config(str(config), [*extra, f"seed={seed}", f"finetune.out_dir={run / 'ft' / arm / f'seed{seed}'}"])
            s = api.finetune(c, overwrite=True, progress=False)
            accs.append(s["results"]["test"]["accuracy"])
            secs.append(round(s.get("train_seconds"), 1))
        means[arm] = statistics.mean(accs)
        print(json.dumps({"arm": arm, "labels": args.labels, "seeds": args.seeds, "test_accuracy": accs,
                          "mean": round(means[arm], 4), "min": min(accs), "max": max(accs),
                          "train_seconds": secs}), flush=True)
    for other in ("vit_random", "cnn_random"):
        if "vit_mae" in means and other in means:
            print(json.dumps({f"gain_vs_{other}_points": round(100 * (means["vit_mae"] - means[other]), 2)}))


if __name__ == "__main__":
    main()
