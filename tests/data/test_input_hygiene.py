"""What a new user's messy folder gets: binary files skipped by name, other encodings read when
declared, large drops and empty labels said on the console, and no web-page filters on labeled
examples unless asked."""

import json
import random
import shutil
from pathlib import Path

import pytest
import yaml

from lmforge.cli import main
from lmforge.config import ConfigError, load_config

WORDS = "the cat sat on a warm mat while rain fell over the quiet town and people read books".split()


def _lines(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.write_text("".join(" ".join(rng.choice(WORDS) for _ in range(rng.randrange(6, 14))) + "\n" for _ in range(n)))
    return path


def _prepare(tmp_path: Path, sources: list, **data) -> tuple[int, dict | None]:
    cfg = {"name": "h", "run_dir": str(tmp_path / "run"), "workers": 1,
           "data": {"sources": sources, "dedup": {"near": False, "exact": False}, "split": {"val": 0.1, "test": 0.1},
                    **data},
           "tokenizer": {"type": "bpe", "vocab_size": 300}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    rc = main(["data", "prepare", str(tmp_path / "c.yaml"), "--no-progress"])
    m = tmp_path / "run" / "data" / "manifest.json"
    return rc, json.loads(m.read_text()) if m.exists() else None


def test_binary_files_are_skipped_by_name(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(shutil.which("ls"), d / "ls")
    (d / "noise.bin").write_bytes(random.Random(0).randbytes(20000))
    _lines(d / "notes.txt", 60, 1)
    rc, m = _prepare(tmp_path, [{"path": str(d), "format": "lines"}])
    err = capsys.readouterr().err
    assert rc == 0
    assert f"{d / 'ls'}: skipped, looks binary" in err and f"{d / 'noise.bin'}: skipped, looks binary" in err
    assert err.count(f"{d / 'ls'}") == 1  # one warning per skipped file, not a second "contributed nothing" one
    assert m["steps"]["read"]["dropped"] == {"binary_file": 2} and m["steps"]["read"]["kept"] == 60
    tok = json.loads((tmp_path / "run" / "tokenizer" / "tokenizer.json").read_text())
    assert all(ord(ch) < 0x250 for t in tok["model"]["vocab"] for ch in t)  # no junk characters learned


def test_a_latin1_file_is_read_when_declared_and_said_when_not(tmp_path, capsys):
    text = "".join(f"le café numéro {i} est très bon pour la crème brûlée du matin\n" for i in range(40))
    (tmp_path / "fr.txt").write_bytes(text.encode("latin-1"))
    rc, m = _prepare(tmp_path, [{"path": str(tmp_path / "fr.txt"), "format": "lines"}])
    out, err = capsys.readouterr()
    assert rc == 1  # nothing decodes as UTF-8: no document at all
    assert "invalid_utf8" in err or "invalid_utf8" in out
    shutil.rmtree(tmp_path / "run")
    rc, m = _prepare(tmp_path, [{"path": str(tmp_path / "fr.txt"), "format": "lines", "encoding": "latin-1"}])
    assert rc == 0 and m["steps"]["read"]["kept"] == 40
    train = (tmp_path / "run" / "data" / "splits" / "train").glob("*.jsonl")
    assert any("café" in p.read_text(encoding="utf-8") for p in train)


def test_line_formats_refuse_utf16():
    with pytest.raises(ConfigError, match="not ASCII-compatible"):
        load_config(raw={"data": {"sources": [{"path": "x.txt", "format": "lines", "encoding": "utf-16"}]}})
    with pytest.raises(ConfigError, match="unknown encoding"):
        load_config(raw={"data": {"sources": [{"path": "x.txt", "encoding": "latin-9000"}]}})


def test_large_drops_and_empty_labels_are_said_on_the_console(tmp_path, capsys):
    rng = random.Random(3)
    with open(tmp_path / "lab.jsonl", "w") as fh:
        for i in range(100):
            label = "pos" if i < 40 else "other"  # 60 % carry a label that is not declared
            fh.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(10)), "label": label}) + "\n")
    rc, m = _prepare(tmp_path, [{"path": str(tmp_path / "lab.jsonl"), "label_field": "label"}],
                     labels=["pos", "neg"], split={"val": 0.1, "test": 0.1, "stratify": False})
    out, err = capsys.readouterr()
    assert rc == 0
    assert "read: 100 → 40 (60% dropped: label_not_declared 60)" in out
    assert "warning: the read step dropped 60% of its 100 records (label_not_declared 60)" in err
    assert "declared label(s) ['neg'] have no training example" in err


