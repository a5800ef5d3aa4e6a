"""The Python API (lmforge.api): the README's example runs as written, and ``load(...).predict``
works on texts and images as on table rows."""

import re
from pathlib import Path

import numpy as np
import pytest

from lmforge import api
from lmforge.config.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    block = re.search(r"<!-- api-example -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "README.md (api-example)", "exec"), scope)
    summary, metrics, model = scope["summary"], scope["metrics"], scope["model"]
    assert summary["results"]["test"]["accuracy"] > 0.9
    assert metrics["accuracy"] == pytest.approx(summary["results"]["test"]["accuracy"])
    assert Path(metrics["report"]).is_file()
    (pred,) = model.predict([{"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0,
                              "flipper_length_mm": 230, "body_mass_g": 5800, "sex": "male"}])
    assert pred["label"] == "Gentoo" and set(pred["probs"]) == {"Adelie", "Chinstrap", "Gentoo"}
    assert "test accuracy" in capsys.readouterr().out


def test_config_reports_every_problem_with_its_key():
    with pytest.raises(ConfigError) as exc:
        api.config({"name": "x", "finetune": {"optim": {"lr": -1}, "loop": {"epochs": "many"}}})
    text = str(exc.value)
    assert "finetune.optim.lr" in text and "finetune.loop.epochs" in text
    cfg = api.config({"name": "x"}, {"finetune.loop.epochs": 2, "seed": 7})
    assert cfg.finetune.loop.epochs == 2 and cfg.seed == 7


def test_load_and_predict_texts(tmp_path, make_task_model):
    from conftest import ENCODER

    folder = make_task_model(tmp_path / "clf", ENCODER, "sequence", ["neg", "pos"])
    model = api.load(folder)
    out = model.predict(["w1 w2 which", "not an"] * 3, batch_size=4)
    assert len(out) == 6 and all(r["label"] in ("neg", "pos") for r in out)
    assert out[0]["probs"] == out[2]["probs"]  # the same text, whatever its batch
    assert model.predict("w1 w2 which")[0]["probs"] == out[0]["probs"]


def test_load_and_predict_images(tmp_path):
    cfg = api.config({"name": "img", "run_dir": str(tmp_path / "img"), "seed": 3,
                      "data": {"kind": "image", "image": {"sources": [{"builtin": "digits"}], "max_images": 400},
                               "split": {"val": 0.15, "test": 0.2}},
                      "model": {"arch": "cnn", "conv_channels": [8, 16], "hidden": [32]},
                      "finetune": {"task": "image", "optim": {"lr": 3e-3},
                                   "loop": {"epochs": 2, "batch_size": 32, "threads": 1}}})
    api.prepare(cfg, progress=False)
    api.finetune(cfg, progress=False)
    model = api.load(cfg.paths.finetune.root)
    images = np.load(cfg.paths.data / "images" / "test.images.npy")[:5]  # (5, 1, 8, 8) uint8
    by_array = model.predict(images)
    assert len(by_array) == 5 and all(r["label"] in model.labels for r in by_array)
    assert [r["label"] for r in model.predict(images[:, 0])] == [r["label"] for r in by_array]  # (N, H, W) too
    with pytest.raises(Exception, match=r"uint8 pixels of shape \(N, 1, 8, 8\)"):
        model.predict(images.astype(np.float32))
