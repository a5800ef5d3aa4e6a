"""A full disk — a real one: a small tmpfs mounted for the test (skipped where mounting is not
permitted) — gives a clear error naming the file, never a traceback; what was finished stays
valid; once space is freed the same command finishes with the same outputs as a run that never
ran out of space (data prepare: byte-identical; pretraining: the same losses)."""

import json
import subprocess

import pytest
from conftest import resize
from prepare_helpers import config, outputs, reference  # noqa: F401 (a fixture)

from lmforge.cli import main
from lmforge.training import checkpoint as ckpt


@pytest.mark.parametrize("size", ["300k", "900k", "1150k"])  # runs out in ingest / split-tokenize / pack-report
def test_data_prepare_on_a_full_disk(reference, small_disk, size, capsys):
    root, files, want = reference
    run = small_disk / "run"
    cfg = config(root, f"full_{size}", files, run_dir=run)
    resize(small_disk, size)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "run the same command again" in err and str(small_disk) in err, err
    assert "Traceback" not in err
    resize(small_disk, "64m")  # space freed
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    assert outputs(run) == {k: v.replace(str(root / "ref"), str(run)) for k, v in want.items()}


def _losses(out):
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r.get("kind") == "train"}


def test_pretrain_checkpoint_on_a_full_disk(prepared, cfg_for, small_disk, capsys):
    over = {"pretrain.max_steps": 40, "pretrain.save_every": 10, "pretrain.eval_every": 1000, "pretrain.keep_last": 10}
    assert main(["pretrain", str(cfg_for("full_ref", **over)), "--no-progress"]) == 0
    ref_out = prepared / "full_ref" / "pretrain"
    one = sum(f.stat().st_size for f in ckpt.list_checkpoints(ref_out / "checkpoints")[0].iterdir())
    cfg = cfg_for("full", **{**over, "run_dir": str(small_disk / "full")})
    resize(small_disk, f"{int(2.5 * one) // 1024 + 64}k")  # room for two checkpoints and the logs, not four
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    out = small_disk / "full" / "pretrain"
    kept = ckpt.list_checkpoints(out / "checkpoints")
    assert 1 <= len(kept) < 4
    for k in kept:
        ckpt.read_checkpoint_state(k)  # every checkpoint left is complete and verifies
    assert not list((out / "checkpoints").glob(".tmp-*"))  # the half-written one gave its space back
    resize(small_disk, "64m")
    assert main(["pretrain", str(cfg), "--resume", "--no-progress"]) == 0
    got, want = _losses(out), _losses(ref_out)
    assert sorted(got) == sorted(want) == list(range(1, 41))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6


def test_read_only_run_dir(reference, small_disk, capsys):
    """A read-only file system (root cannot write there either): one clear error naming the folder."""
    root, files, _ = reference
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    cfg = config(root, "ro", files, run_dir=small_disk / "run")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and str(small_disk) in err and "Traceback" not in err, err


def _ft_config(root, run_dir, tokenizer_dir):
    import random

    import yaml

    rng = random.Random(0)
    for name, n in (("train", 160), ("val", 40)):
        with open(root / f"{name}.jsonl", "w") as fh:
            for i in range(n):
                label = ("neg", "pos")[i % 2]
                words = " ".join(f"w{rng.randrange(100)}" for _ in range(6)) + (" the" if label == "pos" else " of")
                fh.write(json.dumps({"text": words, "label": label}) + "\n")
    cfg = {"name": "ft", "run_dir": str(run_dir), "seed": 3,
           "model": {"arch": "encoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 32, "mlp": "gelu",
                     "norm_position": "post", "type_vocab_size": 2, "embedding_norm": True, "final_norm": False},
           "finetune": {"init": "random", "tokenizer": str(tokenizer_dir),
                        "data": {"train_file": str(root / "train.jsonl"), "val_file": str(root / "val.jsonl"),
                                 "max_length": 32},
                        "loop": {"epochs": 2, "batch_size": 16, "threads": 1, "eval_every": 5}}}
    (root / "ft.yaml").write_text(yaml.safe_dump(cfg))
    return root / "ft.yaml"


@pytest.mark.parametrize("size", ["200k", "1m"])  # out of space at the first checkpoint / the second one
def test_finetune_on_a_full_disk(tmp_path, small_disk, tokenizer_dir, size, capsys):
    cfg = _ft_config(tmp_path, small_disk / "ft", tokenizer_dir)
    resize(small_disk, size)
    rc = main(["finetune", str(cfg), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and "No space left on device" in err and "Traceback" not in err, err
    out = small_disk / "ft" / "finetune"
    for k in ckpt.list_checkpoints(out / "checkpoints"):
        ckpt.read_checkpoint_state(k)  # what is left verifies
    resize(small_disk, "64m")
    args = ["finetune", str(cfg), "--no-progress"] + (["--resume"] if ckpt.list_checkpoints(out / "checkpoints")
                                                      else ["--overwrite"])
    assert main(args) == 0
    assert json.loads((out / "summary.json").read_text())["results"]["val"]["accuracy"] >= 0.0
    assert (out / "best" / "model.safetensors").is_file()


def test_onnx_export_on_a_full_disk(make_task_model, tmp_path, small_disk, capsys):
    """An export that runs out of space: one clear error, no half-written folder in place of the
    export; once space is freed the same command writes the verified export."""
    from conftest import ENCODER

    make_task_model(tmp_path / "ft" / "best", ENCODER, "sequence", ["a", "b"])
    out = small_disk / "onnx"
    resize(small_disk, "200k")
    assert main(["export", str(tmp_path / "ft"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    assert not out.exists() and not list(small_disk.glob("*.tmp"))  # nothing half-written left behind
    resize(small_disk, "64m")
    assert main(["export", str(tmp_path / "ft"), "--out", str(out)]) == 0
    assert json.loads((out / "export.json").read_text())["verification"]["max_abs_logit_diff"] < 1e-4
