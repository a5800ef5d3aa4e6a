"""Near duplicates planted at true Jaccard 0.80-0.95: dedup finds all of them, and when dedup
misses them (simulated with one band of 128 rows, which almost never makes a pair a candidate),
the leak check — a MinHash index of its own — reports every pair that straddles splits, moves it
into train, or stops the run, as ``split.on_leak`` says."""

import json
import random
from pathlib import Path

import pytest
import yaml

from lmforge.cli import main
from lmforge.config.experiment import set_path
from lmforge.data.minhash import MinHasher, exact_shingle_jaccard

VOCAB = [f"tok{i}" for i in range(3000)]
N_PAIRS = 120


def planted_corpus(path: Path, seed=0) -> dict[str, float]:
    """Unrelated documents and N_PAIRS planted pairs (pA, pB); returns pair → true Jaccard."""
    rng = random.Random(seed)
    h = MinHasher(128, 5, seed=0)
    lines, sims = [], {}
    for i in range(200):
        lines.append({"id": f"d{i}", "text": " ".join(rng.choice(VOCAB) for _ in range(rng.randrange(60, 200)))})
    while len(sims) < N_PAIRS:
        a = [rng.choice(VOCAB) for _ in range(200)]
        b = list(a)
        for _ in range(rng.randrange(1, 8)):  # substitute words, append one
            b[rng.randrange(len(b))] = rng.choice(VOCAB)
        b.append(rng.choice(VOCAB))
        j = exact_shingle_jaccard(h, " ".join(a), " ".join(b))
        if 0.80 <= j < 0.95:
            k = len(sims)
            sims[f"p{k}"] = j
            lines += [{"id": f"p{k}A", "text": " ".join(a)}, {"id": f"p{k}B", "text": " ".join(b)}]
    rng.shuffle(lines)
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return sims


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    sims = planted_corpus(root / "corpus.jsonl")
    assert min(sims.values()) < 0.82 and max(sims.values()) > 0.9
    return root, sims


def run(root: Path, name: str, **over) -> tuple[int, Path]:
    cfg = {"name": name, "run_dir": str(root / name), "seed": 3, "workers": 1,
           "data": {"sources": [{"path": str(root / "corpus.jsonl"), "id_field": "id"}],
                    "filter": {"min_words": 3}, "dedup": {"threshold": 0.8},
                    "split": {"val": 0.2, "test": 0.2}, "pack": {"seq_len": 32}},
           "tokenizer": {"type": "bpe", "vocab_size": 400}}
    for k, v in over.items():
        set_path(cfg, k.split("."), v)
    (root / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
    return main(["data", "prepare", str(root / f"{name}.yaml"), "--no-progress"]), root / name / "data"


def split_of(out: Path) -> dict[str, str]:
    where = {}
    for f in (out / "splits").rglob("*.jsonl"):
        for line in f.read_text().splitlines():
            where[json.loads(line)["id"]] = f.parent.name
    return where


def straddling(where: dict[str, str]) -> set[str]:
    return {k for k in (f"p{i}" for i in range(N_PAIRS)) if where[f"{k}A"] != where[f"{k}B"]}


def test_dedup_finds_every_planted_pair_and_nothing_else(corpus):
    root, sims = corpus
    rc, out = run(root, "dedup")
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["steps"]["dedup"]["dropped"] == {"near_duplicate": N_PAIRS}  # recall 1.0 at precision 1.0
    assert m["dedup_index"]["bands"] == 21 and m["dedup_index"]["rows"] == 6
    rejected = [json.loads(x) for f in (out / "rejected").glob("*.jsonl") for x in f.read_text().splitlines()]
    assert all(r["id"][:-1] == r["duplicate_of"][:-1] for r in rejected)  # pKA ~ pKB, never an unrelated doc
    assert m["leak_check"]["total"] == 0 and m["leak_check"]["found"] == 0


def test_leak_check_reports_every_straddling_pair(corpus):
    root, sims = corpus
    rc, out = run(root, "report", **{"data.dedup.bands": 1, "data.split.on_leak": "report"})
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    lc = m["leak_check"]
    assert m["steps"]["dedup"]["dropped"] == {}  # dedup's index missed every pair
    crossing = straddling(split_of(out))
    assert len(crossing) > 20  # the test means something: many pairs straddle splits
    reported = {r["id"][:-1] for r in lc["pairs"]}
    assert reported == crossing  # every straddling pair, and only planted pairs
    assert lc["found"] == lc["total"] == len(crossing) and lc["moved_docs"] == 0
    for r in lc["pairs"]:
        assert r["kind"] == "near" and abs(r["jaccard"] - sims[r["id"][:-1]]) < 1e-3
        assert r["split"] in ("val", "test") and (r["in"] == "train" or (r["split"], r["in"]) == ("val", "test"))
    assert "| document | split | duplicates |" in (out / "report.md").read_text()


def test_leak_check_moves_leaks_into_train(corpus):
    root, _ = corpus
    rc, out = run(root, "move", **{"data.dedup.bands": 1})
    assert rc == 0
    m = json.loads((out / "manifest.json").read_text())
    lc = m["leak_check"]
    assert lc["found"] > 20 and lc["total"] == 0 and lc["moved_docs"] >= lc["found"]
    where = split_of(out)
    assert straddling(where) == set()
    assert len(where) == 200 + 2 * N_PAIRS  # nothing lost by moving
    assert m["splits"]["train"]["docs"] == sum(v == "train" for v in where.values())


def test_leak_check_can_stop_the_run(corpus, capsys):
    root, _ = corpus
    rc, _ = run(root, "fail", **{"data.dedup.bands": 1, "data.split.on_leak": "fail"})
    assert rc == 1
    err = capsys.readouterr().err
    assert "split.on_leak=fail" in err and "Jaccard 0." in err and "document 'p" in err


def test_exact_leaks_name_the_lowest_partner():
    import numpy as np

    from lmforge.data.split import TEST, TRAIN, VAL, leak_check

    exact = np.array([7, 9, 7, 5, 9, 7, 3], dtype=np.uint64)
    split = np.array([TRAIN, TRAIN, TRAIN, VAL, TEST, TEST, VAL], dtype=np.int8)
    out = leak_check(None, split, exact, np.zeros(7, bool), None, 0, 0.8)
    assert sorted(out["pairs"]) == [(4, 1, "exact", 1.0), (5, 0, "exact", 1.0)]
    assert out["exact_test_in_train"] == 2 and out["exact_val_in_train"] == 0 and out["total"] == 2
