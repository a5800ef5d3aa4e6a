"""FSDP2 + sharded (DCP) checkpoints on CPU with gloo, 2 processes under torchrun: the same
losses as one process, resume on another number of ranks, kill -9 of one rank then resume,
HF export from shards, clear errors.

Reference runs are one process with ``grad_accum = 2``: the same global batch as 2 ranks x 1
(BatchPlan), the same MLM masks and dropout (seeded per micro-batch slot). Tolerance 1e-5 on
every logged loss: only the order of floating-point gradient sums may differ (in practice the
curves come out equal: averaging two gradients in a reduce-scatter and accumulating halves round
the same way).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from lmforge.cli import main
from lmforge.training import checkpoint as ckpt

TOL = 1e-5


def _losses(run: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in (run / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}


def _torchrun(cfg: Path, *extra: str, nproc: int = 2, wait: bool = True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "lmforge", "pretrain", str(cfg), "--no-progress", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _logits(hf_dir: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir)).eval()
    ids = torch.arange(40).reshape(2, 20) % 250
    with torch.no_grad():
        return model(ids).logits


def test_fsdp_matches_one_process_reshards_to_one_rank_and_exports(prepared, cfg_for, tmp_path):
    common = {"pretrain.decay_steps": 12, "pretrain.save_every": 6, "pretrain.eval_every": 1000,
              "pretrain.keep_last": 5, "model.dropout": 0.1}
    ref_cfg = cfg_for("fsdp_ref", **common, **{"pretrain.max_steps": 12, "pretrain.grad_accum": 2})
    assert main(["pretrain", str(ref_cfg), "--no-progress"]) == 0
    ref = _losses(prepared / "fsdp_ref")

    # 6 steps on 2 ranks, sharded, checkpoints written in the background (step 3 completes while
    # steps 4-6 train) ...
    cfg = cfg_for("fsdp_2to1", **{**common, "pretrain.max_steps": 6, "pretrain.parallel": "fsdp",
                                  "pretrain.async_save": True, "pretrain.save_every": 3})
    r = _torchrun(cfg)
    assert "2 process(es) on cpu (fsdp)" in r.stdout
    ck = prepared / "fsdp_2to1" / "pretrain" / "checkpoints" / "step_0000006"
    state = json.loads((ck / "state.json").read_text())
    assert state["format"] == "dcp" and state["world_size"] == 2
    assert sorted(state["files"]) == ["dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"]
    assert [c.name for c in ckpt.list_checkpoints(ck.parent)] == ["step_0000003", "step_0000006"]
    assert not list(ck.parent.glob(".tmp-*")), "every background save completed and renamed"
    two = _losses(prepared / "fsdp_2to1")
    assert sorted(two) == list(range(1, 7))
    assert max(abs(two[s] - ref[s]) for s in two) <= TOL
    # each rank holds about half of the parameters and optimizer state one process holds
    whole = json.loads((prepared / "fsdp_ref" / "pretrain" / "summary.json").read_text())["memory_per_rank"]
    halves = json.loads((prepared / "fsdp_2to1" / "pretrain" / "summary.json").read_text())["memory_per_rank"]
    assert [m["rank"] for m in halves] == [0, 1] and len(whole) == 1
    for m in halves:
        assert 0.45 <= m["params_and_optimizer_mb"] / whole[0]["params_and_optimizer_mb"] <= 0.55, (m, whole)

    # ... exported from its shards to one HF folder: the same model as the reference's step 6
    assert main(["export", str(ck), "--format", "hf", "--out", str(tmp_path / "hf_fsdp")]) == 0
    ref_ck = prepared / "fsdp_ref" / "pretrain" / "checkpoints" / "step_0000006"
    assert main(["export", str(ref_ck), "--format", "hf", "--out", str(tmp_path / "hf_ref")]) == 0
    assert (_logits(tmp_path / "hf_fsdp") - _logits(tmp_path / "hf_ref")).abs().max() <= 1e-4

    # ... then resumed by one process (grad_accum 2 keeps the global batch): the reference's curve
    r = subprocess.run([sys.executable, "-m", "lmforge", "pretrain", str(cfg), "--resume", "--no-progress",
                        "--set", "pretrain.max_steps=12", "--set", "pretrain.grad_accum=2",
                        "--set", "pretrain.save_every=6"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pretrain.grad_accum: 1 → 2" in r.stdout and "resumed from" in r.stdout
    got = _losses(prepared / "fsdp_2to1")
    assert sorted(got) == list(range(1, 13))
    assert max(abs(got[s] - ref[s]) for s in ref) <= TOL
    one = json.loads((prepared / "fsdp_2to1" / "pretrain" / "checkpoints" / "step_0000012" / "state.json").read_text())
    assert one["format"] == "dcp" and one["world_size"] == 1  # still sharded format: it can go back to 2 ranks


def _workers(parent: int) -> list[int]:
    import psutil

    return [c.pid for c in psutil.Process(parent).children(recursive=True)]


def test_kill9_of_one_rank_stops_the_job_and_resume_is_exact(prepared, cfg_for):
    """MLM encoder (masks per slot), dropout on: a rank killed mid-run stops torchrun; resuming
    with torchrun gives the uninterrupted single-process curve."""
    steps = 150
    over = {"model.arch": "encoder", "pretrain.objective": "mlm", "model.dropout": 0.1, "pretrain.max_steps": steps,
            "pretrain.save_every": 10, "pretrain.eval_every": 1000}
    ref_cfg = cfg_for("fsdp_kill_ref", **over, **{"pretrain.grad_accum": 2})
    assert main(["pretrain", str(ref_cfg), "--no-progress"]) == 0
    ref = _losses(prepared / "fsdp_kill_ref")

    cfg = cfg_for("fsdp_kill", **over, **{"pretrain.parallel": "fsdp"})
    ck_dir = prepared / "fsdp_kill" / "pretrain" / "checkpoints"
    proc = _torchrun(cfg, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and len(ckpt.list_checkpoints(ck_dir)) < 2 and proc.poll() is None:
        time.sleep(0.01)
    workers = _workers(proc.pid)
    assert len(workers) >= 2, "torchrun's two ranks"
    os.kill(workers[-1], signal.SIGKILL)  # one rank, kill -9
    assert proc.wait(timeout=120) != 0, "the job stops when a rank dies"
    assert not (prepared / "fsdp_kill" / "pretrain" / "summary.json").exists(), "run finished before the kill"
    assert int(ckpt.list_checkpoints(ck_dir)[-1].name.split("_")[1]) < steps

    _torchrun(cfg, "--resume")
    got = _losses(prepared / "fsdp_kill")
    assert sorted(got) == list(range(1, steps + 1))
    assert max(abs(got[s] - ref[s]) for s in ref) <= TOL


def test_resuming_a_sharded_checkpoint_with_another_model_is_a_clear_error(prepared, cfg_for, capsys):
    # one process with parallel: fsdp writes the sharded format too (nothing to shard, same files)
    cfg = cfg_for("fsdp_bad", **{"pretrain.max_steps": 4, "pretrain.save_every": 4, "pretrain.parallel": "fsdp"})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 0
    last = ckpt.list_checkpoints(prepared / "fsdp_bad" / "pretrain" / "checkpoints")[-1]
    assert json.loads((last / "state.json").read_text())["format"] == "dcp"
    capsys.readouterr()
    assert main(["pretrain", str(cfg), "--resume", "--resume-changed", "--no-progress",
                 "--set", "pretrain.max_steps=6", "--set", "model.d_model=48"]) == 1
    err = capsys.readouterr().err
    assert "does not fit the current model" in err and "did the model section change" in err
    assert "Traceback" not in err
    # a damaged shard is caught by its checksum before DCP reads it
    shard = last / "dcp" / "__0_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["pretrain", str(cfg), "--resume", "--no-progress", "--set", "pretrain.max_steps=6"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_activation_checkpointing_recomputes_the_same_losses(prepared, cfg_for):
    """Blocks recomputed in backward, dropout on: the same curve as keeping the activations."""
    over = {"pretrain.max_steps": 6, "model.dropout": 0.1, "pretrain.eval_every": 1000}
    assert main(["pretrain", str(cfg_for("ac_off", **over)), "--no-progress"]) == 0
    assert main(["pretrain", str(cfg_for("ac_on", **over, **{"pretrain.activation_checkpointing": True})),
                 "--no-progress"]) == 0
    a, b = _losses(prepared / "ac_off"), _losses(prepared / "ac_on")
    assert sorted(a) == sorted(b) == list(range(1, 7))
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6


def test_checkpoint_activations_wraps_every_block_and_keeps_gradients():
    from lmforge.models.config import ModelConfig
    from lmforge.models.transformer import build_lm
    from lmforge.training.distributed import checkpoint_activations

    torch.manual_seed(0)
    cfg = ModelConfig(arch="decoder", n_layer=2, n_head=2, d_model=32, max_seq_len=16, vocab_size=50)
    plain, ckpted = build_lm(cfg), build_lm(cfg)
    ckpted.load_state_dict(plain.state_dict())
    checkpoint_activations(ckpted)
    assert all(b.forward.func is torch.utils.checkpoint.checkpoint for b in ckpted.body.blocks)
    ids = torch.randint(0, 50, (2, 16))
    for m in (plain, ckpted):
        m(ids, ids)[1].backward()
    for (name, p), q in zip(plain.named_parameters(), ckpted.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6), name
    assert set(plain.state_dict()) == set(ckpted.state_dict())


def test_sharding_options_without_fsdp_are_config_errors(prepared, cfg_for, capsys):
    cfg = cfg_for("fsdp_opts", **{"pretrain.async_save": True, "pretrain.cpu_offload": True})
    assert main(["pretrain", str(cfg), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pretrain.async_save: applies to sharded training only: set parallel: fsdp" in err
    assert "pretrain.cpu_offload: applies to sharded training only" in err


def test_distilling_a_language_model_under_fsdp_matches_one_process(prepared, cfg_for, tiny_decoder):
    """``distill`` of a causal LM runs the pretrain recipe: the same sharding, the same curve."""
    over = {"distill.teacher": str(tiny_decoder), "distill.keep_layers": [1], "distill.alpha": 0.5,
            "distill.temperature": 2.0, "distill.latency_length": 16, "pretrain.max_steps": 8,
            "pretrain.eval_every": 1000, "pretrain.save_every": 4, "model.dropout": 0.1}
    ref = cfg_for("kd_ref", **over, **{"pretrain.grad_accum": 2})
    assert main(["distill", str(ref), "--no-progress"]) == 0
    cfg = cfg_for("kd_fsdp", **over, **{"pretrain.parallel": "fsdp"})
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "lmforge", "distill", str(cfg), "--no-progress"], capture_output=True, text=True,
                       env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = _losses(prepared / "kd_ref"), _losses(prepared / "kd_fsdp")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert max(abs(a[s] - b[s]) for s in a) <= TOL
    rec = json.loads((prepared / "kd_fsdp" / "distill" / "distill.json").read_text())  # rank 0's report, from the shards
    assert rec["student"]["layers"] == 1 and rec["student"]["val"]["val_loss"] > 0
