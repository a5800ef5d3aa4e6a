"""``lmforge pretrain`` on images: masked-image pretraining (MAE) of a ViT on a prepared image folder.

One linear recipe over the training library: setup (the prepared train split's images — their
labels are not read —, the ViT of the ``model`` section with its MAE decoder, AdamW, resume or
fresh-start guard) → loop (hide patches, reconstruct, clip, step, log) → validate every
``eval_every`` on the val split with the same masks every time → checkpoints (every
``save_every``, at a new best, at the end, on SIGINT/SIGTERM) → summary, loss curve and a figure
of reconstructions.

Batches, augmentation and masks are functions of (seed, step) alone, so ``--resume`` continues
exactly. One process (torchrun is for text pretraining).

Outputs (:class:`lmforge.layout.TrainPaths`): ``checkpoints/step_NNNNNNN/`` (encoder + decoder +
optimizer, for resume); ``best/`` — the encoder at the best validation loss as an image model
folder (:mod:`lmforge.models.arrays`, its head untrained) that ``finetune.init`` starts from;
``metrics.jsonl``, ``summary.json``, ``loss_curve.png``, ``reconstructions.png``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lmforge.config.schema import to_dict
from lmforge.errors import DataError, Interrupted, TrainingError
from lmforge.kinds import task as get_task
from lmforge.layout import RunPaths, TrainPaths, ensure_dir
from lmforge.models.arrays import save_array_model
from lmforge.models.config import ModelConfig
from lmforge.models.mae import MaskedAutoencoder
from lmforge.models.vision import VisionTransformer
from lmforge.tasks.arrays import ArraySet
from lmforge.training import checkpoint as ckpt
from lmforge.training.config import PretrainConfig
from lmforge.training.early_stopping import Best
from lmforge.training.interrupt import StopRequest
from lmforge.training.metric_logging import MetricsLog, eta, write_config
from lmforge.training.optim import apply_lr, build_optimizer, param_groups
from lmforge.training.plots import plot_curves
from lmforge.training.precision import Precision
from lmforge.training.schedules import WarmupDecay

RECONSTRUCTIONS = "reconstructions.png"


def _say(msg: str) -> None:
    print(f"[pretrain] {msg}", flush=True)


@dataclass
class _Run:
    p: PretrainConfig
    mae: MaskedAutoencoder
    optimizer: torch.optim.Optimizer
    best: Best
    log: MetricsLog
    train: ArraySet
    val: ArraySet
    meta: dict
    model_cfg: ModelConfig
    out: TrainPaths
    device: torch.device
    precision: Precision
    seed: int
    config: dict
    last_loss: Optional[float] = None
    _order: tuple = (-1, None)  # (epoch, its shuffled row order)

    def batch(self, step: int, augment: bool = True) -> torch.Tensor:
        """Step ``step``'s training images (an epoch is a seeded shuffle), augmented and normalized."""
        n, bs = len(self.train), self.p.batch_size
        per_epoch = max(1, n // bs)  # an epoch's short tail is left out: every batch is full
        epoch, pos = divmod(step, per_epoch)
        if self._order[0] != epoch:  # one shuffle per epoch, a function of (seed, epoch)
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        idx = np.sort(self._order[1][pos * bs:(pos + 1) * bs])
        gen = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + step) if augment else None
        return get_task("image").tensors(self.train.take(idx), self.meta, self.device, augment=gen)["x"]

    def evaluate(self) -> Optional[float]:
        """Mean masked reconstruction loss over up to ``eval_batches`` val batches, same masks every time."""
        if len(self.val) == 0:
            return None
        self.mae.eval()
        total, count = 0.0, 0
        with torch.no_grad(), self.precision.autocast():
            for b in range(min(self.p.eval_batches, -(-len(self.val) // self.p.batch_size))):
                idx = np.arange(b * self.p.batch_size, min(len(self.val), (b + 1) * self.p.batch_size))
                x = get_task("image").tensors(self.val.take(idx), self.meta, self.device)["x"]
                gen = torch.Generator(device=self.device).manual_seed(b)
                total += float(self.mae(x, gen)) * len(idx)
                count += len(idx)
        self.mae.train()
        return total / count

    def save(self, step: int) -> None:
        ckpt.save(self.out.checkpoints, step, self.mae, self.optimizer,
                  {"best": self.best.state_dict(), "step": step, "objective": "mae", "seed": self.seed,
                   "config": self.config})
        keep = [ckpt.checkpoint_name(self.best.step)] if self.best.step is not None else []
        ckpt.prune(self.out.checkpoints, self.p.keep_last, keep)

    def save_encoder(self, step: int, val_loss: Optional[float]) -> None:
        """The encoder as an image model folder: what ``finetune.init`` starts from."""
        save_array_model(self.mae.vit, self.out.best, self.model_cfg,
                         {**self.meta, "step": step, "pretrained": {"objective": "mae", "val_loss": val_loss,
                                                                     "mask_ratio": self.p.mae_mask_ratio}})


def pretrain_images(p: PretrainConfig, model_cfg: ModelConfig, paths: RunPaths, seed: int, *, resume: bool = False,
                    overwrite: bool = False, resume_changed: bool = False, progress: bool = True,
                    on_eval=None, name: str = "pretrain") -> dict:
    """Run masked-image pretraining; returns the summary (also written to ``summary.json``)."""
    from lmforge.recipes.pretrain import resume_safe_keys

    if p.objective != "mae" or model_cfg.arch != "vit":
        raise TrainingError(f"images pretrain a ViT with objective mae; got pretrain.objective: {p.objective}, "
                            f"model.arch: {model_cfg.arch} (set pretrain.objective: mae and model.arch: vit)")
    if p.threads:
        torch.set_num_threads(p.threads)
    out = paths.pretrain
    data_dir = Path(p.data_dir) if p.data_dir else paths.data
    train, val, meta = _images(data_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    vit = VisionTransformer(model_cfg, tuple(meta["in_shape"]), meta["num_outputs"])
    mae = MaskedAutoencoder(vit, model_cfg, tuple(meta["in_shape"]), p.mae_mask_ratio, p.mae_decoder_width,
                            p.mae_decoder_layers, p.mae_decoder_heads).to(device)
    groups, _ = param_groups(mae, p.lr, p.weight_decay)
    optimizer = build_optimizer(groups, p.optimizer, p.lr, tuple(p.betas), momentum=p.momentum)
    config = {"pretrain": to_dict(p), "model": to_dict(model_cfg), "seed": seed, "global_batch": p.batch_size}
    best = Best("min", p.early_stopping_patience)
    start = ckpt.start_or_resume(out, mae, optimizer, best, config, resume=resume, overwrite=overwrite,
                                 resume_changed=resume_changed, safe_keys=resume_safe_keys(p), say=_say)
    ensure_dir(out.root, "pretrain output")
    write_config(out.root, config)
    run = _Run(p, mae, optimizer, best, MetricsLog(out.metrics, out.tensorboard, start if resume else None), train,
               val, meta, model_cfg, out, device, Precision(device, p.precision), seed, config)
    n_enc = sum(x.numel() for x in vit.parameters())
    _say(f"MAE on {len(train):,} images {tuple(meta['in_shape'])} (labels unused), val {len(val):,}: ViT encoder "
         f"{n_enc / 1e6:.3f}M params, decoder {sum(x.numel() for x in mae.parameters()) / 1e6 - n_enc / 1e6:.3f}M; "
         f"{mae.n_keep} of {vit.patches.n_patches} patches visible; {p.max_steps} steps of {p.batch_size} "
         f"(~{p.max_steps * p.batch_size / max(1, len(train)):.1f} epochs) on {device}"
         + (f"; resuming at step {start}" if start else ""))
    t0 = time.time()
    with StopRequest() as stop:
        reason, done = _loop(run, start, stop, progress, on_eval, name)
    run.log.close()
    summary = _finish(run, reason, done, time.time() - t0, n_enc)
    if reason.startswith("interrupted"):
        raise Interrupted(f"interrupted at step {done}")
    return summary


def _images(data_dir: Path) -> tuple[ArraySet, ArraySet, dict]:
    """The prepared train and val images and what the encoder must record (shape, normalization)."""
    task = get_task("image")
    try:
        train = task.load(data_dir, "train")
    except FileNotFoundError:
        raise DataError(f"{data_dir}: no prepared image train split; run lmforge data prepare first") from None
    try:
        val = task.load(data_dir, "val")
    except FileNotFoundError:
        val = ArraySet({"x": train.inputs["x"][:0]}, None)
    meta = task.meta(data_dir, train)
    if len(train) < 2:
        raise DataError(f"{data_dir}: the train split has {len(train)} image(s); pretraining needs at least 2")
    return train, val, meta


def _loop(run: _Run, start: int, stop: StopRequest, progress: bool, on_eval, name: str) -> tuple[str, int]:
    """Steps ``start`` … ``max_steps``; returns (stop reason, steps done)."""
    p = run.p
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=p.max_steps, initial=start, desc=name, disable=not sys.stderr.isatty())
    schedule = WarmupDecay(p.warmup_steps, p.decay_steps or p.max_steps, p.schedule, p.min_lr, ramp="nanogpt")
    params = [x for x in run.mae.parameters() if x.requires_grad]
    reason, done, t, seen = "max_steps", start, time.time(), 0
    run.mae.train()
    for step in range(start, p.max_steps):
        lr = apply_lr(run.optimizer, schedule, step)
        x = run.batch(step)
        with run.precision.autocast():
            loss = run.mae(x, torch.Generator(device=run.device).manual_seed(run.seed * 7_919 + step))
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss ({loss.item()}) at step {step}: lower pretrain.lr (now {lr:.2e})")
        run.precision.backward(loss)  # (Precision.step zeroes the gradients after stepping)
        run.precision.step(run.optimizer, params, p.grad_clip)
        done, seen = step + 1, seen + len(x)
        if done % p.log_every == 0 or done == p.max_steps:
            t, seen = _log(run, bar, done, loss.item(), lr, seen, t), 0
        if bar is not None:
            bar.update(1)
        why, improved = None, False
        if done % p.eval_every == 0 or done == p.max_steps:
            improved, why = _validate(run, done, on_eval)
        if stop.requested:
            why = f"interrupted ({stop.signal_name or 'signal'}) at step {done}"
        if improved or why or done % p.save_every == 0 or done == p.max_steps:
            run.save(done)
        if why:
            reason = why
            break
    if bar is not None:
        bar.close()
    return reason, done


def _log(run: _Run, bar, done: int, loss: float, lr: float, seen: int, since: float) -> float:
    p, now = run.p, time.time()
    rate = seen / max(now - since, 1e-9)
    run.last_loss = loss
    run.log.write({"kind": "train", "step": done, "loss": loss, "lr": lr, "images_per_s": rate})
    if bar is not None and not bar.disable:
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rate:,.0f}")
    else:
        _say(f"step {done}/{p.max_steps}: loss {loss:.4f}, lr {lr:.2e}, {rate:,.0f} images/s, "
             f"ETA {eta((p.max_steps - done) * p.batch_size / max(rate, 1e-9))}")
    return now


def _validate(run: _Run, done: int, on_eval) -> tuple[bool, Optional[str]]:
    """One validation; a new best saves the encoder. Returns (a new best?, why to stop or None)."""
    val_loss = run.evaluate()
    if val_loss is None:  # no val split: the last encoder is the one kept
        run.save_encoder(done, None)
        return False, None
    run.log.write({"kind": "eval", "step": done, "val_loss": val_loss})
    _say(f"step {done}: val reconstruction loss {val_loss:.4f}")
    improved = run.best.update(val_loss, done)
    if improved:
        run.save_encoder(done, val_loss)
    if run.best.should_stop:
        return improved, f"early stopping: no val improvement in {run.best.bad_evals} evals"
    if on_eval is not None and on_eval(done, {"val_loss": val_loss}):
        return improved, "stopped by on_eval"
    return improved, None


def _finish(run: _Run, reason: str, done: int, seconds: float, n_enc: int) -> dict:
    """summary.json, the loss curve and the reconstructions figure."""
    out, best = run.out, run.best
    if not (out.best / "config.json").is_file():  # stopped before the first validation
        run.save_encoder(done, None)
    summary = {"objective": "mae", "stop_reason": reason, "steps": done,
               "best": {"val_loss": best.value if best.step is not None else None, "step": best.step},
               "last_train_loss": run.last_loss, "images_seen": done * run.p.batch_size,
               "epochs": round(done * run.p.batch_size / len(run.train), 2),
               "wall_seconds_this_process": round(seconds, 1), "params": n_enc,
               "mask_ratio": run.p.mae_mask_ratio, "encoder": str(out.best)}
    out.summary.write_text(json.dumps(summary, indent=2))
    plot_curves(out.metrics, out.loss_curve, "MAE reconstruction loss (masked patches)", "val_loss")
    _reconstructions(run, out.root / RECONSTRUCTIONS)
    _say(f"done ({reason}) in {seconds:.0f} s; encoder for finetune.init: {out.best}")
    return summary


def _reconstructions(run: _Run, path: Path, n: int = 8) -> None:
    """Rows of original / what the encoder saw / reconstruction for ``n`` val (else train) images."""
    from lmforge.data.images.grid import save_image_grid
    from lmforge.data.images.normalize import Normalizer

    source = run.val if len(run.val) else run.train
    idx = np.arange(min(n, len(source)))
    x = get_task("image").tensors(source.take(idx), run.meta, run.device)["x"]
    run.mae.eval()
    shown, filled = run.mae.reconstruct(x, torch.Generator(device=run.device).manual_seed(0))
    norm = Normalizer.from_dict(run.meta["normalize"])
    rows = [norm.invert(t).clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy() for t in (x, shown, filled)]
    titles = [t for t in ("original", "seen", "rebuilt") for _ in idx]
    save_image_grid(np.concatenate(rows), titles, path, ncols=len(idx),
                    title=f"MAE: {run.p.mae_mask_ratio:.0%} of the patches hidden")
