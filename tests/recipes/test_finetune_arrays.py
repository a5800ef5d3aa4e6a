"""Images and tables end to end through the CLI: ``data prepare`` → ``finetune`` → ``evaluate`` →
``predict``, on data that ships with packages (scikit-learn's digits, palmerpenguins); exact
resume; and the errors a user meets first."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lmforge.cli import main
from lmforge.layout import list_checkpoints

IMAGES = {"data": {"kind": "image", "image": {"sources": [{"builtin": "digits"}], "max_images": 700,
                                              "augment": {"enabled": True, "rotation": 8, "translate": 0.1}},
                   "split": {"val": 0.15, "test": 0.2}},
          "model": {"arch": "cnn", "conv_channels": [8, 16], "hidden": [32]},
          "finetune": {"task": "image", "optim": {"lr": 3e-3}, "loop": {"epochs": 4, "batch_size": 32, "threads": 1}}}
TABLE = {"data": {"kind": "tabular",
                  "tabular": {"sources": [{"builtin": "penguins"}],
                              "columns": {"target": "species",
                                          "numeric": ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
                                          "categorical": ["island", "sex"]},
                              "missing": {"strategy": "median"}},
                  "split": {"val": 0.15, "test": 0.2}},
         "model": {"arch": "mlp", "hidden": [32]},
         "finetune": {"task": "tabular", "optim": {"lr": 1e-2}, "loop": {"epochs": 15, "batch_size": 32, "threads": 1}}}


def write(tmp: Path, name: str, cfg: dict) -> str:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "run_dir": str(tmp / name), "seed": 3, **cfg}))
    return str(p)


def test_images_prepare_finetune_evaluate_predict(tmp_path, capsys):
    cfg = write(tmp_path, "img", IMAGES)
    run = tmp_path / "img"
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    man = json.loads((run / "data" / "manifest.json").read_text())
    assert man["kind"] == "image" and man["shape"] == [1, 8, 8]
    assert main(["finetune", cfg, "--no-progress"]) == 0
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    assert summary["results"]["test"]["accuracy"] > 0.8, summary["results"]  # 10 classes: chance is 0.1
    assert (run / "finetune" / "eval" / "test" / "confusion_matrix.png").is_file()
    assert (run / "finetune" / "curves.png").is_file()
    # evaluate the saved model as a user would: the same test accuracy as the recipe's own final evaluation
    capsys.readouterr()
    assert main(["evaluate", str(run / "finetune"), "--data-dir", str(run / "data"), "--split", "test",
                 "--out", str(tmp_path / "ev")]) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["accuracy"] == pytest.approx(summary["results"]["test"]["accuracy"])
    # predict on a raw .npz of images (no labels)
    test = np.load(run / "data" / "images" / "test.images.npy")[:5]
    np.savez(tmp_path / "five.npz", images=test[:, 0])
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run / "finetune" / "best"), "--file", str(tmp_path / "five.npz"), "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 5 and all(r["label"] in man["labels"] and 0 < r["score"] <= 1 for r in recs)
    # what users have: PNG files in a flat folder (with a stray text file and a corrupt PNG), one file, a glob
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i, img in enumerate(test):
        Image.fromarray(img[0]).save(flat / f"shot{i}.png")
    (flat / "notes.txt").write_text("not an image")
    (flat / "broken.png").write_bytes(b"\x89PNG not really")
    want = [r["label"] for r in recs]
    for given, n in ((flat, 5), (flat / "shot3.png", 1), (tmp_path / "flat" / "shot[0-2].png", 3)):
        capsys.readouterr()
        assert main(["predict", str(run / "finetune"), "--file", str(given), "--out", str(out)]) == 0, given
        got = {Path(json.loads(line)["id"]).name: json.loads(line)["label"] for line in out.read_text().splitlines()}
        assert len(got) == n and all(got[f"shot{i}.png"] == want[i] for i in range(5) if f"shot{i}.png" in got)
        if given == flat:  # the corrupt PNG is named, not silently dropped (the .txt is not an image file at all)
            assert "broken.png" in capsys.readouterr().out
    # image paths on standard input, one per line (a missing one is named, not silently dropped)
    import io
    import sys

    listed = [str(flat / "shot4.png"), str(flat / "shot1.png"), str(flat / "gone.png")]
    stdin, sys.stdin = sys.stdin, io.StringIO("\n".join(listed) + "\n")
    try:
        capsys.readouterr()
        assert main(["predict", str(run / "finetune"), "--file", "-", "--out", str(out)]) == 0
    finally:
        sys.stdin = stdin
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["id"] for g in got] == listed[:2] and [g["label"] for g in got] == [want[4], want[1]]
    assert "gone.png" in capsys.readouterr().out
    # without --out, evaluate reports where the run's own evaluation is (finetune/eval/), not in best/
    assert main(["evaluate", str(run / "finetune"), "--data-dir", str(run / "data"), "--split", "val"]) == 0
    assert (run / "finetune" / "eval" / "val" / "report.md").is_file() and not (run / "finetune" / "best" / "eval").exists()
    # a missing input is "no such file", whatever its name says it is
    capsys.readouterr()
    for name in ("nope.npz", "nope.jsonl"):
        assert main(["predict", str(run / "finetune" / "best"), "--file", str(tmp_path / name)]) == 1
        err = capsys.readouterr().err
        assert f"{tmp_path / name}: no such file or folder" in err and "data.image.sources" not in err


def test_table_prepare_finetune_evaluate_predict(tmp_path):
    cfg = write(tmp_path, "tab", TABLE)
    run = tmp_path / "tab"
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    man = json.loads((run / "data" / "manifest.json").read_text())
    assert man["kind"] == "tabular" and man["task"] == "classification"
    assert main(["finetune", cfg, "--no-progress"]) == 0
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    assert summary["results"]["test"]["accuracy"] > 0.9, summary["results"]  # penguin species are easy
    # predict on raw CSV rows with missing cells: the saved preprocessor imputes and scales them
    import palmerpenguins

    raw = palmerpenguins.load_penguins().drop(columns=["species"])
    raw.iloc[:6].to_csv(tmp_path / "rows.csv", index=False)
    assert raw.iloc[:6].isna().any().any()
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(run / "finetune"), "--file", str(tmp_path / "rows.csv"), "--out", str(out)]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 6 and {r["label"] for r in recs} <= set(man["labels"])


def test_table_regression(tmp_path):
    cfg = dict(TABLE, finetune={**TABLE["finetune"], "loop": {"epochs": 30, "batch_size": 32, "threads": 1}})
    cfg["data"] = json.loads(json.dumps(TABLE["data"]))
    cols = cfg["data"]["tabular"]["columns"]
    cols.update(target="body_mass_g", numeric=["bill_length_mm", "bill_depth_mm", "flipper_length_mm"],
                categorical=["species", "island", "sex"])
    path = write(tmp_path, "reg", cfg)
    assert main(["data", "prepare", path, "--no-progress"]) == 0
    assert main(["finetune", path, "--no-progress"]) == 0
    s = json.loads((tmp_path / "reg" / "finetune" / "summary.json").read_text())
    assert s["task"] == "regression" and s["selection_metric"] == "rmse"
    test = s["results"]["test"]
    assert test["r2"] > 0.6 and test["rmse"] < 500, test  # body mass spans ~2,700–6,300 g (std ~800)
    assert (tmp_path / "reg" / "finetune" / "eval" / "test" / "residuals.png").is_file()


def test_resume_is_exact(tmp_path):
    """Ctrl-C mid-run, then --resume: the final weights equal an uninterrupted run's."""
    from conftest import interrupt_after
    from safetensors.numpy import load_file

    cfg = dict(IMAGES, finetune={**IMAGES["finetune"], "loop": {"epochs": 6, "batch_size": 32, "threads": 1,
                                                                "log_every": 1, "save_every": 3}})
    full, part = write(tmp_path, "full", cfg), write(tmp_path, "part", cfg)
    for p in (full, part):
        assert main(["data", "prepare", p, "--no-progress"]) == 0
    assert main(["finetune", full, "--no-progress"]) == 0
    code, err, step = interrupt_after(["finetune", part, "--no-progress"], tmp_path / "part" / "finetune" / "metrics.jsonl", 20)
    assert code != 0 and step > 0, err[-2000:]
    assert main(["finetune", part, "--no-progress", "--resume"]) == 0
    a = load_file(list_checkpoints(tmp_path / "full" / "finetune" / "checkpoints")[-1] / "model.safetensors")
    b = load_file(list_checkpoints(tmp_path / "part" / "finetune" / "checkpoints")[-1] / "model.safetensors")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_wrong_arch_and_kind_are_named(tmp_path, capsys):
    cfg = write(tmp_path, "bad", dict(IMAGES, model={"arch": "mlp"}))
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    assert main(["finetune", cfg, "--no-progress"]) != 0
    assert "model.arch: mlp does not fit finetune.task: image" in capsys.readouterr().err
    # a task of another kind than data.kind: a config error before anything runs
    cfg = write(tmp_path, "bad2", dict(IMAGES, finetune={**IMAGES["finetune"], "task": "tabular"},
                                       model={"arch": "mlp"}))
    assert main(["data", "prepare", cfg, "--no-progress"]) != 0
    assert "finetune.task: tabular learns on tabular data, but data.kind is image" in capsys.readouterr().err
    # a table config pointed at a prepared image folder: named when the folder is read
    cfg = write(tmp_path, "bad3", dict(TABLE, finetune={**TABLE["finetune"], "data": {"data_dir": str(tmp_path / "bad" / "data")}}))
    assert main(["finetune", cfg, "--no-progress"]) != 0
    assert "holds image data, but finetune.task is tabular" in capsys.readouterr().err
    # the kind is said once: no finetune.task on image data means the image task
    cfg = write(tmp_path, "implied", dict(IMAGES, finetune={k: v for k, v in IMAGES["finetune"].items() if k != "task"}))
    from lmforge.config.experiment import load_config

    assert load_config(cfg).finetune.task == "image"


