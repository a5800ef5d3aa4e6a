"""kill -9 during ``lmforge data prepare`` at named points across every stage (ingest, dedup,
plan, split, tokenizer, tokenize, merge, manifest): rerunning the same command finishes, and the
outputs — splits, token shards, rejected records, the tokenizer, the manifest's counts — are
byte-identical to an uninterrupted run; no unit is counted twice or lost.

The kill is a real SIGKILL the process sends itself at the chosen point (``LMFORGE_FAULT``, see
``lmforge/faults.py``), so every run hits its point (twelve points, ~16 s on 2 cores)."""

import os
import signal
import subprocess
import sys

import pytest
from prepare_helpers import config, outputs, reference  # noqa: F401 (a fixture)

from lmforge.cli import main

FAULTS = ["ingest.mid_unit", "ingest.before_marker:2", "ingest.after_marker:1", "dedup.done", "plan.unit:2",
          "split.before_marker:1", "split.after_marker:3", "tokenizer.trained", "tokens.before_marker:2",
          "tokens.after_marker:1", "merge.split:2", "manifest.before"]


@pytest.mark.parametrize("fault", FAULTS)
def test_kill9_then_rerun_gives_identical_outputs(reference, fault):
    root, files, want = reference
    name = "k_" + fault.replace(".", "_").replace(":", "_")
    cfg = config(root, name, files)
    env = {**os.environ, "LMFORGE_FAULT": fault}
    proc = subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(cfg), "--no-progress"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (fault, proc.returncode, proc.stderr[-2000:])
    assert not (root / name / "data" / "manifest.json").exists()  # killed before the end
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0  # the same command, again
    got = outputs(root / name)
    assert got.keys() == want.keys(), sorted(set(got) ^ set(want))
    assert got["manifest"] == want["manifest"], fault
    assert {k: v for k, v in got.items() if got[k] != want[k]} == {}, fault