def test_labeled_examples_skip_the_web_quality_filters_unless_asked(tmp_path, capsys):
    with open(tmp_path / "rep.jsonl", "w") as fh:  # short labeled texts that repeat themselves (web-page signals)
        for i in range(60):
            fh.write(json.dumps({"text": f"great great great great great great product {i}\nok\nok\nok",
                                 "label": "pos" if i % 2 else "neg"}) + "\n")
    src = [{"path": str(tmp_path / "rep.jsonl"), "label_field": "label"}]
    rc, m = _prepare(tmp_path, src)
    assert rc == 0 and m["steps"]["filter"]["kept"] == 60
    assert "web-quality repetition filters are off" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "run")
    rc, m = _prepare(tmp_path, src, filter={"web_quality": "on"})
    assert m is None or m["steps"]["filter"]["kept"] < 60


@pytest.mark.parametrize("policy,kept_texts", [("drop_all", 0), ("keep_majority", 1), ("keep_first", 2)])
def test_copies_of_one_text_with_different_labels_are_counted_and_resolved(tmp_path, capsys, policy, kept_texts):
    """Label noise that a keep-the-first dedup would hide: the same text labeled pos twice and neg once
    ("conflict A"), another labeled pos and neg once each ("conflict B", a tie), plus clean copies."""
    rows = [("conflict A", "neg"), ("conflict A", "pos"), ("conflict A", "pos"), ("conflict B", "pos"),
            ("conflict B", "neg"), ("same label", "pos"), ("same label", "pos")]
    rng = random.Random(4)
    rows += [(" ".join(rng.choice(WORDS) for _ in range(9)) + f" {i}", "pos" if i % 2 else "neg") for i in range(60)]
    with open(tmp_path / "lab.jsonl", "w") as fh:
        for i, (text, label) in enumerate(rows):
            fh.write(json.dumps({"id": f"r{i}", "text": text, "label": label}) + "\n")
    src = [{"path": str(tmp_path / "lab.jsonl"), "label_field": "label", "id_field": "id"}]
    rc, m = _prepare(tmp_path, src, dedup={"near": False, "exact": True, "label_conflicts": policy})
    out, err = capsys.readouterr()
    assert rc == 0
    lc = m["label_conflicts"]
    dropped = {"drop_all": 5, "keep_majority": 4, "keep_first": 3}[policy]
    assert (lc["groups"], lc["documents"], lc["dropped"], lc["policy"]) == (2, 5, dropped, policy)
    assert lc["examples"][0] == {"ids": ["r0", "r1", "r2"], "labels": ["neg", "pos", "pos"]}
    assert f"2 text(s) appear with different labels (5 copies); data.dedup.label_conflicts={policy} dropped " \
           f"{dropped} of them" in err
    assert m["steps"]["dedup"]["dropped"] == {"exact_duplicate": 1, "label_conflict": dropped}
    report = (tmp_path / "run" / "data" / "report.md").read_text()
    assert "**Label conflicts:** 2 text(s) appear with different labels" in report and "| r0, r1, r2 |" in report
    written = [json.loads(line) for p in (tmp_path / "run" / "data" / "splits").rglob("*.jsonl")
               for line in p.read_text().splitlines()]
    conflicting = [(d["text"], d["label"]) for d in written if d["text"].startswith("conflict")]
    assert len(conflicting) == kept_texts
    if policy == "keep_majority":  # the majority label of A; B is a tie, so dropped whole
        assert conflicting == [("conflict A", "pos")]
    rejected = [json.loads(line) for p in (tmp_path / "run" / "data" / "rejected").glob("*.dedup.jsonl")
                for line in p.read_text().splitlines()]
    assert sum(r["reason"] == "label_conflict" for r in rejected) == dropped
