"""``lmforge run``: one config, every stage in order; skip what is done, rerun what changed,
resume what a kill -9 interrupted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import pipeline_config
from lmforge.cli import main


def stamps(run: Path) -> dict:
    return json.loads((run / "pipeline" / "summary.json").read_text())["stages"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    cfg = pipeline_config(root)
    assert main(["run", str(cfg), "--no-progress"]) == 0
    return root, cfg


def test_one_config_runs_every_stage(finished):
    root, cfg = finished
    run = root / "pipe"
    s = stamps(run)
    assert list(s) == ["data", "labeled_data", "pretrain", "finetune", "export", "serve"]
    assert all(v["status"] == "ran" for v in s.values())
    # the labeled set was tokenized with the pretraining corpus's tokenizer, and fine-tuning read it
    labeled = json.loads((run / "labeled" / "data" / "manifest.json").read_text())
    assert labeled["tokenizer"]["trained"] is False and labeled["tokenizer"]["source"] == str(run / "tokenizer")
    ft = json.loads((run / "finetune" / "summary.json").read_text())
    assert ft["labels"] == ["a", "b", "c"] and ft["results"]["test"]["accuracy"] > 0.5
    assert "pretrain" in ft["start"] or str(run / "pretrain") in ft["start"]
    assert (run / "export" / "onnx" / "model.onnx").is_file()
    # the exported folder's model card carries the fine-tuning run's evaluation as model-index results
    card = (run / "export" / "onnx" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    results = {r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]}
               for r in front["model-index"][0]["results"]}
    assert front["model-index"][0]["name"] == "pipe"
    assert results["test"]["accuracy"] == round(ft["results"]["test"]["accuracy"], 4)
    assert "## Evaluation" in card and "more information needed" not in card.lower()
    assert json.loads(s["serve"]["result"]["response"])["results"][0]["label"] in ("a", "b", "c")
    assert "| finetune | ran |" in (run / "pipeline" / "summary.md").read_text()


def test_a_second_run_skips_everything_and_a_change_reruns_what_depends_on_it(finished, capsys):
    root, cfg = finished
    run = root / "pipe"
    assert main(["run", str(cfg), "--no-progress"]) == 0
    assert all(v["status"] == "skipped" for v in stamps(run).values())
    assert "unchanged — skipped" in capsys.readouterr().out
    # a fine-tuning change: data and pretraining stay, fine-tuning and what ships it rerun
    assert main(["run", str(cfg), "--no-progress", "--set", "finetune.loop.epochs=3"]) == 0
    s = stamps(run)
    assert [n for n, v in s.items() if v["status"] == "skipped"] == ["data", "labeled_data", "pretrain"]
    assert [n for n, v in s.items() if v["status"] == "ran"] == ["finetune", "export", "serve"]
    # --only reruns one stage; the others are not touched
    assert main(["run", str(cfg), "--no-progress", "--set", "finetune.loop.epochs=3", "--only", "serve"]) == 0
    s = stamps(run)
    assert s["serve"]["status"] == "ran" and s["finetune"]["status"] == "not run"
    # --from reruns that stage and the ones after it, even though they are done
    assert main(["run", str(cfg), "--no-progress", "--set", "finetune.loop.epochs=3", "--from", "export"]) == 0
    s = stamps(run)
    assert [n for n, v in s.items() if v["status"] == "ran"] == ["export", "serve"]
    assert all(v["status"] == "not run" for n, v in s.items() if n not in ("export", "serve"))


def test_bad_stage_flags_are_usage_errors(finished, capsys):
    root, cfg = finished
    assert main(["run", str(cfg), "--from", "tune"]) == 2
    assert "--from tune: not a stage of this config" in capsys.readouterr().err


def test_kill_9_mid_pipeline_then_the_same_command_continues(tmp_path):
    """SIGKILL while pretraining writes its 2nd checkpoint; the rerun skips data, resumes pretraining
    from its last checkpoint and ends with the same model as a run that was never interrupted."""
    cfg = pipeline_config(tmp_path, "killed")
    cmd = [sys.executable, "-m", "lmforge", "run", str(cfg), "--no-progress"]
    env = {**os.environ, "LMFORGE_FAULT": "checkpoint.before_rename:2"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    run = tmp_path / "killed"
    assert (run / "pipeline" / "data.done.json").is_file() and not (run / "pipeline" / "pretrain.done.json").exists()
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "data: done" in p.stdout and "pretrain: resumed after an interruption" in p.stdout
    s = stamps(run)
    assert s["data"]["status"] == "skipped" and s["pretrain"]["status"] == "resumed"
    assert s["serve"]["status"] == "ran"
    # the reference: the same config, never interrupted
    ref_cfg = pipeline_config(tmp_path, "reference")
    assert main(["run", str(ref_cfg), "--no-progress", "--only", "data"]) == 0
    assert main(["run", str(ref_cfg), "--no-progress", "--only", "pretrain"]) == 0
    got = json.loads((run / "pretrain" / "summary.json").read_text())
    want = json.loads((tmp_path / "reference" / "pretrain" / "summary.json").read_text())
    assert got["best"]["val_loss"] == pytest.approx(want["best"]["val_loss"], abs=1e-6)


def test_kill_9_during_data_preparation_then_the_same_command_continues(tmp_path):
    cfg = pipeline_config(tmp_path, "killed_data", stages=["data", "labeled_data"])
    cmd = [sys.executable, "-m", "lmforge", "run", str(cfg), "--no-progress"]
    p = subprocess.run(cmd, env={**os.environ, "LMFORGE_FAULT": "manifest.before"}, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    run = tmp_path / "killed_data"
    assert (run / "pipeline" / "data.started.json").is_file() and not (run / "data" / "manifest.json").exists()
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "data: resumed after an interruption" in p.stdout
    assert "already done by an earlier run (reused)" in p.stdout  # prepare's per-unit markers carry the work
    s = stamps(run)
    assert s["data"]["status"] == "resumed" and s["labeled_data"]["status"] == "ran"
    assert json.loads((run / "data" / "manifest.json").read_text())["splits"]["train"]["docs"] > 0
