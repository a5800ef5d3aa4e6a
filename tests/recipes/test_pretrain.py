"""Pretraining end to end: loss goes down, kill -9 + resume is exact, DDP matches one process,
bad inputs give clear errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import interrupt_after

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.training import checkpoint as ckpt
from lmforge.errors import TrainingError
from lmforge.recipes.pretrain import pretrain


def run_pretrain(cfg_path, **kw) -> dict:
    """The pretrain recipe on a config file's sections."""
    cfg = load_config(str(cfg_path))
    return pretrain(cfg.pretrain, cfg.model, cfg.paths, cfg.seed, **kw)


def _losses(run: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}


def test_clm_pretrain_learns_and_writes_outputs(prepared, cfg_for, capsys):
    cfg = cfg_for("clm", **{"pretrain.max_steps": 60, "pretrain.eval_every": 30, "pretrain.save_every": 30})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    printed = capsys.readouterr().out  # no bar here: plain progress lines every log_every steps
    assert re.search(r"\[pretrain\] step 20/60: loss [\d.]+, lr [\d.e+-]+, \d+ ms/step, [\d,]+ tokens/s, ETA \d+m\d\ds",
                     printed), printed
    resolved = yaml.safe_load((prepared / "clm" / "pretrain" / "config.yaml").read_text())
    assert resolved["pretrain"]["max_steps"] == 60 and resolved["model"]["n_layer"] == 2
    summary = json.loads((prepared / "clm" / "pretrain" / "summary.json").read_text())
    # 60 steps of 4 windows of 32 tokens; a causal LM trains on 31 positions of each (nothing follows the last)
    assert summary["tokens_seen"] == 60 * 4 * 31 and summary["params"] > summary["non_embedding_params"] > 0
    run = prepared / "clm"
    losses = _losses(run)
    assert len(losses) == 60
    first = sum(losses[s] for s in range(1, 6)) / 5
    last = sum(losses[s] for s in range(56, 61)) / 5
    assert last < first - 0.5, (first, last)
    out = run / "pretrain"
    assert [p.name for p in ckpt.list_checkpoints(out / "checkpoints")] == ["step_0000030", "step_0000060"]
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert list((out / "tb").glob("events.out.tfevents.*")), "TensorBoard events written"
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rec = [r for r in records if r["kind"] == "train"][-1]
    assert rec["tokens_per_s"] > 0 and 0 < rec["mfu"] < 1 and "data_wait_s" in rec
    samples = [r for r in records if r["kind"] == "sample"]  # a greedy continuation at each validation
    assert [r["step"] for r in samples] == [30, 60] and all(r["text"] and r["prompt"] for r in samples)
    evals = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in x]
    assert evals[-1]["val_ppl"] == pytest.approx(2.718281828 ** evals[-1]["val_loss"], rel=1e-6)
    from lmforge.inference.config import GenerateConfig
    from lmforge.inference.generate import generate_text

    text = generate_text(GenerateConfig(checkpoint=str(out), prompt="the", max_new_tokens=10, seed=1))
    assert text.startswith("the") and len(text) > 3


