"""Masked-image pretraining end to end: ``data prepare`` → ``pretrain`` (MAE) → ``finetune`` from
its encoder (with the random-init comparison); exact resume; the config errors a user meets."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from lmforge import api
from lmforge.cli import main
from lmforge.config.errors import ConfigError
from lmforge.models.weights import read_safetensors
from lmforge.training.metric_logging import read_records

DIGITS = {"data": {"kind": "image", "image": {"sources": [{"builtin": "digits"}], "max_images": 600},
                   "split": {"val": 0.15, "test": 0.2}},
          "model": {"arch": "vit", "patch_size": 2, "n_layer": 2, "n_head": 2, "d_model": 16, "d_ff": 32, "mlp": "gelu"},
          "pretrain": {"max_steps": 40, "batch_size": 64, "lr": 2e-3, "warmup_steps": 5, "eval_every": 10,
                       "save_every": 20, "eval_batches": 2, "log_every": 10, "threads": 1,
                       "mae_decoder_width": 16, "mae_decoder_heads": 2, "mae_decoder_layers": 1},
          "finetune": {"optim": {"lr": 3e-3}, "loop": {"max_steps": 30, "batch_size": 32, "eval_every": 15, "threads": 1}}}


def write(tmp: Path, name: str, cfg: dict) -> str:
    p = tmp / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "run_dir": str(tmp / name), "seed": 3, **cfg}))
    return str(p)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mae")
    cfg = write(tmp, "mae", DIGITS)
    assert main(["data", "prepare", cfg, "--no-progress"]) == 0
    assert main(["pretrain", cfg, "--no-progress"]) == 0
    return tmp, cfg, tmp / "mae"


def test_pretrain_writes_an_encoder_that_learned(pretrained):
    _, _, run = pretrained
    out = run / "pretrain"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "mae" and summary["steps"] == 40 and summary["mask_ratio"] == 0.75
    evals = [r["val_loss"] for r in read_records(out / "metrics.jsonl") if r["kind"] == "eval"]
    assert len(evals) == 4 and min(evals[1:]) < evals[0]  # the reconstruction improves
    assert summary["best"]["val_loss"] == min(evals)
    for f in ("loss_curve.png", "reconstructions.png", "best/config.json", "best/model.safetensors"):
        assert (out / f).is_file(), f
    record = json.loads((out / "best" / "config.json").read_text())
    assert record["lmforge_kind"] == "image" and record["pretrained"]["objective"] == "mae"
    assert record["step"] == summary["best"]["step"]
    keys = set(read_safetensors(out / "best" / "model.safetensors"))  # the ViT alone, without the decoder
    assert {"patches.proj.weight", "cls", "pos", "head.weight"} <= keys and not keys & {"mask_token", "embed.weight"}


def test_finetune_starts_from_the_encoder_and_compares_with_random(pretrained):
    tmp, _, run = pretrained
    ft = {**DIGITS["finetune"], "init": str(run / "pretrain"), "compare_random": True, "compare_seeds": 2}
    cfg = write(tmp, "ft", {**DIGITS, "run_dir": str(run), "finetune": ft})
    assert main(["finetune", cfg, "--no-progress", "--overwrite"]) == 0
    summary = json.loads((run / "finetune" / "summary.json").read_text())
    encoder = read_safetensors(run / "pretrain" / "best" / "model.safetensors")
    assert str(run / "pretrain" / "best") in summary["start"] and f"({len(encoder)}/{len(encoder)} tensors)" in summary["start"]
    comparison = summary["comparison"]
    assert comparison["metric"] == "accuracy" and len(comparison["splits"]["test"]["random"]["values"]) == 2
    assert "random" in json.loads((run / "finetune" / "compare" / "random_seed4" / "summary.json").read_text())["start"]


def test_resume_continues_exactly(tmp_path, pretrained):
    _, _, run = pretrained
    raw = {"name": "r", "run_dir": str(tmp_path / "r"), "seed": 3, **DIGITS,
           "pretrain": {**DIGITS["pretrain"], "data_dir": str(run / "data"), "max_steps": 20}}
    api.pretrain(api.config({**raw, "run_dir": str(tmp_path / "whole")}), progress=False)
    parts = api.config(raw)
    stopped = api.pretrain(parts, progress=False, on_eval=lambda step, m: step == 10)
    assert stopped["steps"] == 10 and stopped["stop_reason"] == "stopped by on_eval"
    api.pretrain(parts, resume=True, progress=False)
    a = [r["loss"] for r in read_records(tmp_path / "whole" / "pretrain" / "metrics.jsonl") if r["kind"] == "train"]
    b = [r["loss"] for r in read_records(tmp_path / "r" / "pretrain" / "metrics.jsonl") if r["kind"] == "train"]
    assert a == pytest.approx(b, abs=1e-6) and len(a) == 2
    wa = read_safetensors(tmp_path / "whole" / "pretrain" / "best" / "model.safetensors")
    wb = read_safetensors(tmp_path / "r" / "pretrain" / "best" / "model.safetensors")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


@pytest.mark.parametrize("change, key", [
    ({"model": {"arch": "cnn", "conv_channels": [8]}}, "model.arch"),
    ({"pretrain": {"objective": "mlm"}}, "pretrain.objective"),
])
def test_config_errors_name_the_key(change, key):
    raw = {"name": "bad", **DIGITS, **change}
    with pytest.raises(ConfigError) as err:
        api.config(raw)
    assert key in str(err.value)


def test_mae_is_the_default_on_images_and_refused_elsewhere():
    assert api.config({"name": "ok", **DIGITS}).pretrain.objective == "mae"
    with pytest.raises(ConfigError, match="pretrain.objective"):
        api.config({"name": "t", "data": {"sources": [{"path": "x.jsonl"}]}, "pretrain": {"objective": "mae"}})
    table = {"kind": "tabular", "tabular": {"sources": [{"builtin": "penguins"}], "columns": {"target": "species", "numeric": ["bill_length_mm"]}}}
    with pytest.raises(ConfigError, match="no pretraining objective"):
        api.config({"name": "t", "data": table, "model": {"arch": "mlp"}, "pretrain": {"max_steps": 5}})


def test_run_pretrains_finetunes_exports_serves_and_reports(tmp_path):
    run = tmp_path / "whole"
    ft = {**DIGITS["finetune"], "init": str(run / "pretrain")}
    cfg = write(tmp_path, "whole", {**DIGITS, "pretrain": {**DIGITS["pretrain"], "max_steps": 10}, "finetune": ft})
    assert main(["run", cfg, "--no-progress"]) == 0
    stages = ("data", "pretrain", "finetune", "export", "serve")  # image models are exported and served too
    assert all((run / "pipeline" / f"{stage}.done.json").is_file() for stage in stages)
    served = json.loads((run / "pipeline" / "serve.done.json").read_text())
    assert json.loads(served["result"]["response"])["results"][0]["label"] in [str(d) for d in range(10)]  # a test image sent
    assert str(run / "pretrain" / "best") in json.loads((run / "finetune" / "summary.json").read_text())["start"]
    html = (run / "report" / "report.html").read_text()
    assert "Masked-image pretraining" in html and "Pretraining curves" in html
