"""``lmforge distill`` on tiny data, and the distillation loss itself."""

import json
import random
from pathlib import Path

import pytest
import torch
import yaml

from conftest import FILLER, write_keyword_data
from lmforge.cli import main
from lmforge.training.distillation import kd_loss
from lmforge.training.losses import classification_loss

LABELS = ["a", "b", "c"]
TINY = {"arch": "encoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 32, "mlp": "gelu",
        "norm_position": "post", "type_vocab_size": 2, "embedding_norm": True, "final_norm": False}


def write_data(path: Path, n: int, seed: int, labels=LABELS) -> str:
    return str(write_keyword_data(path, n, seed, labels))


def test_kd_loss_is_ce_plus_a_tempered_kl():
    torch.manual_seed(0)
    s, t = torch.randn(6, 3), torch.randn(6, 3)
    y = torch.tensor([0, 1, 2, 1, -100, 0])
    ce = classification_loss(s, y, None)
    assert torch.allclose(kd_loss(s, t, y, 2.0, 0.0), ce)  # alpha 0: the labels only
    assert torch.allclose(kd_loss(s, s, y, 2.0, 0.5), 0.5 * ce, atol=1e-6)  # same distributions: no soft term
    keep = y != -100
    p, q = (s / 3).log_softmax(-1), (t / 3).log_softmax(-1)
    kl = (q.exp() * (q - p)).sum(-1) * 9  # KL(teacher || student) × T², per row
    assert torch.allclose(kd_loss(s, t, y, 3.0, 1.0), kl.mean(), atol=1e-6)  # per example: every row, labelled or not
    tok = kd_loss(s.view(2, 3, 3), t.view(2, 3, 3), y.view(2, 3), 3.0, 1.0)  # per token: the labelled positions only
    assert torch.allclose(tok, kl[keep].mean(), atol=1e-6)
    mixed = kd_loss(s, t, y, 3.0, 0.5)  # unlabelled rows (-100) count in the soft term, not in the hard one
    assert torch.allclose(mixed, 0.5 * kl.mean() + 0.5 * ce, atol=1e-6)
    none = torch.full_like(y, -100)
    assert torch.allclose(kd_loss(s, t, none, 3.0, 0.5), kl.mean(), atol=1e-6)  # a batch of transfer texts only


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tokenizer_dir):
    root = tmp_path_factory.mktemp("teacher")
    cfg = {"name": "teacher", "run_dir": str(root / "teacher"), "seed": 3, "model": TINY,
           "finetune": {"init": "random", "tokenizer": str(tokenizer_dir),
                        "data": {"train_file": write_data(root / "train.jsonl", 300, 1),
                                 "val_file": write_data(root / "val.jsonl", 90, 2), "max_length": 32},
                        "optim": {"lr": 3e-3}, "loop": {"epochs": 12, "batch_size": 16, "threads": 1},
                        "classifier_dropout": 0.0}}
    (root / "teacher.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["finetune", str(root / "teacher.yaml"), "--no-progress"]) == 0
    summary = json.loads((root / "teacher" / "finetune" / "summary.json").read_text())
    assert summary["results"]["val"]["accuracy"] >= 0.9
    return root, root / "teacher" / "finetune"


def distill_config(root: Path, name: str, teacher: Path, **ft) -> Path:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 4, "model": TINY,
           "distill": {"teacher": str(teacher), "temperature": 2.0, "alpha": 0.5, "latency_length": 16},
           "finetune": {"init": str(teacher), "keep_layers": [1],
                        "data": {"train_file": str(root / "train.jsonl"), "val_file": str(root / "val.jsonl"),
                                 "max_length": 32},
                        "optim": {"lr": 1e-3}, "loop": {"epochs": 3, "batch_size": 16, "threads": 1}, **ft}}
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_a_one_layer_student_from_the_teacher(teacher):
    root, t = teacher
    assert main(["distill", str(distill_config(root, "student", t)), "--no-progress"]) == 0
    rec = json.loads((root / "student" / "distill" / "distill.json").read_text())
    assert rec["teacher"]["layers"] == 2 and rec["student"]["layers"] == 1
    assert rec["student"]["non_embedding_params"] < rec["teacher"]["non_embedding_params"]
    assert rec["student"]["val"]["accuracy"] >= 0.8
    assert rec["teacher"]["latency_ms_batch32"] > 0 and rec["student"]["latency_ms_batch32"] > 0
    best = root / "student" / "finetune" / "best"
    assert json.loads((best / "config.json").read_text())["num_hidden_layers"] == 1  # an HF folder like any other
    assert "| student | 1 |" in (root / "student" / "distill" / "report.md").read_text()