def test_kill9_then_resume_gives_identical_losses(prepared, cfg_for):
    steps = 150
    over = {"pretrain.max_steps": steps, "pretrain.save_every": 10, "pretrain.eval_every": 1000,
            "model.dropout": 0.1}
    ref_cfg = cfg_for("ref", **over)
    assert main(["pretrain", str(ref_cfg), "--no-progress"]) == 0
    ref = _losses(prepared / "ref")

    cfg = cfg_for("killed", **over)
    ck_dir = prepared / "killed" / "pretrain" / "checkpoints"
    proc = subprocess.Popen([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.list_checkpoints(ck_dir)) < 2:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # a real kill -9, mid-run
    proc.wait()
    assert not (prepared / "killed" / "pretrain" / "summary.json").exists(), "run finished before the kill"
    last = ckpt.list_checkpoints(ck_dir)[-1]
    assert int(last.name.split("_")[1]) < steps
    r = subprocess.run([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--resume", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    got = _losses(prepared / "killed")
    assert sorted(got) == sorted(ref) == list(range(1, steps + 1))
    assert max(abs(got[s] - ref[s]) for s in ref) <= 1e-6


def test_ddp_two_processes_match_one_process(prepared, cfg_for):
    """Same global batch (2 x 4 sequences): 2 processes x accum 1 vs 1 process x accum 2.
    Tolerance 1e-5: only the order of the floating-point gradient sums differs."""
    one = cfg_for("one", **{"pretrain.max_steps": 12, "pretrain.grad_accum": 2})
    assert main(["pretrain", str(one), "--no-progress"]) == 0
    two = cfg_for("two", **{"pretrain.max_steps": 12, "pretrain.grad_accum": 1})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "lmforge", "pretrain", str(two), "--no-progress"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(prepared / "one"), _losses(prepared / "two")
    assert sorted(a) == sorted(b)
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5


def test_mlm_pretrain_reports_masked_accuracy(prepared, cfg_for):
    cfg = cfg_for("mlm", **{"model.arch": "encoder", "pretrain.objective": "mlm", "pretrain.max_steps": 10})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    evals = [json.loads(x) for x in (prepared / "mlm" / "pretrain" / "metrics.jsonl").read_text().splitlines()
             if '"eval"' in x]
    assert 0 <= evals[-1]["val_masked_acc"] <= 1


def test_corrupted_checkpoint_is_detected(prepared, cfg_for):
    cfg = cfg_for("corrupt", **{"pretrain.max_steps": 10, "pretrain.save_every": 5})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    last = ckpt.list_checkpoints(prepared / "corrupt" / "pretrain" / "checkpoints")[-1]
    with open(last / "model.safetensors", "r+b") as f:
        f.seek(200)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(ckpt.CheckpointError, match="checksum mismatch.*the previous checkpoint step_0000005 may be intact"):
        run_pretrain(cfg, resume=True, progress=False)
    last.rename(last.with_name(last.name + ".damaged"))  # what the message says to do
    assert run_pretrain(cfg, resume=True, progress=False)["steps"] == 10  # continued from step 5
    with pytest.raises(TrainingError, match="no checkpoint"):
        run_pretrain(cfg_for("never", **{"pretrain.max_steps": 1}), resume=True, progress=False)


def test_clear_errors_for_mismatched_model(prepared, cfg_for, capsys):
    cfg = cfg_for("vocab", **{"model.vocab_size": 999})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "does not match the tokenizer" in capsys.readouterr().err
    cfg = cfg_for("short", **{"model.max_seq_len": 16})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "max_seq_len is 16" in capsys.readouterr().err
    cfg = cfg_for("arch", **{"pretrain.objective": "mlm"})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    assert "needs model.arch=encoder" in capsys.readouterr().err


def test_nonfinite_loss_stops_or_skips(prepared, cfg_for):
    over = {"pretrain.lr": 1e30, "pretrain.min_lr": 1e29, "pretrain.warmup_steps": 0, "pretrain.grad_clip": None,
            "pretrain.max_steps": 6}
    with pytest.raises(TrainingError, match="non-finite loss"):
        run_pretrain(cfg_for("nan", **over), progress=False)
    summary = run_pretrain(cfg_for("nanskip", **{**over, "pretrain.nonfinite": "skip"}), progress=False)
    assert summary["skipped_steps"] >= 1


def test_early_stopping_keeps_best_and_last(prepared, cfg_for):
    # lr 0: the val loss never improves after the first eval, so patience 2 stops at the third eval
    cfg = cfg_for("early", **{"pretrain.lr": 0.0, "pretrain.min_lr": 0.0, "pretrain.max_steps": 50,
                              "pretrain.eval_every": 5, "pretrain.save_every": 5, "pretrain.keep_last": 1,
                              "pretrain.early_stopping_patience": 2})
    summary = run_pretrain(cfg, progress=False)
    assert summary["stop_reason"].startswith("early stopping")
    assert summary["best"]["name"] == "step_0000005"
    names = [p.name for p in ckpt.list_checkpoints(prepared / "early" / "pretrain" / "checkpoints")]
    assert names == ["step_0000005", "step_0000015"]  # the best and the last one


# -- a used output folder, a changed config, Ctrl-C --------------------------------------------------


def test_rerun_over_existing_checkpoints_needs_resume_or_overwrite(prepared, cfg_for, capsys):
    cfg = cfg_for("rerun", **{"pretrain.max_steps": 10})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    ck = prepared / "rerun" / "pretrain" / "checkpoints" / "step_0000010"
    before = (ck / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(["pretrain", str(cfg), "--no-progress", "--set", "seed=12"]) == 2  # refused: nothing touched
    err = capsys.readouterr().err
    assert "already holds checkpoints" in err and "--resume" in err and "--overwrite" in err
    assert (ck / "model.safetensors").read_bytes() == before
    assert main(["pretrain", str(cfg), "--no-progress", "--overwrite", "--set", "seed=12"]) == 0
    assert (ck / "model.safetensors").read_bytes() != before  # the new run's weights, not the old ones
    assert json.loads((ck / "state.json").read_text())["seed"] == 12


def test_resume_with_a_changed_config(prepared, cfg_for, capsys):
    cfg = cfg_for("changed", **{"pretrain.max_steps": 10, "pretrain.save_every": 5, "pretrain.decay_steps": 10})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    capsys.readouterr()
    # keys that break exactness: refused, each named
    assert main(["pretrain", str(cfg), "--resume", "--no-progress", "--set", "pretrain.lr=1e-2",
                 "--set", "pretrain.batch_size=8"]) == 2
    err = capsys.readouterr().err
    # the batch layout may change, the global batch (batch_size x grad_accum x processes) may not
    assert "keys that break an exact resume: global_batch, pretrain.lr" in err and "--resume-changed" in err
    assert "global batch = batch_size x grad_accum x processes was 4, is now 8" in err
    # resume-safe keys (a longer run under a fixed decay horizon, logging) are reported and accepted
    assert main(["pretrain", str(cfg), "--resume", "--no-progress", "--set", "pretrain.max_steps=14",
                 "--set", "pretrain.log_every=2"]) == 0
    assert "pretrain.max_steps: 10 → 14" in capsys.readouterr().out
    assert max(_losses(prepared / "changed")) == 14
    # accepted on request
    assert main(["pretrain", str(cfg), "--resume", "--resume-changed", "--no-progress",
                 "--set", "pretrain.max_steps=16", "--set", "pretrain.lr=1e-3"]) == 0
    # a model of another width cannot take the weights: a clear message, no traceback
    capsys.readouterr()
    assert main(["pretrain", str(cfg), "--resume", "--resume-changed", "--no-progress",
                 "--set", "pretrain.max_steps=18", "--set", "model.d_model=48"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lmforge: error:") and "did the model section change?" in err and "Traceback" not in err


def test_sigint_stops_with_a_checkpoint_and_resume_is_exact(prepared, cfg_for):
    over = {"pretrain.max_steps": 400, "pretrain.save_every": 1000, "pretrain.eval_every": 1000,
            "model.dropout": 0.1}
    ref = cfg_for("sigref", **over)
    cfg = cfg_for("sigint", **over)
    code, err, step = interrupt_after(["pretrain", str(cfg), "--no-progress"],
                                      prepared / "sigint" / "pretrain" / "metrics.jsonl", 20)
    assert code == 130, err[-2000:]
    assert "Traceback" not in err and "continue with --resume" in err
    assert 20 <= step < 400
    assert [p.name for p in ckpt.list_checkpoints(prepared / "sigint" / "pretrain" / "checkpoints")] == \
        [f"step_{step:07d}"]
    summary = json.loads((prepared / "sigint" / "pretrain" / "summary.json").read_text())
    assert summary["stop_reason"].startswith("interrupted (SIGINT)") and summary["steps"] == step
    assert main(["pretrain", str(cfg), "--resume", "--no-progress"]) == 0
    assert main(["pretrain", str(ref), "--no-progress"]) == 0
    got, want = _losses(prepared / "sigint"), _losses(prepared / "sigref")
    assert sorted(got) == sorted(want) == list(range(1, 401))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6


def test_unwritable_output_folder_is_a_clear_error(prepared, cfg_for, capsys):
    blocker = prepared / "a_file"
    blocker.write_text("not a folder")
    cfg = cfg_for("nowrite", **{"pretrain.max_steps": 2, "pretrain.out_dir": str(blocker / "pretrain")})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the pretrain output folder {blocker / 'pretrain'}" in err and "Traceback" not in err


def test_on_eval_callback_can_stop_a_run(prepared, cfg_for):
    """The one hook a recipe takes (what tuning's pruning needs): called with each validation."""
    seen = []

    def on_eval(step, metrics):
        seen.append((step, round(metrics["val_loss"], 6)))
        return step >= 10

    summary = run_pretrain(cfg_for("pruned", **{"pretrain.max_steps": 40, "pretrain.eval_every": 5}),
                           progress=False, on_eval=on_eval)
    assert [s for s, _ in seen] == [5, 10] and summary["stop_reason"] == "stopped by on_eval"
    assert summary["steps"] == 10


def test_continued_pretraining_starts_from_the_checkpoint_body(prepared, cfg_for, capsys):
    """pretrain.init: the body of an earlier run (here at lr 0, so it must come out unchanged) with
    a new objective head; a checkpoint whose vocabulary is not the data's is refused up front."""
    import torch

    from lmforge.models.load import load_checkpoint_model

    enc = {"arch": "encoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64, "mlp": "gelu"}
    first = cfg_for("cpt_first", **{"model": enc, "pretrain.objective": "mlm", "pretrain.max_steps": 6})
    assert main(["pretrain", str(first), "--no-progress"]) == 0
    src = prepared / "cpt_first" / "pretrain"
    cont = cfg_for("cpt_cont", **{"model": {"arch": "encoder", "n_layer": 1, "d_model": 16, "n_head": 2},
                                  "pretrain.objective": "mlm", "pretrain.init": str(src), "pretrain.max_steps": 2,
                                  "pretrain.lr": 0.0, "pretrain.min_lr": 0.0, "pretrain.eval_every": 2})
    assert main(["pretrain", str(cont), "--no-progress"]) == 0
    assert "continuing from" in capsys.readouterr().out
    before, _ = load_checkpoint_model(src, prefer="best")
    after, state = load_checkpoint_model(prepared / "cpt_cont" / "pretrain")
    assert state["model"]["n_layer"] == 2  # the checkpoint's shape, not the model section's
    for k, v in before.body.state_dict().items():
        torch.testing.assert_close(after.body.state_dict()[k], v)
    # a vocabulary that differs from the data's tokenizer: refused before any step
    from lmforge.recipes.pretrain import load_init_body

    with pytest.raises(TrainingError, match="vocabulary of .* tokens but the data was tokenized with 12345"):
        load_init_body(str(src), 12345)


def test_a_collapsed_body_is_warned_about(prepared, cfg_for, capsys, monkeypatch):
    import lmforge.recipes.pretrain as recipe

    monkeypatch.setattr(recipe, "output_cosine", lambda body, ids: 0.9999)  # as the stuck RTD discriminator reads
    cfg = cfg_for("collapsed", **{"pretrain.max_steps": 4, "pretrain.eval_every": 2})
    assert main(["pretrain", str(cfg), "--no-progress", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert out.count("the body's output has collapsed (output_cos 0.9999") == 2
    summary = json.loads((prepared / "collapsed" / "pretrain" / "summary.json").read_text())
    assert summary["embedding_health"]["output_cos"] == 0.9999


def test_embedding_init_from_cooccurrence(prepared, cfg_for, capsys):
    cfg = cfg_for("cooc", **{"model.arch": "encoder", "pretrain.objective": "mlm", "pretrain.max_steps": 4,
                             "pretrain.embedding_init": "cooccurrence", "pretrain.embedding_window": 8,
                             "pretrain.freeze_embeddings": True, "pretrain.save_every": 2})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    assert "token embeddings from co-occurrence:" in capsys.readouterr().out
    info = json.loads((prepared / "cooc" / "pretrain" / "summary.json").read_text())["embedding_init"]
    assert info["kind"] == "cooccurrence" and info["window"] == 8 and info["vocab_rows"] > 50
    from safetensors.torch import load_file

    a, b = (load_file(str(prepared / "cooc" / "pretrain" / "checkpoints" / f"step_000000{n}" / "model.safetensors"))
            for n in (2, 4))
    assert torch.equal(a["body.embed.tok.weight"], b["body.embed.tok.weight"])  # frozen
    assert not torch.equal(a["body.blocks.0.attn.qkv_proj.weight"], b["body.blocks.0.attn.qkv_proj.weight"])  # the rest trains
    # max_steps 0: the initialized model alone, evaluated and saved as step 0 (a start for fine-tuning)
    zero = cfg_for("cooc0", **{"model.arch": "encoder", "pretrain.objective": "mlm", "pretrain.max_steps": 0,
                               "pretrain.embedding_init": "cooccurrence", "pretrain.embedding_window": 8,
                               "pretrain.first_layer": "average"})
    assert main(["pretrain", str(zero), "--no-progress"]) == 0
    s0 = json.loads((prepared / "cooc0" / "pretrain" / "summary.json").read_text())
    assert s0["steps"] == 0 and s0["best"]["name"] == "step_0000000" and s0["best"]["val_loss"] > 0
    assert s0["embedding_init"]["first_layer"]["kind"] == "average"
    w0 = load_file(str(prepared / "cooc0" / "pretrain" / "checkpoints" / "step_0000000" / "model.safetensors"))
    o = w0["body.blocks.0.attn.o_proj.weight"]
    assert torch.equal(o, 4.0 * torch.eye(o.shape[0]))  # block 0 averages the text (saved as the start)
    with pytest.raises(Exception, match="first_layer: average sets a fresh model"):
        load_config(str(zero), ["pretrain.embedding_init=random", "pretrain.init=minilm"])
    with pytest.raises(Exception, match="embedding_init: cooccurrence fills a fresh model"):
        load_config(str(cfg), ["pretrain.init=minilm"])
