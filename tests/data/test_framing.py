"""Pretraining windows are framed the way fine-tuning frames its examples: an encoder's rows
start with <cls> and documents end with <sep>; a decoder's documents end with EOS."""

import json

import numpy as np
import pytest
from conftest import _corpus, make_config

from lmforge.cli import main
from lmforge.config import load_config
from lmforge.data.shards import PackedDataset, PackedWriter
from lmforge.tokenizer.io import Specials


def _windows(run) -> tuple[np.ndarray, dict]:
    ds = PackedDataset(run / "data" / "tokens", "train")
    return np.stack([ds.window(i) for i in range(len(ds))]), ds.index


@pytest.fixture(scope="module")
def framed(tmp_path_factory):
    root = tmp_path_factory.mktemp("framing")
    _corpus(root / "corpus.jsonl", n=120)
    runs = {}
    for arch in ("encoder", "decoder"):
        cfg = make_config(root, arch, **{"model.arch": arch})
        assert main(["data", "prepare", str(cfg), "--no-progress"]) == 0
        runs[arch] = root / arch
    return runs


def test_encoder_rows_start_with_the_finetuning_cls_and_documents_end_with_sep(framed):
    rows, index = _windows(framed["encoder"])
    special = index["special_ids"]
    wrapped, lead = Specials.from_ids(special).wrap([100, 101], causal=False)  # what fine-tuning feeds the encoder
    assert lead == 1 and (rows[:, 0] == wrapped[0]).all()  # position 0 of every row: fine-tuning's <cls>
    assert index["row_start_id"] == special["cls"] and index["doc_end_id"] == special["sep"] == wrapped[-1]
    # the special-token statistics match fine-tuning's: only <cls> and <sep>, <cls> once per row, never inside
    used = {name for name, i in special.items() if i is not None and name != "unk" and (rows == i).any()}
    assert used == {"cls", "sep"}
    assert (rows[:, 1:] == special["cls"]).sum() == 0
    manifest = json.loads((framed["encoder"] / "data" / "manifest.json").read_text())
    n_docs = manifest["splits"]["train"]["docs"]
    n_sep = int((rows == special["sep"]).sum())
    assert 0 < n_docs - n_sep <= 1 + manifest["shards"]["splits"]["train"]["dropped_tail_tokens"]  # all but the tail
    assert manifest["framing"]["kind"] == "cls_sep"
    assert manifest["name"] == "encoder"  # the config's name (it was once overwritten by a dedup reason's)
    assert "every window starts with <" in (framed["encoder"] / "data" / "report.md").read_text()


def test_decoder_documents_end_with_eos_as_finetuning_appends(framed):
    rows, index = _windows(framed["decoder"])
    special = index["special_ids"]
    wrapped, _ = Specials.from_ids(special).wrap([100], causal=True)
    assert index["doc_end_id"] == special["eos"] == wrapped[-1] and index["row_start_id"] is None
    assert not (rows == special["cls"]).any() and not (rows == special["sep"]).any()
    assert (rows == special["eos"]).any()


def test_auto_framing_follows_the_model_arch(tmp_path):
    enc = load_config(str(make_config(tmp_path, "e", **{"model.arch": "encoder"})))
    dec = load_config(str(make_config(tmp_path, "d")))
    assert enc.data.pack.framing == "cls_sep" and dec.data.pack.framing == "eos"
    own = load_config(str(make_config(tmp_path, "o", **{"model.arch": "encoder", "data.pack.framing": "eos"})))
    assert own.data.pack.framing == "eos"


def test_packed_writer_prefix_rows_are_the_stream_in_order(tmp_path):
    w = PackedWriter(tmp_path / "train", 8, np.dtype(np.uint16), 1024, row_start=5)
    stream = np.arange(100, 140, dtype=np.uint16)
    w.write(stream[:13])
    w.write(stream[13:])
    info = w.close()
    rows = np.fromfile(tmp_path / "train" / "shard_00000.bin", dtype=np.uint16).reshape(-1, 8)
    assert info["windows"] == 40 // 7 == len(rows) and info["dropped_tail_tokens"] == 40 - 7 * len(rows)
    assert (rows[:, 0] == 5).all()
    assert (rows[:, 1:].ravel() == stream[: 7 * len(rows)]).all()