def test_a_teacher_with_other_labels_is_refused(teacher, capsys):
    root, t = teacher
    cfg = distill_config(root, "other", t)
    raw = yaml.safe_load(cfg.read_text())
    raw["finetune"]["init"] = "random"  # a random student (with the teacher's tokenizer)
    raw["finetune"].pop("keep_layers")
    raw["finetune"]["data"]["train_file"] = write_data(root / "train4.jsonl", 60, 5, ["a", "b", "c", "d"])
    raw["finetune"]["data"]["val_file"] = write_data(root / "val4.jsonl", 20, 6, ["a", "b", "c", "d"])
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["distill", str(cfg), "--no-progress"]) == 1
    assert "teacher's labels ['a', 'b', 'c'] differ" in capsys.readouterr().err


def test_keep_layers_out_of_range_is_clear(teacher, capsys):
    root, t = teacher
    assert main(["distill", str(distill_config(root, "range", t, keep_layers=[0, 5])), "--no-progress"]) == 1
    assert "keep_layers [0, 5]: the starting model has 2 layers" in capsys.readouterr().err


def _transfer_run(root: Path, teacher: Path, name: str, transfer: bool, cache: bool) -> dict:
    """A random 1-layer student from 15 labelled texts, with or without 300 unlabelled ones."""
    few = root / "few.jsonl"
    if not few.exists():
        few.write_text("".join((root / "train.jsonl").read_text().splitlines(keepends=True)[:15]))
        lines = (root / "transfer_src.jsonl")
        write_data(lines, 300, 9)
        (root / "transfer.jsonl").write_text("".join(json.dumps({"text": json.loads(x)["text"]}) + "\n"
                                                     for x in lines.read_text().splitlines()))
    cfg = yaml.safe_load(distill_config(root, name, teacher).read_text())
    cfg["model"] = {**TINY, "n_layer": 1}
    cfg["distill"].update({"alpha": 0.5, "teacher_logits": "cache" if cache else "on_the_fly",
                           **({"transfer_file": str(root / "transfer.jsonl")} if transfer else {})})
    cfg["finetune"].update({"init": "random", "classifier_dropout": 0.0, "optim": {"lr": 3e-3},
                            "loop": {"epochs": 12, "batch_size": 16, "threads": 1}})
    cfg["finetune"].pop("keep_layers")
    cfg["finetune"]["data"]["train_file"] = str(few)
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(root / f"{name}.yaml"), "--no-progress", "--overwrite"]) == 0
    return json.loads((root / name / "distill" / "distill.json").read_text())


def test_unlabeled_transfer_texts_teach_the_student(teacher):
    root, t = teacher
    alone = _transfer_run(root, t, "few_alone", transfer=False, cache=False)
    helped = _transfer_run(root, t, "few_transfer", transfer=True, cache=False)
    assert helped["student"]["trained_on"] == {"labeled": 15, "unlabeled": 300, "teacher_logits": "on_the_fly"}
    a, h = alone["student"]["val"]["accuracy"], helped["student"]["val"]["accuracy"]
    assert h >= 0.8 and h >= a + 0.15, (a, h)  # the teacher's soft labels on 300 texts beat 15 hard labels


