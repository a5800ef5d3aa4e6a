"""A crash inside a checkpoint write — all files of the new checkpoint written to its temporary
folder, the rename not yet done — leaves the previous checkpoint as it was, and ``--resume``
continues from it with the same losses as an uninterrupted run (pretraining and fine-tuning)."""

import json
import os
import signal
import subprocess
import sys

from lmforge.cli import main
from lmforge.training import checkpoint as ckpt


def _losses(run_dir):
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r.get("kind") == "train"}


def _crash_then_resume(cmd: list[str], out, nth: int):
    env = {**os.environ, "LMFORGE_FAULT": f"checkpoint.before_rename:{nth}"}
    proc = subprocess.run([sys.executable, "-m", "lmforge", *cmd, "--no-progress"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    cks = ckpt.list_checkpoints(out / "checkpoints")
    assert len(cks) == nth - 1  # the interrupted one never appeared ...
    assert list((out / "checkpoints").glob(".tmp-*"))  # ... its files sat in the temporary folder
    ckpt.read_checkpoint_state(cks[-1])  # the previous one verifies (checksums)
    r = subprocess.run([sys.executable, "-m", "lmforge", *cmd, "--resume", "--no-progress"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed from {cks[-1].name}" in r.stdout or cks[-1].name in r.stdout
    assert not list((out / "checkpoints").glob(".tmp-*"))  # the leftover was replaced by the next save


def test_pretrain_crash_inside_a_checkpoint_write(prepared, cfg_for):
    over = {"pretrain.max_steps": 40, "pretrain.save_every": 10, "pretrain.eval_every": 1000, "model.dropout": 0.1}
    assert main(["pretrain", str(cfg_for("ck_ref", **over)), "--no-progress"]) == 0
    cfg = cfg_for("ck_crash", **over)
    _crash_then_resume(["pretrain", str(cfg)], prepared / "ck_crash" / "pretrain", nth=3)
    want, got = _losses(prepared / "ck_ref" / "pretrain"), _losses(prepared / "ck_crash" / "pretrain")
    assert sorted(got) == sorted(want) == list(range(1, 41))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6