def test_tune_searches_a_table_model(tmp_path):
    """lmforge tune runs its trials through the same finetune command: here on the run's prepared table."""
    cfg = dict(TABLE, tune={"space": {"finetune.optim.lr": {"type": "float", "low": 3e-3, "high": 3e-2, "log": True},
                                      "model.arch": {"type": "categorical", "choices": ["linear", "mlp"]}},
                            "sampler": "random", "pruner": "none", "n_trials": 2})
    cfg["finetune"] = {**TABLE["finetune"], "loop": {"epochs": 5, "batch_size": 32}}
    path = write(tmp_path, "tune", cfg)
    assert main(["data", "prepare", path, "--no-progress"]) == 0
    assert main(["tune", path]) == 0
    trials = [json.loads(line) for line in (tmp_path / "tune" / "tune" / "trials.jsonl").read_text().splitlines()]
    assert len(trials) == 2 and all(t["state"] == "complete" and t["value"] > 0.8 for t in trials), trials


def test_tune_minimizes_regression_errors():
    """A table regression tuned on rmse or mae is minimized (auto direction), as model selection does."""
    from lmforge.recipes.tune import resolve_metric
    from lmforge.training.finetune_config import FinetuneConfig
    from lmforge.training.tune_config import TuneConfig

    for metric in ("rmse", "mae", "loss"):
        assert resolve_metric(TuneConfig(metric=metric), FinetuneConfig(task="tabular"))[1] == "minimize"
    assert resolve_metric(TuneConfig(metric="r2"), FinetuneConfig(task="tabular"))[1] == "maximize"