def test_cached_teacher_logits_match_the_teacher_and_are_reused(teacher, capsys):
    import numpy as np

    from lmforge.models.load import load_task_model
    from lmforge.tasks import get_task

    root, t = teacher
    rec = _transfer_run(root, t, "few_cached", transfer=True, cache=True)
    assert rec["student"]["val"]["accuracy"] >= 0.8
    cache = np.load(root / "few_cached" / "distill" / "teacher_logits.npy")
    assert cache.shape == (315, 3) and cache.dtype == np.float16
    tm = load_task_model(t)  # rows 0..14 are the labelled texts in file order, then the transfer texts
    task = get_task("sequence")
    ex = task.read(root / "few.jsonl", "text", "label")[:4]
    enc = task.encode(tm.tokenizer, ex, {n: i for i, n in enumerate(tm.labels)}, tm.specials, False, 32)
    with torch.no_grad():
        for i in range(4):
            logits, _ = tm.model(torch.as_tensor(enc.ids[i])[None], torch.ones(1, len(enc.ids[i]), dtype=torch.long))
            assert np.allclose(cache[i], logits[0].numpy(), atol=2e-2)
    capsys.readouterr()
    _transfer_run(root, t, "few_cached", transfer=True, cache=True)  # same data, same teacher: no second pass
    assert "teacher logits: reusing" in capsys.readouterr().out


def test_transfer_texts_are_refused_for_ner(tmp_path, teacher, capsys):
    root, t = teacher
    cfg = yaml.safe_load(distill_config(root, "ner_transfer", t).read_text())
    cfg["finetune"]["task"] = "token"
    cfg["distill"]["transfer_file"] = str(root / "train.jsonl")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(tmp_path / "c.yaml"), "--no-progress"]) == 1
    assert "for sequence classification" in capsys.readouterr().err


