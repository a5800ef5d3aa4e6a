"""Pretraining end to end: loss goes down, kill -9 + resume is exact, DDP matches one process,
bad inputs give clear errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.training import checkpoint as ckpt
from lmforge.errors import TrainingError
from lmforge.recipes.pretrain import pretrain


def run_pretrain(cfg_path, **kw) -> dict:
    """The pretrain recipe on a config file's sections."""
    cfg = load_config(str(cfg_path))
    return pretrain(cfg.pretrain, cfg.model, cfg.paths, cfg.seed, **kw)


def _losses(run: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}


def test_clm_pretrain_learns_and_writes_outputs(prepared, cfg_for):
    cfg = cfg_for("clm", **{"pretrain.max_steps": 60, "pretrain.eval_every": 30, "pretrain.save_every": 30})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    run = prepared / "clm"
    losses = _losses(run)
    assert len(losses) == 60
    first = sum(losses[s] for s in range(1, 6)) / 5
    last = sum(losses[s] for s in range(56, 61)) / 5
    assert last < first - 0.5, (first, last)
    out = run / "pretrain"
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000030", "step_0000060"]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard events written"
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-2])
    assert rec["tokens_per_s"] > 0 and 0 < rec["mfu"] < 1 and "data_wait_s" in rec
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert evals[-1]["val_ppl"] == pytest.approx(2.718281828 ** evals[-1]["val_loss"], rel=1e-6)
    from lmforge.inference.config import GenerateConfig
    from lmforge.inference.generate import generate_text

    text = generate_text(GenerateConfig(checkpoint=str(out), prompt="the", max_new_tokens=10, seed=1))
    assert text.startswith("the") and len(text) > 3


def test_kill9_then_resume_gives_identical_losses(prepared, cfg_for):
    steps = 150
    over = {"pretrain.max_steps": steps, "pretrain.save_every": 10, "pretrain.eval_every": 1000,
            "model.dropout": 0.1}
    ref_cfg = cfg_for("ref", **over)
    assert main(["pretrain", str(ref_cfg), "--no-progress"]) == 0
    ref = _losses(prepared / "ref")

    cfg = cfg_for("killed", **over)
    ck_dir = prepared / "killed" / "pretrain" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.list_checkpoints(ck_dir)) < 2:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # a real kill -9, mid-run
    proc.wait()
    assert not (prepared / "killed" / "pretrain" / "summary.json").exists(), "run finished before the kill"
    last = ckpt.list_checkpoints(ck_dir)[-1]
    assert int(last.name.split("_")[1]) < steps
    r = subprocess.run([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--resume", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    got = _losses(prepared / "killed")
    assert sorted(got) == sorted(ref) == list(range(1, steps + 1))
    assert max(abs(got[s] - ref[s]) for s in ref) <= 1e-6


def test_ddp_two_processes_match_one_process(prepared, cfg_for):
    """Same global batch (2 x 4 sequences): 2 processes x accum 1 vs 1 process x accum 2.
    Tolerance 1e-5: only the order of the floating-point gradient sums differs."""
    one = cfg_for("one", **{"pretrain.max_steps": 12, "pretrain.grad_accum": 2})
    assert main(["pretrain", str(one), "--no-progress"]) == 0
    two = cfg_for("two", **{"pretrain.max_steps": 12, "pretrain.grad_accum": 1})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "lmforge", "pretrain", str(two), "--no-progress"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(prepared / "one"), _losses(prepared / "two")
    assert sorted(a) == sorted(b)
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5


def test_mlm_pretrain_reports_masked_accuracy(prepared, cfg_for):
    cfg = cfg_for("mlm", **{"model.arch": "encoder", "pretrain.objective": "mlm", "pretrain.max_steps": 10})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    evals = [json.loads(x) for x in (prepared / "mlm" / "pretrain" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in x]
    assert 0 <= evals[-1]["val_masked_acc"] <= 1


def test_corrupted_checkpoint_is_detected(prepared, cfg_for):
    cfg = cfg_for("corrupt", **{"pretrain.max_steps": 10})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    last = ckpt.list_checkpoints(prepared / "corrupt" / "pretrain" / "checkpoints")[-1]
    with open(last / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch"):
        run_pretrain(cfg, resume=True, progress=False)
    with pytest.raises(TrainingError, match="no checkpoint"):
        run_pretrain(cfg_for("never", **{"pretrain.max_steps": 1}), resume=True, progress=False)


def test_clear_errors_for_mismatched_model(prepared, cfg_for, capsys):
    cfg = cfg_for("vocab", **{"model.vocab_size": 999})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "does not match the tokenizer" in capsys.readouterr().err
    cfg = cfg_for("short", **{"model.max_seq_len": 16})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "max_seq_len is 16" in capsys.readouterr().err
    cfg = cfg_for("arch", **{"pretrain.objective": "mlm"})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "needs model.arch=encoder" in capsys.readouterr().err


def test_nonfinite_loss_stops_or_skips(prepared, cfg_for):
    over = {"pretrain.lr": 1e30, "pretrain.min_lr": 1e29, "pretrain.warmup_steps": 0, "pretrain.grad_clip": None,
            "pretrain.max_steps": 6}
    with pytest.raises(TrainingError, match="non-finite loss"):
        run_pretrain(cfg_for("nan", **over), progress=False)
    summary = run_pretrain(cfg_for("nanskip", **{**over, "pretrain.nonfinite": "skip"}), progress=False)
    assert summary["skipped_steps"] >= 1


def test_early_stopping_keeps_best_and_last(prepared, cfg_for):
    # lr 0: the val loss never improves after the first eval, so patience 2 stops at the third eval
    cfg = cfg_for("early", **{"pretrain.lr": 0.0, "pretrain.min_lr": 0.0, "pretrain.max_steps": 50,
                              "pretrain.eval_every": 5, "pretrain.save_every": 5, "pretrain.keep_last": 1,
                              "pretrain.early_stopping_patience": 2})
    summary = run_pretrain(cfg, progress=False)
    assert summary["stop_reason"].startswith("early stopping")
    assert summary["best"]["name"] == "step_0000005"
    names = [p.name for p in ckpt.list_checkpoints(prepared / "early" / "pretrain" / "checkpoints")]
    assert names == ["step_0000005", "step_0000015"]  # the best and the last one
