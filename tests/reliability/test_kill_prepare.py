"""kill -9 during ``lmforge data prepare`` at named points across every stage (ingest, dedup,
plan, split, tokenizer, tokenize, merge, manifest): rerunning the same command finishes, and the
outputs — splits, token shards, rejected records, the tokenizer, the manifest's counts — are
byte-identical to an uninterrupted run; no unit is counted twice or lost.

The kill is a real SIGKILL the process sends itself at the chosen point (``LMFORGE_FAULT``, see
``lmforge/faults.py``), so every run hits its point (twelve points, ~16 s on 2 cores)."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmforge.cli import main

VOCAB = [f"tok{i}" for i in range(400)] + "the a of and to in is it that was for on with as".split()
VOLATILE = {"timings_s", "peak_rss_mb", "peak_rss_workers_mb"}


def write_inputs(root: Path) -> list[str]:
    rng = random.Random(1)
    files = []
    for f in range(3):  # three inputs → three work units per stage
        lines = []
        for i in range(120):
            text = " ".join(rng.choice(VOCAB) for _ in range(rng.randrange(15, 90)))
            lines.append(json.dumps({"id": f"f{f}d{i}", "text": text}))
            if i % 17 == 0:
                lines.append(json.dumps({"id": f"f{f}x{i}", "text": text.upper()}))  # exact duplicate
        lines.append("{broken")
        (root / f"in{f}.jsonl").write_text("\n".join(lines) + "\n")
        files.append(str(root / f"in{f}.jsonl"))
    return files


def config(root: Path, name: str, files: list[str]) -> Path:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 5, "workers": 1,
           "data": {"sources": [{"path": p, "id_field": "id"} for p in files], "filter": {"min_words": 3},
                    "dedup": {"threshold": 0.7}, "split": {"val": 0.1, "test": 0.1},
                    "pack": {"seq_len": 32, "shard_tokens": 2000}},
           "tokenizer": {"type": "bpe", "vocab_size": 400}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def outputs(run: Path) -> dict[str, str]:
    """sha256 of every output file, and the manifest without its timings."""
    data = run / "data"
    out = {}
    for sub in ("splits", "tokens", "rejected"):
        for p in sorted((data / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(run))] = hashlib.sha256(p.read_bytes()).hexdigest()
    for p in sorted((run / "tokenizer").rglob("*")):
        out[str(p.relative_to(run))] = hashlib.sha256(p.read_bytes()).hexdigest()
    m = json.loads((data / "manifest.json").read_text())
    out["manifest"] = json.dumps({k: v for k, v in m.items() if k not in VOLATILE}, sort_keys=True).replace(
        str(run), "RUN")
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    files = write_inputs(root)
    assert main(["data", "prepare", str(config(root, "ref", files)), "--no-progress"]) == 0
    return root, files, outputs(root / "ref")


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
