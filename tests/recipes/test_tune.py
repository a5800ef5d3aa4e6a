"""``lmforge tune`` on tiny data: each trial a fresh fine-tuning process; samplers, pruning,
outputs, a kill -9 of the tuner followed by ``--resume``, and a bad search space rejected whole
before any trial runs."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("optuna")

from conftest import write_keyword_data  # noqa: E402
from lmforge.cli import main  # noqa: E402

LABELS = ["a", "b", "c"]


def write_data(path: Path, n: int, seed: int) -> str:
    return str(write_keyword_data(path, n, seed, LABELS))


def tune_config(root: Path, tokenizer_dir, name: str, space: dict, **tune) -> Path:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 7,
           "model": {"arch": "encoder", "n_layer": 1, "n_head": 2, "d_model": 32, "max_seq_len": 32, "mlp": "gelu",
                     "norm_position": "post", "type_vocab_size": 2, "embedding_norm": True, "final_norm": False},
           "finetune": {"init": "random", "tokenizer": str(tokenizer_dir),
                        "data": {"train_file": write_data(root / "train.jsonl", 240, 1),
                                 "val_file": write_data(root / "val.jsonl", 60, 2), "max_length": 32},
                        "optim": {"lr": 1e-3},
                        "loop": {"epochs": 6, "batch_size": 16, "eval_every": 15, "log_every": 5}},
           "tune": {"space": space, "n_trials": 4, "sampler": "random", **tune}}
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def trials(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "trials.jsonl").read_text().splitlines()]


def test_random_search_writes_everything_and_keeps_the_best(tmp_path, tokenizer_dir, capsys):
    space = {"finetune.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
             "finetune.loop.batch_size": {"type": "categorical", "choices": [8, 16]}}
    cfg = tune_config(tmp_path, tokenizer_dir, "rs", space, pruner="none", keep_best=1)
    assert main(["tune", str(cfg)]) == 0
    out = tmp_path / "rs" / "tune"
    rows = trials(out)
    assert [r["number"] for r in rows] == [0, 1, 2, 3] and all(r["state"] == "complete" for r in rows)
    assert len({r["params"]["finetune.optim.lr"] for r in rows}) == 4  # four different draws
    assert all(0 <= r["value"] <= 1 and r["peak_rss_mb"] > 50 for r in rows)
    peaks = [r["peak_rss_mb"] for r in rows]  # a fresh process per trial: memory cannot grow trial after trial
    assert max(peaks) <= 1.05 * min(peaks) and peaks[-1] <= 1.05 * peaks[0], peaks
    best = max(rows, key=lambda r: r["value"])
    kept = [p.name for p in (out / "trials").iterdir()]
    assert kept == [f"trial_{best['number']:04d}"]  # only the best trial's folder stays
    assert (out / "trials" / kept[0] / "finetune" / "best" / "model.safetensors").is_file()
    best_cfg = yaml.safe_load((out / "best.yaml").read_text())
    assert best_cfg["finetune"]["optim"]["lr"] == best["params"]["finetune.optim.lr"] and "tune" not in best_cfg
    report = (out / "report.md").read_text()
    assert report.count("| complete |") == 4 and (out / "tune.png").stat().st_size > 1000
    assert "## Parameter importance" in report and "| finetune.optim.lr |" in report.split("importance")[-1]
    said = capsys.readouterr().out
    assert said.count("[tune] trial ") == 4 and "best: trial" in said
    assert main(["tune", str(cfg)]) == 2  # a second run over the study needs --resume or --overwrite


def test_a_bad_search_space_is_rejected_whole(tmp_path, tokenizer_dir, capsys):
    space = {"finetune.optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2},
             "finetune.loop.batch_size": {"type": "int", "low": 32, "high": 8},
             "finetune.loop.epochs": {"type": "categorical", "choices": []},
             "finetune.loop.eval_every": {"type": "categorical", "choices": [5, "often"]}}
    assert main(["tune", str(tune_config(tmp_path, tokenizer_dir, "bad", space))]) == 2
    err = capsys.readouterr().err
    assert "tune.space.finetune.optim.lrr" in err and "did you mean 'finetune.optim.lr'" in err
    assert "above high" in err and "non-empty list of choices" in err, err
    assert not (tmp_path / "bad" / "tune" / "trials").exists() or not any((tmp_path / "bad" / "tune" / "trials").iterdir())


def test_bad_values_are_found_before_any_trial(tmp_path, tokenizer_dir, capsys):
    space = {"finetune.loop.eval_every": {"type": "categorical", "choices": [5, "often"]}}
    assert main(["tune", str(tune_config(tmp_path, tokenizer_dir, "badv", space))]) == 2
    err = capsys.readouterr().err
    assert "tune.space.finetune.loop.eval_every" in err and "'often'" in err, err
    assert not (tmp_path / "badv" / "tune" / "trials.jsonl").exists()


def test_median_pruning_stops_hopeless_trials(tmp_path, tokenizer_dir):
    """lr 1e-9 / 1e-10 cannot learn: after two trials that do, such a trial is stopped at one of
    its first validations and recorded as pruned (its folder deleted). The grid order for seed 5
    is lr 1e-2, 5e-3, 1e-9, 1e-10."""
    space = {"finetune.optim.lr": {"type": "categorical", "choices": [1e-2, 5e-3, 1e-9, 1e-10]}}
    cfg = tune_config(tmp_path, tokenizer_dir, "prune", space, sampler="grid", pruner="median", n_trials=10,
                      metric="loss", seed=5)
    assert main(["tune", str(cfg)]) == 0
    rows = trials(tmp_path / "prune" / "tune")
    assert [r["params"]["finetune.optim.lr"] for r in rows] == [1e-2, 5e-3, 1e-9, 1e-10]  # the grid, once each
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "pruned"], rows
    assert all(r["pruned_at_step"] in (15, 30) for r in rows[2:])  # stopped early: 90 steps in a full run
    assert all(not Path(r["run_dir"]).exists() for r in rows[2:])
    assert rows[0]["value"] < 0.9 and rows[1]["value"] < 0.9


def test_kill9_of_the_tuner_then_resume(tmp_path, tokenizer_dir, capsys):
    space = {"finetune.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    cfg = tune_config(tmp_path, tokenizer_dir, "kill", space, pruner="none", n_trials=4)
    env = {**os.environ, "LMFORGE_FAULT": "tune.trial_done:2"}
    r = subprocess.run([sys.executable, "-m", "lmforge", "tune", str(cfg)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    out = tmp_path / "kill" / "tune"
    before = trials(out)
    assert [x["number"] for x in before] == [0, 1]
    # continuing it with another search space is refused, naming what changed
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("0.01", "0.02"))
    assert main(["tune", str(other), "--resume"]) == 2
    assert "created for another search (tune.space.finetune.optim.lr changed)" in capsys.readouterr().err
    assert main(["tune", str(cfg), "--resume"]) == 0
    after = trials(out)
    assert [x["number"] for x in after] == [0, 1, 2, 3]
    assert after[:2] == before  # finished trials are not run again
    assert len({json.dumps(x["params"]) for x in after}) == 4  # the resumed sampler does not replay trials 0 and 1


@pytest.mark.slow
def test_memory_stays_flat_over_twenty_trials(tmp_path, tokenizer_dir):
    """The issue's check: the 20th trial's peak RSS within 5 % of the 1st."""
    space = {"finetune.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    cfg = tune_config(tmp_path, tokenizer_dir, "flat", space, pruner="none", n_trials=20, sampler="tpe")
    assert main(["tune", str(cfg)]) == 0
    rows = trials(tmp_path / "flat" / "tune")
    assert len(rows) == 20 and all(r["state"] == "complete" for r in rows)
    first, last = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
    print("peak RSS per trial (MB):", [r["peak_rss_mb"] for r in rows])
    assert abs(last - first) <= 0.05 * first


def test_ctrl_c_of_the_tuner_then_resume(tmp_path, tokenizer_dir):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) after the first trial is recorded:
    no new trial starts, the running one stops, exit 130 without a traceback; --resume tries an
    interrupted trial's parameters again and runs only what is missing."""
    import time

    space = {"finetune.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    cfg = tune_config(tmp_path, tokenizer_dir, "ctrlc", space, pruner="none", n_trials=3)
    out = tmp_path / "ctrlc" / "tune"
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "tune", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 300
    while not ((out / "trials.jsonl").is_file() and (out / "trials.jsonl").read_text().strip()):
        assert proc.poll() is None and time.time() < deadline, "the tuner ended before its first trial was recorded"
        time.sleep(0.05)
    time.sleep(1.0)  # the second trial is under way
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "Traceback" not in err and "--resume" in err, err[-2000:]
    before = trials(out)
    assert before[0]["state"] == "complete" and len(before) <= 2
    assert all(r["state"] == "interrupted" for r in before[1:])
    assert main(["tune", str(cfg), "--resume"]) == 0
    after = trials(out)
    assert after[:1] == before[:1]  # a finished trial is not run again
    assert sum(r["state"] == "complete" for r in after) == 3
    for r in before[1:]:  # the interrupted trial's parameters were tried again
        assert any(x["params"] == r["params"] and x["state"] == "complete" for x in after)


def test_tune_on_a_full_disk(tmp_path, tokenizer_dir, small_disk, capsys):
    """The study's folder (trial runs, trials.jsonl, the Optuna database) on a real file system that fills up
    after the first trial: the tuner stops with one error line naming the device and no traceback (trials
    are not recorded as failed because of the disk); once space is freed, ``--resume`` keeps the finished
    trials and completes the study with the values an uninterrupted study gets for the same parameters."""
    from conftest import resize, tree_bytes

    space = {"finetune.optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}
    ref = tune_config(tmp_path, tokenizer_dir, "disk_ref", space, pruner="none", n_trials=3)
    assert main(["tune", str(ref)]) == 0
    want = {json.dumps(r["params"], sort_keys=True): r["value"] for r in trials(tmp_path / "disk_ref" / "tune")}
    cfg = tune_config(tmp_path, tokenizer_dir, "disk", space, pruner="none", n_trials=3)
    cfg.write_text(cfg.read_text().replace(str(tmp_path / "disk"), str(small_disk / "disk")))
    resize(small_disk, f"{int(0.5 * tree_bytes(tmp_path / 'disk_ref')) // 1024}k")
    capsys.readouterr()
    assert main(["tune", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    out = small_disk / "disk" / "tune"
    before = trials(out) if (out / "trials.jsonl").is_file() else []
    assert all(r["state"] in ("complete", "interrupted") for r in before), before  # none "failed"
    resize(small_disk, "64m")
    assert main(["tune", str(cfg), "--resume"]) == 0
    after = trials(out)
    assert all(r in after for r in before if r["state"] == "complete")  # finished trials are not run again
    done = [r for r in after if r["state"] == "complete"]
    assert len(done) == 3
    # the unfinished trial's parameters were tried again, and the resumed sampler did not replay earlier draws
    assert len({json.dumps(r["params"], sort_keys=True) for r in done}) == 3
    for r in done:  # each trial is a deterministic fine-tuning run: same parameters, same value
        key = json.dumps(r["params"], sort_keys=True)
        if key in want:
            assert r["value"] == pytest.approx(want[key], abs=1e-6)
    assert sum(json.dumps(r["params"], sort_keys=True) in want for r in done) >= 1
