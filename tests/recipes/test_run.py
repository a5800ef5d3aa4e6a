"""``lmforge run``: one config, every stage in order; skip what is done, rerun what changed,
resume what a kill -9 interrupted."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import interrupt_after, pipeline_config
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


def test_interrupt_then_a_changed_key_never_loses_work(tmp_path, capsys):
    """The issue's story: Ctrl-C during pretraining, then a rerun with one key changed. A resume-safe
    change (more max_steps with a fixed decay length) resumes from the checkpoints; any other change
    starts over with the earlier output moved to previous/ — listed, and deleted only by keep_previous."""
    cfg_path = pipeline_config(tmp_path, "keep", stages=["data", "pretrain"])
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["pretrain"].update(max_steps=60, decay_steps=60, eval_every=20)
    cfg_path.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "keep"
    rc, err, step = interrupt_after(["run", str(cfg_path), "--no-progress"], run / "pretrain" / "metrics.jsonl", 3)
    assert rc == 130 and 0 < step < 60, err[-2000:]
    # the advice names the command that was run, and the pipeline summary records the interruption
    assert f"rerun `lmforge run {cfg_path} --no-progress` to resume it" in err
    assert stamps(run)["pretrain"]["status"] == "interrupted"
    assert "| pretrain | interrupted |" in (run / "pipeline" / "summary.md").read_text()

    assert main(["run", str(cfg_path), "--no-progress", "--set", "pretrain.max_steps=80"]) == 0
    out = capsys.readouterr().out
    assert "pretrain: resumed from its checkpoints; only resume-safe keys changed: pretrain.max_steps: 60 → 80" in out
    assert stamps(run)["pretrain"]["status"] == "resumed"
    assert json.loads((run / "pretrain" / "summary.json").read_text())["steps"] == 80
    first = json.loads((run / "pretrain" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 5  # the interrupted part's records are still there

    # a change that breaks an exact continuation: fresh start, the old output kept and named
    changed = ["--set", "pretrain.max_steps=80", "--set", "pipeline.keep_previous=1"]
    assert main(["run", str(cfg_path), "--no-progress", *changed, "--set", "pretrain.lr=0.001"]) == 0
    out = capsys.readouterr().out
    assert "pretrain: config, inputs or upstream changed: pretrain.lr: 0.003 → 0.001" in out
    assert "data: done" in out  # upstream untouched
    kept = sorted((run / "previous").iterdir())
    assert [p.name.split("-")[0] for p in kept] == ["pretrain"]
    assert f"pretrain: the previous output is kept in {kept[0]}" in out
    old = json.loads((kept[0] / "pretrain" / "summary.json").read_text())
    assert old["steps"] == 80 and (kept[0] / "pretrain" / "checkpoints").is_dir()
    assert str(kept[0]) in (run / "pipeline" / "summary.md").read_text()
    # keep_previous=1: the next set-aside deletes the older one, and says so
    assert main(["run", str(cfg_path), "--no-progress", *changed, "--set", "pretrain.lr=0.002"]) == 0
    out = capsys.readouterr().out
    assert f"pretrain: deleted the kept output {kept[0]} (pipeline.keep_previous=1)" in out
    now = sorted((run / "previous").iterdir())
    assert len(now) == 1 and now[0] != kept[0]
    assert yaml.safe_load((now[0] / "pretrain" / "config.yaml").read_text())["pretrain"]["lr"] == 0.001


def test_a_non_resume_safe_max_steps_change_starts_over_and_says_why(tmp_path, capsys):
    """Without a fixed decay length the LR schedule stretches with max_steps: not an exact resume."""
    cfg = pipeline_config(tmp_path, "cosine", stages=["data", "pretrain"])
    assert main(["run", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(cfg), "--no-progress", "--set", "pretrain.max_steps=25"]) == 0
    out = capsys.readouterr().out
    assert "pretrain.max_steps: 20 → 25" in out and "not resumed" in out
    assert "the previous output is kept in" in out
    assert json.loads((tmp_path / "cosine" / "pretrain" / "summary.json").read_text())["steps"] == 25


def test_data_prepared_by_hand_with_the_same_config_counts_as_done(tmp_path, capsys):
    cfg = pipeline_config(tmp_path, "byhand", stages=["data"])
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    manifest = (tmp_path / "byhand" / "data" / "manifest.json").read_text()
    capsys.readouterr()
    assert main(["run", str(cfg), "--no-progress"]) == 0
    assert "data: already prepared from this config and these input files" in capsys.readouterr().out
    assert stamps(tmp_path / "byhand")["data"]["status"] == "skipped"
    assert (tmp_path / "byhand" / "data" / "manifest.json").read_text() == manifest  # not redone
    # a different config is not adopted: it runs, and the hand-made folder is kept aside
    other = pipeline_config(tmp_path, "byhand2", stages=["data"])
    assert main(["data", "prepare", str(other), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["run", str(other), "--no-progress", "--set", "seed=4"]) == 0
    out = capsys.readouterr().out
    assert "adopted" not in out and "data: first run" in out and "previous output is kept in" in out


@pytest.mark.parametrize("nth", [1, 3])
def test_kill_9_between_stages_then_the_same_command_finishes_identically(tmp_path, nth):
    """SIGKILL right after a stage is stamped done (after data, or after pretrain): the rerun skips
    what is done and ends with the fine-tuned results of an uninterrupted run."""
    stages = ["data", "labeled_data", "pretrain", "finetune"]
    cfg = pipeline_config(tmp_path, "cut", stages=stages)
    cmd = [sys.executable, "-m", "lmforge", "run", str(cfg), "--no-progress"]
    p = subprocess.run(cmd, env={**os.environ, "LMFORGE_FAULT": f"run.stage_done:{nth}"}, capture_output=True,
                       text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    s = stamps(tmp_path / "cut")
    assert [n for n in stages if s[n]["status"] == "skipped"] == stages[:nth]
    assert "previous output is kept" not in p.stdout  # nothing had to be set aside
    ref = pipeline_config(tmp_path, "whole", stages=stages)
    assert main(["run", str(ref), "--no-progress"]) == 0
    got, want = (json.loads((tmp_path / n / "finetune" / "summary.json").read_text()) for n in ("cut", "whole"))
    assert got["results"]["test"] == pytest.approx(want["results"]["test"], abs=1e-6)
    assert got["best_step"] == want["best_step"]


def test_kill_9_at_five_random_moments_then_the_same_command_finishes_identically(tmp_path):
    """The fault matrix's "kill -9 at random moments": the whole pipeline (data, labeled data,
    pretrain, finetune, ONNX export, serve) is killed five times at seeded random moments, each time
    rerun with the same command; the last run finishes, and the pretrained and fine-tuned models, the
    data and the export equal those of a run that was never interrupted."""
    import hashlib
    import random
    import time

    ref_cfg = pipeline_config(tmp_path, "reference")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "lmforge", "run", str(ref_cfg), "--no-progress"], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    whole = time.time() - t0
    cfg = pipeline_config(tmp_path, "killed")
    cmd = [sys.executable, "-m", "lmforge", "run", str(cfg), "--no-progress"]
    rng, moments = random.Random(2026), []
    for _ in range(5):
        delay = rng.uniform(2.0, 0.8 * whole)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
            moments.append(f"{delay:.1f}s (finished first)")
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            moments.append(f"{delay:.1f}s")
    print("kill -9 moments:", moments)
    assert sum("finished" not in m for m in moments) >= 3, moments  # most of the five really interrupted a run
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, (moments, p.stderr[-2000:])
    run, ref = tmp_path / "killed", tmp_path / "reference"
    got, want = (json.loads((r / "pretrain" / "summary.json").read_text()) for r in (run, ref))
    assert got["best"]["val_loss"] == pytest.approx(want["best"]["val_loss"], abs=1e-6), moments
    got, want = (json.loads((r / "finetune" / "summary.json").read_text()) for r in (run, ref))
    assert got["best_step"] == want["best_step"], moments
    for split, m in want["results"].items():
        assert got["results"][split] == pytest.approx(m, abs=1e-6), (split, moments)
    digest = lambda path: hashlib.sha256(path.read_bytes()).hexdigest()  # noqa: E731
    for rel in ("finetune/best/model.safetensors", "data/tokens/train/shard_00000.bin", "tokenizer/tokenizer.json"):
        assert digest(run / rel) == digest(ref / rel), (rel, moments)
    assert {s["status"] for s in stamps(run).values()} <= {"ran", "resumed", "skipped"}, moments
