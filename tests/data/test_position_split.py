"""``split.by: position`` with ``tokenizer.type: char``: one long text cut into train/val/test
pieces by position (nanoGPT's shakespeare_char data), end to end through `data prepare`."""

import json
import random
from pathlib import Path

import numpy as np
import yaml

from lmforge.cli import main
from lmforge.data.shards import PackedDataset
from lmforge.data.write_splits import cut_by_position
from lmforge.tokenizer import io as tok_io


def _text(n_lines=400, seed=0) -> str:
    rng = random.Random(seed)
    words = "thou art more lovely and temperate rough winds do shake the darling buds of may".split()
    lines = []
    for i in range(n_lines):
        lines.append(("KING:" if i % 7 == 0 else "") + " ".join(rng.choice(words) for _ in range(rng.randrange(3, 12))))
        if i % 5 == 4:
            lines.append("")  # blank lines, kept as they are (clean.whitespace: false)
    return "\n".join(lines) + "\n"


def _config(root: Path, text_path: Path, **split) -> Path:
    cfg = {"name": "chars", "run_dir": str(root / "run"), "seed": 3, "workers": 1,
           "data": {"sources": [{"path": str(text_path), "format": "text"}],
                    "clean": {"fix_text": False, "whitespace": False}, "filter": {"web_quality": "off"},
                    "dedup": {"near": False}, "split": {"by": "position", **split}, "pack": {"seq_len": 17}},
           "tokenizer": {"type": "char"}}
    p = root / "chars.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def test_cut_by_position_matches_nanogpt_slicing():
    doc = {"id": "a", "text": "x" * 997, "source": "s", "line": 1}
    parts = dict(cut_by_position(doc, 0.1, 0.0))
    assert set(parts) == {"train", "val"}
    assert len(parts["train"]["text"]) == int(997 * 0.9) and parts["val"]["meta"]["char_offset"] == int(997 * 0.9)
    three = cut_by_position({"id": "b", "text": "abcdefghij"}, 0.2, 0.3)
    assert [(s, d["text"], d["id"]) for s, d in three] == [("train", "abcde", "b#train"), ("val", "fg", "b#val"),
                                                            ("test", "hij", "b#test")]


def test_prepare_cuts_the_text_and_packs_every_character(tmp_path):
    text = _text()
    src = tmp_path / "input.txt"
    src.write_text(text)
    assert main(["data", "prepare", str(_config(tmp_path, src, val=0.1, test=0.05)), "--no-progress"]) == 0
    data = tmp_path / "run" / "data"
    pieces = {}
    for split in ("train", "val", "test"):
        rows = [json.loads(x) for f in sorted((data / "splits" / split).glob("*.jsonl")) for x in open(f)]
        assert len(rows) == 1
        pieces[split] = rows[0]["text"]
    n = len(text)
    assert pieces["train"] == text[:int(n * 0.85)]
    assert pieces["val"] == text[int(n * 0.85):int(n * 0.95)]
    assert pieces["train"] + pieces["val"] + pieces["test"] == text  # nothing lost, nothing overlaps

    tok = tok_io.load(tmp_path / "run" / "tokenizer")
    assert tok.get_vocab_size() == 7 + len(set(pieces["train"]))  # specials + the train alphabet
    ds = PackedDataset(data / "tokens", "val")
    ids = np.concatenate([ds.window(i) for i in range(len(ds))]).tolist()
    eos = tok.token_to_id("</s>")
    expected = tok.encode(pieces["val"]).ids + [eos]  # a document ends with its separator
    assert len(ids) == len(expected) // 17 * 17 and ids == expected[:len(ids)]  # the tail that fills no window is cut


def test_position_split_refuses_labeled_data_and_augmentation(tmp_path, capsys):
    src = tmp_path / "input.txt"
    src.write_text(_text(50))
    cfg = yaml.safe_load(_config(tmp_path, src, val=0.1).read_text())
    cfg["data"]["augment"] = {"enabled": True}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["data", "prepare", str(bad), "--no-progress"]) == 2
    assert "split.by" in capsys.readouterr().err

    lab = tmp_path / "lab.tsv"
    lab.write_text("text\tlabel\n" + "".join(f"some words here {i}\t{'ab'[i % 2]}\n" for i in range(40)))
    cfg = yaml.safe_load(_config(tmp_path, lab, val=0.1).read_text())
    cfg["data"]["sources"] = [{"path": str(lab), "label_field": "label"}]
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["data", "prepare", str(bad), "--no-progress"]) != 0
    assert "position" in capsys.readouterr().err


def test_shakespeare_char_preset_is_nanogpts_data(tmp_path, shared_data):
    """The time-to-loss preset on the real text: the same 90/10 cut and 65 characters as nanoGPT."""
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()
    run = tmp_path / "sc"
    assert main(["data", "prepare", "shakespeare_char", "--no-progress", "--set", f"run_dir={run}",
                 "--set", f"data.sources[0].path={shared_data / 'tinyshakespeare' / 'input.txt'}"]) == 0
    tok = tok_io.load(run / "tokenizer")
    assert tok.get_vocab_size() == 7 + 65
    ds = PackedDataset(run / "data" / "tokens", "val")
    first = tok.decode(ds.window(0).tolist())
    assert first == text[int(len(text) * 0.9):][:65]
    assert len(PackedDataset(run / "data" / "tokens", "train")) == (int(len(text) * 0.9) + 1) // 65
    # and the preset trains on it (a few steps; the full run is benchmarks/bench_time_to_loss.py)
    out = tmp_path / "pt"
    assert main(["pretrain", "shakespeare_char", "--no-progress", "--set", f"run_dir={run}", "--set", f"pretrain.out_dir={out}",
                 "--set", "pretrain.max_steps=30", "--set", "pretrain.eval_every=30", "--set", "pretrain.eval_batches=2",
                 "--set", "pretrain.warmup_steps=5", "--set", "pretrain.save_every=30"]) == 0
    rows = [json.loads(x) for x in open(out / "metrics.jsonl")]
    val = [r["val_loss"] for r in rows if r["kind"] == "eval"]
    assert val and val[-1] < 3.0  # the uniform loss over 72 tokens is ln 72 = 4.28