def test_table_drops_and_missing_cells_are_said_under_no_progress(tmp_path, capsys):
    """Penguins has 11 rows with missing cells: drop_row loses them with a line (and a warning when more
    than 20%), interpolate without an order key warns once, and missing.strategy none is refused
    before the first training step, naming the columns — not a 'non-finite loss' at step 0."""
    cfg = json.loads(json.dumps(TABLE))
    cfg["data"]["tabular"]["missing"] = {"strategy": "drop_row"}
    assert main(["data", "prepare", write(tmp_path, "rows", cfg), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    man = json.loads((tmp_path / "rows" / "data" / "manifest.json").read_text())
    n_dropped = sum(v for k, v in man["counts"]["rejected_by_reason"].items() if k.startswith("missing_value"))
    assert n_dropped == 11
    reasons = "missing_value:sex 9, missing_value:bill_length_mm 2"
    assert f"drop_row: 344 → 333 (3% dropped: {reasons})" in out
    assert f"kept 333 of 344 rows; dropped 11 ({reasons}); every dropped one: " in out
    assert "warning" not in err  # 3% is below the warning share

    cfg["data"]["tabular"]["missing"] = {"strategy": "interpolate"}
    assert main(["data", "prepare", write(tmp_path, "interp", cfg), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("without data.tabular.columns.order") == 1

    cfg["data"]["tabular"]["missing"] = {"strategy": "none"}
    path = write(tmp_path, "none", cfg)
    assert main(["data", "prepare", path, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["finetune", path, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "the train split has" in err and "missing (NaN/inf) input value(s)" in err
    assert "bill_length_mm (" in err and "data.tabular.missing.strategy" in err
    assert not (tmp_path / "none" / "finetune" / "checkpoints").exists()


def test_a_step_that_drops_most_rows_warns(tmp_path, capsys):
    cfg = json.loads(json.dumps(TABLE))
    cfg["data"]["labels"] = ["Adelie"]  # 2 of 3 species are not declared: most rows lack a usable target
    assert main(["data", "prepare", write(tmp_path, "few", cfg), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "target: 344 → 152" in out
    assert "warning: the target step dropped 56% of its 344 records (unknown_label 192)" in err


def test_kill9_then_resume_is_exact_for_images(tmp_path):
    """The one fine-tune loop's guarantee for an image task too (augmentation on): kill -9 after a
    checkpoint, --resume, and the logged losses, best step and final weights equal an uninterrupted run's."""
    import subprocess
    import sys

    from conftest import kill9_after_checkpoint
    from safetensors.numpy import load_file

    cfg = dict(IMAGES, finetune={**IMAGES["finetune"], "loop": {"max_steps": 40, "batch_size": 32, "threads": 1,
                                                                "log_every": 1, "save_every": 5, "eval_every": 10}})
    full, killed = write(tmp_path, "full", cfg), write(tmp_path, "killed", cfg)
    for p in (full, killed):
        assert main(["data", "prepare", p, "--no-progress"]) == 0
    assert main(["finetune", full, "--no-progress"]) == 0
    kill9_after_checkpoint(["finetune", killed, "--no-progress"], tmp_path / "killed" / "finetune" / "checkpoints", 10)
    assert not (tmp_path / "killed" / "finetune" / "summary.json").exists(), "run finished before the kill"
    r = subprocess.run([sys.executable, "-m", "lmforge", "finetune", killed, "--resume", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout

    def losses(run):
        recs = [json.loads(line) for line in (tmp_path / run / "finetune" / "metrics.jsonl").read_text().splitlines()]
        return {r["step"]: r["loss"] for r in recs if r.get("kind") == "train"}

    want, got = losses("full"), losses("killed")
    assert sorted(got) == sorted(want) == list(range(1, 41))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6
    s_ref, s_got = (json.loads((tmp_path / n / "finetune" / "summary.json").read_text()) for n in ("full", "killed"))
    assert s_got["best_step"] == s_ref["best_step"]
    a, b = (load_file(str(tmp_path / n / "finetune" / "best" / "model.safetensors")) for n in ("full", "killed"))
    assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_table_predict_says_every_bad_cell_per_column_and_strict_refuses(tmp_path, capsys):
    """Raw rows with a number that does not parse, a category never seen in training and empty cells:
    predicted (imputed / unknown), with one warning per column naming the counts; --strict refuses."""
    cfg = write(tmp_path, "tab", TABLE)
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    assert main(["finetune", cfg, "--no-progress"]) == 0
    rows = tmp_path / "rows.csv"  # no id column, no target column: what a user has
    rows.write_text("island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n"
                    "Biscoe,48.6,16.0,230,5800,male\n"
                    "Atlantis,abc,18.0,190,3700,female\n"
                    "Dream,,17.5,,3500,\n")
    out = tmp_path / "pred.jsonl"
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "tab" / "finetune"), "--file", str(rows), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3
    assert "column 'bill_length_mm': 1 cell(s) that do not parse" in err and "1 missing cell(s)" in err
    assert "column 'island': 1 category value(s) the model never saw" in err
    assert "column 'flipper_length_mm': 1 missing cell(s)" in err and "column 'sex': 1 missing cell(s)" in err
    assert "column 'body_mass_g'" not in err  # clean columns are not mentioned
    assert main(["predict", str(tmp_path / "tab" / "finetune"), "--file", str(rows), "--strict"]) != 0
    err = capsys.readouterr().err
    assert "--strict" in err and "'island'" in err and "Traceback" not in err
