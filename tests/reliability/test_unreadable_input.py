"""An input the user running lmforge cannot read: one clear error listing every such file
before any work starts — not a traceback, and not a misleading "cannot write". Tests run as root
here, and root reads through ``chmod 000``, so the command runs as ``nobody`` (skipped where
that is not possible)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml


def _as_nobody(args, cwd):
    return subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *args],
                          cwd=cwd, env={**os.environ, "HOME": str(cwd)}, capture_output=True, text=True, timeout=300)


@pytest.fixture
def world_dir():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run a command as another user")
    d = Path(tempfile.mkdtemp(prefix="lmforge-unreadable-"))
    d.chmod(0o777)
    if _as_nobody([sys.executable, "-c", "import lmforge"], d).returncode != 0:
        shutil.rmtree(d)
        pytest.skip("this Python / lmforge is not readable by another user")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_an_unreadable_input_is_one_clear_error(world_dir):
    for name in ("ok.jsonl", "secret.jsonl", "hidden.jsonl"):
        (world_dir / name).write_text("".join(json.dumps({"text": f"some words number {i}"}) + "\n" for i in range(5)))
    big = "".join(json.dumps({"text": f"a longer record number {i} " + "w " * 40}) + "\n" for i in range(12000))
    (world_dir / "hidden.jsonl").write_text(big)  # over 1 MB: cut into chunks at planning (data.chunk_mb: 1)
    (world_dir / "secret.jsonl").chmod(0)
    (world_dir / "hidden.jsonl").chmod(0)
    cfg = {"name": "u", "run_dir": str(world_dir / "run"), "workers": 1,
           "data": {"chunk_mb": 1,
                    "sources": [{"path": str(world_dir / n)} for n in ("ok.jsonl", "secret.jsonl", "hidden.jsonl")],
                    "split": {"val": 0.0, "test": 0.0}},
           "tokenizer": {"type": "bpe", "vocab_size": 300}}
    (world_dir / "u.yaml").write_text(yaml.safe_dump(cfg))
    (world_dir / "u.yaml").chmod(0o644)
    r = _as_nobody([sys.executable, "-m", "lmforge", "data", "prepare", str(world_dir / "u.yaml"), "--no-progress"],
                   world_dir)
    assert r.returncode == 1, r.stderr
    assert "cannot read input file(s)" in r.stderr and "secret.jsonl" in r.stderr and "hidden.jsonl" in r.stderr
    assert "Permission denied" in r.stderr and "Traceback" not in r.stderr and "cannot write" not in r.stderr
    assert not list((world_dir / "run").rglob("*.done"))  # no work started