def write_conll(path: Path, n: int, seed: int) -> str:
    """PER = one of w1..w5 (single word); everything else O."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        for _ in range(rng.randrange(4, 9)):
            lines.append(f"w{rng.randrange(1, 6)} B-PER" if rng.random() < 0.2 else f"{rng.choice(FILLER)} O")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_ner_student_from_the_teacher(tmp_path, tokenizer_dir):
    ner = {"task": "token", "data": {"train_file": write_conll(tmp_path / "train.txt", 200, 1),
                                     "val_file": write_conll(tmp_path / "val.txt", 50, 2), "max_length": 32},
           "optim": {"lr": 3e-3}, "loop": {"epochs": 8, "batch_size": 16, "threads": 1}, "classifier_dropout": 0.0}
    t_cfg = {"name": "nert", "run_dir": str(tmp_path / "nert"), "seed": 3, "model": TINY,
             "finetune": {"init": "random", "tokenizer": str(tokenizer_dir), **ner}}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(t_cfg))
    assert main(["finetune", str(tmp_path / "t.yaml"), "--no-progress"]) == 0
    teacher = tmp_path / "nert" / "finetune"
    s_cfg = {"name": "ners", "run_dir": str(tmp_path / "ners"), "seed": 4, "model": TINY,
             "distill": {"teacher": str(teacher), "latency_length": 16},
             "finetune": {"init": str(teacher), "keep_layers": [1], **ner,
                          "optim": {"lr": 1e-3}, "loop": {"epochs": 3, "batch_size": 16, "threads": 1}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(s_cfg))
    assert main(["distill", str(tmp_path / "s.yaml"), "--no-progress"]) == 0
    rec = json.loads((tmp_path / "ners" / "distill" / "distill.json").read_text())
    assert rec["student"]["layers"] == 1 and rec["student"]["val"]["entity_f1"] >= 0.8, rec["student"]["val"]


# -- causal LMs ---------------------------------------------------------------------------------

def test_causal_teacher_loss_adds_a_per_position_soft_term():
    from lmforge.training.distillation import CausalTeacherLoss, soft_loss

    torch.manual_seed(0)
    teacher = torch.nn.Module()
    t_logits = torch.randn(2, 5, 7)
    teacher.forward = lambda ids: (t_logits, None)
    s = torch.randn(2, 5, 7)
    ce = torch.tensor(1.5)
    ids = torch.zeros(2, 5, dtype=torch.long)
    assert CausalTeacherLoss(teacher, 2.0, 0.0)(s, ids, ce) is ce
    p, q = (s / 2).log_softmax(-1), (t_logits / 2).log_softmax(-1)
    want = (q.exp() * (q - p)).sum(-1).mean() * 4  # KL per position, averaged over the 10 positions, × T²
    assert torch.allclose(soft_loss(s.view(-1, 7), t_logits.view(-1, 7), 2.0), want, atol=1e-6)
    assert torch.allclose(CausalTeacherLoss(teacher, 2.0, 0.25)(s, ids, ce), 0.25 * want + 0.75 * ce, atol=1e-6)


def _lm_distill_config(cfg_for, name: str, teacher: Path, **over) -> Path:
    return cfg_for(name, **{"distill.teacher": str(teacher), "distill.latency_length": 16,
                            "distill.temperature": 2.0, "pretrain.max_steps": 10, "pretrain.eval_every": 5,
                            "pretrain.save_every": 5, **over})


def test_a_causal_lm_student_copies_the_teacher_layers(cfg_for, tiny_decoder):
    # every layer kept and no learning: the student must be the teacher, so the copy and the report agree
    cfg = _lm_distill_config(cfg_for, "lm_same", tiny_decoder, **{"distill.keep_layers": [0, 1], "distill.alpha": 1.0,
                                                                   "pretrain.lr": 0.0, "pretrain.min_lr": 0.0})
    assert main(["distill", str(cfg), "--no-progress"]) == 0
    rec = json.loads((cfg.parent / "lm_same" / "distill" / "distill.json").read_text())
    assert rec["teacher"]["params"] == rec["student"]["params"]
    assert abs(rec["teacher"]["val"]["val_loss"] - rec["student"]["val"]["val_loss"]) < 1e-4


def test_a_one_layer_causal_lm_student(cfg_for, tiny_decoder):
    cfg = _lm_distill_config(cfg_for, "lm_student", tiny_decoder, **{"distill.keep_layers": [1], "distill.alpha": 0.5,
                                                                      "pretrain.lr": 3e-3})
    assert main(["distill", str(cfg), "--no-progress"]) == 0
    run = cfg.parent / "lm_student"
    rec = json.loads((run / "distill" / "distill.json").read_text())
    assert rec["teacher"]["layers"] == 2 and rec["student"]["layers"] == 1
    assert rec["student"]["non_embedding_params"] < rec["teacher"]["non_embedding_params"]
    assert 0 < rec["student"]["val"]["val_loss"] < 6  # log(300) = 5.7: it learned something
    assert "Teacher on val" in (run / "distill" / "report.md").read_text()
    assert main(["generate", str(run / "pretrain"), "--prompt", "w1 w2", "--max-new-tokens", "4"]) == 0  # a pretrain folder like any other


def test_a_random_causal_lm_student(cfg_for, tiny_decoder):
    cfg = _lm_distill_config(cfg_for, "lm_random", tiny_decoder, **{"model.n_layer": 1, "model.d_model": 16})
    assert main(["distill", str(cfg), "--no-progress"]) == 0
    rec = json.loads((cfg.parent / "lm_random" / "distill" / "distill.json").read_text())
    assert rec["student"]["layers"] == 1 and rec["student"]["params"] < rec["teacher"]["params"]


def test_a_causal_lm_teacher_with_another_vocabulary_is_refused(cfg_for, make_hf_lm, tmp_path, capsys):
    llama = make_hf_lm(tmp_path / "llama", "llama")  # word-level tokenizer; the shards are BPE
    cfg = _lm_distill_config(cfg_for, "lm_vocab", llama, **{"distill.keep_layers": [0]})
    assert main(["distill", str(cfg), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "one vocabulary" in err and "Sequence-level distillation" in err


@pytest.mark.parametrize("fault", ["kill", "ctrl_c"])
def test_a_stopped_distillation_resumes_exactly(teacher, fault, tmp_path):
    """kill -9 inside the student's second checkpoint write, or Ctrl-C (SIGINT to the process
    group) while it is written: ``lmforge distill --resume`` ends with the uninterrupted run's best step
    and weights, and the distillation report."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from safetensors.torch import load_file

    root, t = teacher
    ref = distill_config(root, f"ref_{fault}", t)
    assert main(["distill", str(ref), "--no-progress"]) == 0
    cfg = distill_config(root, f"stop_{fault}", t)
    cmd = [sys.executable, "-m", "lmforge", "distill", str(cfg), "--no-progress"]
    if fault == "kill":
        env = {**os.environ, "LMFORGE_FAULT": "checkpoint.before_rename:2"}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    else:
        pid_file = tmp_path / "pid"
        env = {**os.environ, "LMFORGE_FAULT_HOLD": f"checkpoint.before_rename:{pid_file}"}
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        deadline = time.time() + 240
        while not (pid_file.is_file() and pid_file.read_text().endswith("\n")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C while a checkpoint is being written...
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGUSR1)  # ...which then completes; the loop stops at its next step
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert not (root / f"stop_{fault}" / "distill" / "distill.json").exists()
    assert main(["distill", str(cfg), "--no-progress", "--resume"]) == 0
    want, got = (json.loads((root / n / "finetune" / "summary.json").read_text()) for n in (f"ref_{fault}", f"stop_{fault}"))
    assert got["best_step"] == want["best_step"] and got["results"]["val"] == pytest.approx(want["results"]["val"])
    a, b = (load_file(str(root / n / "finetune" / "best" / "model.safetensors")) for n in (f"ref_{fault}", f"stop_{fault}"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (root / f"stop_{fault}" / "distill" / "distill.json").is_file()


@pytest.mark.parametrize("share", [0.3, 0.7])  # of the space an uninterrupted run takes: out of space earlier / later
def test_distillation_on_a_full_disk(teacher, small_disk, share, capsys):
    """The student's run folder on a real, too small file system: one error line naming the device, no
    traceback; every checkpoint left verifies; once space is freed the same command (``--resume``, or
    ``--overwrite`` when nothing was kept) ends with the uninterrupted run's best step and weights."""
    from conftest import resize, tree_bytes
    from safetensors.torch import load_file

    from lmforge.training import checkpoint as ckpt

    root, t = teacher
    ref = distill_config(root, f"disk_ref_{share}", t)
    assert main(["distill", str(ref), "--no-progress"]) == 0
    need = tree_bytes(root / f"disk_ref_{share}")
    cfg = distill_config(root, f"disk_{share}", t)
    cfg.write_text(cfg.read_text().replace(str(root / f"disk_{share}"), str(small_disk / "student")))
    resize(small_disk, f"{int(share * need) // 1024}k")
    capsys.readouterr()
    assert main(["distill", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    out = small_disk / "student" / "finetune"
    kept = ckpt.list_checkpoints(out / "checkpoints")
    for k in kept:
        ckpt.read_checkpoint_state(k)
    assert not (small_disk / "student" / "distill" / "distill.json").exists()
    resize(small_disk, "64m")
    assert main(["distill", str(cfg), "--no-progress", "--resume" if kept else "--overwrite"]) == 0
    want = json.loads((root / f"disk_ref_{share}" / "finetune" / "summary.json").read_text())
    got = json.loads((out / "summary.json").read_text())
    assert got["best_step"] == want["best_step"] and got["results"]["val"] == pytest.approx(want["results"]["val"])
    a = load_file(str(root / f"disk_ref_{share}" / "finetune" / "best" / "model.safetensors"))
    b = load_file(str(out / "best" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert (small_disk / "student" / "distill" / "distill.json").is_file()
