"""Inputs, config, output digests and the uninterrupted reference run shared by the
data-prepare fault tests (import ``reference`` to use the fixture)."""

import hashlib
import json
import random
from pathlib import Path

import pytest
import yaml

from lmforge.cli import main

VOCAB = [f"tok{i}" for i in range(400)] + "the a of and to in is it that was for on with as".split()
VOLATILE = {"timings_s", "peak_rss_mb", "peak_rss_workers_mb",
            "name"}  # the config's name: each run here has its own


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


def config(root: Path, name: str, files: list[str], run_dir: Path | None = None) -> Path:
    cfg = {"name": name, "run_dir": str(run_dir or root / name), "seed": 5, "workers": 1,
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
    """(root, input files, outputs of an uninterrupted run of the same config)."""
    root = tmp_path_factory.mktemp("ref")
    files = write_inputs(root)
    assert main(["data", "prepare", str(config(root, "ref", files)), "--no-progress"]) == 0
    return root, files, outputs(root / "ref")
