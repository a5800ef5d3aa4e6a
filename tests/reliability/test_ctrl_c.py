"""Ctrl-C (SIGINT to the whole process group, as a terminal sends it) at chosen points of
``data prepare`` and ``export``: the command stops with exit code 130 and one line, no traceback;
nothing half-written stays; the previous export is still there, byte for byte; and the same
command run again finishes with the outputs of a run that was never interrupted.

The process is held at the point by ``LMFORGE_FAULT_HOLD`` (``lmforge/faults.py``) and the test
sends the signal from outside, so every run is interrupted exactly there."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prepare_helpers import config, outputs, reference  # noqa: F401 (a fixture)

from lmforge.cli import main


def interrupted(args: list[str], point: str, pid_file: Path, cwd=None) -> subprocess.CompletedProcess:
    """Run ``lmforge ARGS`` held at ``point``, then Ctrl-C its process group; the finished process."""
    env = {**os.environ, "LMFORGE_FAULT_HOLD": f"{point}:{pid_file}"}
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, cwd=cwd)
    deadline = time.time() + 240
    while not (pid_file.is_file() and pid_file.read_text().endswith("\n")):
        if proc.poll() is not None or time.time() > deadline:
            out, err = proc.communicate()
            raise AssertionError(f"never reached {point}: rc {proc.returncode}\n{err[-2000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize("point", ["dedup.done", "tokenizer.trained", "manifest.before"])
def test_ctrl_c_during_data_prepare_then_rerun_gives_identical_outputs(reference, point, tmp_path):
    root, files, want = reference
    name = "c_" + point.replace(".", "_")
    cfg = config(root, name, files)
    done = interrupted(["data", "prepare", str(cfg), "--no-progress"], point, tmp_path / "pid")
    assert done.returncode == 130, (point, done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr.lower(), done.stderr[-2000:]
    assert not (root / name / "data" / "manifest.json").exists()
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0  # the same command, again
    got = outputs(root / name)
    assert {k: v for k, v in got.items() if got[k] != want.get(k)} == {}, point


def _bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("point", ["export.verified", "swap.between"])
def test_ctrl_c_during_export_keeps_the_previous_export(image_model, point, tmp_path):
    out = tmp_path / "onnx"
    assert main(["export", str(image_model / "finetune"), "--out", str(out)]) == 0
    before = _bytes(out)
    done = interrupted(["export", str(image_model / "finetune"), "--out", str(out)], point, tmp_path / "pid")
    assert done.returncode == 130, (point, done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("onnx")) == ["onnx"]  # no .tmp, no .old
    assert _bytes(out) == before  # the earlier export, untouched
    assert main(["export", str(image_model / "finetune"), "--out", str(out)]) == 0
    assert _bytes(out)["model.onnx"] == before["model.onnx"]  # the same graph, exported again
