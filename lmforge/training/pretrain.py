"""``lmforge pretrain``: train a decoder (CLM) or encoder (MLM) from scratch on packed shards.

setup (devices, data, model, optimizer, resume) → loop (accumulate, clip, step, log) →
validate every ``eval_every`` → checkpoint every ``save_every`` → loss curve.
Outputs under ``<run>/pretrain/``: ``checkpoints/step_NNNNNNN/``, ``metrics.jsonl``,
``tb/`` (TensorBoard, when installed), ``loss_curve.png``, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lmforge.config.experiment import ExperimentConfig
from lmforge.data.shards import PackedDataset
from lmforge.errors import LmforgeError
from lmforge.models.transformer import LanguageModel, build_lm
from lmforge.training import checkpoint as ckpt
from lmforge.training.batches import BatchPlan, mask_tokens
from lmforge.training.distributed import Dist, all_reduce_mean, setup, teardown
from lmforge.training.flops import detect_peak, flops_per_token
from lmforge.training.optim import build_optimizer, lr_at, penalty


class TrainingError(LmforgeError, RuntimeError):
    pass


def _paths(cfg: ExperimentConfig) -> tuple[Path, Path]:
    p = cfg.pretrain
    data_dir = Path(p.data_dir) if p.data_dir else cfg.run_path / "data" / "tokens"
    out_dir = Path(p.out_dir) if p.out_dir else cfg.run_path / "pretrain"
    return data_dir, out_dir


def build_model_for_data(cfg: ExperimentConfig, index: dict, seq_len: int) -> LanguageModel:
    """The model, checked against the tokenizer and the window length."""
    from dataclasses import replace

    m = cfg.model
    vocab = index["vocab_size"]
    if m.vocab_size and m.vocab_size != vocab:
        raise TrainingError(f"model.vocab_size={m.vocab_size} does not match the tokenizer's vocabulary ({vocab}); "
                            "set model.vocab_size: 0 to take it from the tokenizer")
    if seq_len > m.max_seq_len:
        raise TrainingError(f"data windows have seq_len {seq_len} but model.max_seq_len is {m.max_seq_len}; "
                            f"raise model.max_seq_len to at least {seq_len}")
    objective_arch = {"clm": "decoder", "mlm": "encoder"}[cfg.pretrain.objective]
    if m.arch != objective_arch:
        raise TrainingError(f"pretrain.objective={cfg.pretrain.objective} needs model.arch={objective_arch}; got {m.arch}")
    return build_lm(replace(m, vocab_size=vocab))


class MetricsLog:
    """metrics.jsonl (+ TensorBoard when available); on resume, records after the checkpoint are dropped."""

    def __init__(self, out_dir: Path, resume_step: int | None, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if resume_step is not None and self.path.exists():
            keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= resume_step]
            self.path.write_text("".join(x + "\n" for x in keep))
        elif self.path.exists():
            self.path.unlink()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"))
        except Exception:  # tensorboard not installed: JSONL only
            self.tb = None

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in rec.items():
                if k not in ("step", "kind") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{rec['kind']}/{k}", v, rec["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def evaluate(model: nn.Module, val: PackedDataset, cfg: ExperimentConfig, special: dict, d: Dist,
             autocast) -> dict:
    """Mean loss over the first ``eval_batches`` batches of val (fixed masks for MLM)."""
    p = cfg.pretrain
    model.eval()
    n = min(len(val), p.eval_batches * p.batch_size)
    if n == 0:
        model.train()
        return {}
    losses, correct, total = [], 0, 0
    raw = model.module if hasattr(model, "module") else model
    for b in range(d.rank * p.batch_size, n, p.batch_size * d.world):
        ids = torch.stack([val[i] for i in range(b, min(b + p.batch_size, n))]).to(d.device)
        if p.objective == "mlm":
            inputs, labels = mask_tokens(ids.cpu(), special["mask"], raw.cfg.vocab_size, _specials(special),
                                         p.mlm_probability, cfg.seed + 1, 0, b, 0)
            inputs, labels = inputs.to(d.device), labels.to(d.device)
        else:
            inputs, labels = ids, ids
        with autocast():
            logits, loss = raw(inputs, labels)
        losses.append(loss.float())
        if p.objective == "mlm":
            m = labels != -100
            correct += int((logits.argmax(-1)[m] == labels[m]).sum())
            total += int(m.sum())
    loss = all_reduce_mean(torch.stack(losses).mean() if losses else torch.zeros((), device=d.device), d).item()
    out = {"val_loss": loss, "val_ppl": math.exp(min(loss, 50))}
    if p.objective == "mlm":
        out["val_masked_acc"] = correct / max(total, 1)
    model.train()
    return out


def _specials(special: dict) -> list[int]:
    return [v for k, v in special.items() if v is not None and k != "unk"]


def pretrain(cfg: ExperimentConfig, resume: bool = False, progress: bool = True) -> dict:
    d = setup()
    try:
        return _pretrain(cfg, d, resume, progress)
    finally:
        teardown(d)


def _pretrain(cfg: ExperimentConfig, d: Dist, resume: bool, progress: bool) -> dict:
    p = cfg.pretrain
    data_dir, out_dir = _paths(cfg)
    if p.threads:
        torch.set_num_threads(p.threads)
    elif d.device.type == "cpu" and d.world > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // d.world))
    train = PackedDataset(data_dir, "train")
    val = PackedDataset(data_dir, "val")
    special = train.index["special_ids"]
    if p.objective == "mlm" and special.get("mask") is None:
        raise TrainingError("pretrain.objective=mlm needs a mask token in the tokenizer (tokenizer.special_tokens.mask)")
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = build_model_for_data(cfg, train.index, train.seq_len).to(d.device)
    optimizer, decayed = build_optimizer(model, p, d.device)
    ckpt_dir = out_dir / "checkpoints"
    start_step, best = 0, {"val_loss": math.inf, "name": None, "bad_evals": 0}
    resumed_from = None
    if resume:
        cks = ckpt.list_checkpoints(ckpt_dir)
        if not cks:
            raise TrainingError(f"--resume: no checkpoint in {ckpt_dir}")
        state = ckpt.load(cks[-1], model, optimizer)
        start_step, best = state["step"], state["best"]
        resumed_from = str(cks[-1])
    if d.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        tok_rel = train.index.get("tokenizer_dir")  # relative to the tokens folder
        _copy_tokenizer(str(data_dir / tok_rel) if tok_rel else None, out_dir / "tokenizer")
    log = MetricsLog(out_dir, start_step if resume else None, d.main)
    net: nn.Module = model
    if p.compile:
        net = torch.compile(model)
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[d.local_rank] if d.device.type == "cuda" else None)
    plan = BatchPlan(train, p.batch_size, p.grad_accum, d.world, d.rank, cfg.seed)
    use_amp = d.device.type == "cuda" and p.precision != "fp32"
    amp_dtype = torch.bfloat16 if p.precision == "bf16" else torch.float16

    def autocast():
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    scaler = torch.amp.GradScaler("cuda") if use_amp and p.precision == "fp16" else None
    n_params = sum(x.numel() for x in model.parameters())
    fpt = flops_per_token(model.cfg, n_params, train.seq_len)
    peak = p.peak_flops or detect_peak(d.device)
    tokens_per_step = plan.global_batch * train.seq_len
    if d.main:
        print(f"[pretrain] {cfg.model.arch} {n_params / 1e6:.2f}M params, {len(train)} train windows of "
              f"{train.seq_len}, global batch {plan.global_batch} ({tokens_per_step} tokens), "
              f"{d.world} process(es) on {d.device}, steps {start_step}→{p.max_steps}"
              + (f", resumed from {resumed_from}" if resumed_from else ""), flush=True)
    bar = None
    if d.main and progress:
        from tqdm import tqdm

        bar = tqdm(total=p.max_steps, initial=start_step, desc="pretrain", disable=not sys.stderr.isatty())
    net.train()
    t_log, tokens_since, wait_since, skipped = time.time(), 0, 0.0, 0
    last_loss = float("nan")
    stop_reason = "max_steps"
    for step in range(start_step, p.max_steps):
        # dropout randomness is a function of (seed, rank, step): resume needs no RNG state
        torch.manual_seed((cfg.seed * 1_000_003 + d.rank) * 1_000_003 + step)
        lr = lr_at(step, p)
        for g in optimizer.param_groups:
            g["lr"] = lr
        loss_sum = torch.zeros((), device=d.device)
        for a in range(p.grad_accum):
            tw = time.time()
            ids = plan.batch(step, a)
            if p.objective == "mlm":
                inputs, labels = mask_tokens(ids, special["mask"], model.cfg.vocab_size, _specials(special),
                                             p.mlm_probability, cfg.seed, step, a, d.rank)
            else:
                inputs, labels = ids, ids
            inputs, labels = inputs.to(d.device, non_blocking=True), labels.to(d.device, non_blocking=True)
            wait_since += time.time() - tw
            sync = contextlib.nullcontext() if (a == p.grad_accum - 1 or not d.enabled) else net.no_sync()
            with sync:
                with autocast():
                    _, loss = net(inputs, labels)
                    loss = loss + penalty(decayed, p.l1, p.l2)
                scaled = loss / p.grad_accum
                (scaler.scale(scaled) if scaler else scaled).backward()
            loss_sum += loss.detach()
        step_loss = all_reduce_mean(loss_sum / p.grad_accum, d)
        if not torch.isfinite(step_loss):
            if p.nonfinite == "stop":
                raise TrainingError(f"non-finite loss ({step_loss.item()}) at step {step}: lower pretrain.lr "
                                    f"(now {lr:.2e}), enable grad_clip, or set pretrain.nonfinite: skip")
            optimizer.zero_grad(set_to_none=True)
            skipped += 1
            continue
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip if p.grad_clip else float("inf"))
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_since += tokens_per_step
        done = step + 1
        if done % p.log_every == 0 or done == p.max_steps:
            last_loss = step_loss.item()
            dt = time.time() - t_log
            tps = tokens_since / max(dt, 1e-9)
            rec = {"kind": "train", "step": done, "loss": last_loss, "lr": lr, "grad_norm": float(grad_norm),
                   "tokens_per_s": tps, "ms_per_step": 1000 * dt / max(tokens_since / tokens_per_step, 1),
                   "mfu": (tps * fpt / (peak * d.world)) if peak else None, "data_wait_s": wait_since,
                   "epoch": plan.epoch_of(done), "skipped_steps": skipped}
            log.write(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{last_loss:.4f}", tok_s=f"{tps:,.0f}")
            t_log, tokens_since, wait_since = time.time(), 0, 0.0
        if bar is not None:
            bar.update(1)
        if done % p.eval_every == 0 or done == p.max_steps:
            ev = evaluate(net, val, cfg, special, d, autocast)
            if ev:
                log.write({"kind": "eval", "step": done, **ev})
                if d.main:
                    msg = ", ".join(f"{k} {v:.4f}" for k, v in ev.items())
                    print(f"[pretrain] step {done}: train loss {step_loss.item():.4f}, {msg}", flush=True)
                if ev["val_loss"] < best["val_loss"]:
                    best = {"val_loss": ev["val_loss"], "name": f"step_{done:07d}", "bad_evals": 0}
                    if d.main:
                        _save(ckpt_dir, done, model, optimizer, cfg, best, p)
                else:
                    best["bad_evals"] += 1
                if p.early_stopping_patience and best["bad_evals"] >= p.early_stopping_patience:
                    stop_reason = f"early stopping: no val improvement in {best['bad_evals']} evals"
                    if d.main:
                        _save(ckpt_dir, done, model, optimizer, cfg, best, p)
                    break
        if d.main and (done % p.save_every == 0 or done == p.max_steps):
            _save(ckpt_dir, done, model, optimizer, cfg, best, p)
    if bar is not None:
        bar.close()
    log.close()
    summary = {"stop_reason": stop_reason, "best": best, "last_train_loss": last_loss, "skipped_steps": skipped}
    if d.main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_losses(out_dir / "metrics.jsonl", out_dir / "loss_curve.png")
        print(f"[pretrain] done ({stop_reason}); best val loss {best['val_loss']:.4f} at {best['name']}; "
              f"metrics {out_dir / 'metrics.jsonl'}", flush=True)
    return summary


def _save(ckpt_dir: Path, step: int, model, optimizer, cfg: ExperimentConfig, best: dict, p) -> None:
    from dataclasses import asdict

    if (ckpt_dir / f"step_{step:07d}").exists():
        return
    ckpt.save(ckpt_dir, step, model, optimizer, {"best": best, "model": asdict(model.cfg),
                                                 "tokenizer_dir": "../../tokenizer",
                                                 "objective": p.objective, "seed": cfg.seed})
    ckpt.prune(ckpt_dir, p.keep_last, {best["name"]} if best["name"] else set())


def _copy_tokenizer(src: str | None, dst: Path) -> None:
    """Keep the tokenizer beside the checkpoints, so a pretrain folder is self-contained."""
    import shutil

    if not src or not Path(src).is_dir():
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in Path(src).iterdir():
        if f.is_file():
            shutil.copy2(f, dst / f.name)


def plot_losses(metrics: Path, out: Path) -> None:
    if not metrics.exists():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [json.loads(x) for x in metrics.read_text().splitlines() if x]
    tr = [(r["step"], r["loss"]) for r in recs if r["kind"] == "train"]
    ev = [(r["step"], r["val_loss"]) for r in recs if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4))
    if tr:
        ax.plot(*zip(*tr), label="train")
    if ev:
        ax.plot(*zip(*ev), "o-", label="val")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Pretraining loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
