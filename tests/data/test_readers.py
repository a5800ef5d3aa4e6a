"""Readers: every format, hostile input, bounded records, and the accounting invariant."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmforge.data.config import DataConfig, SourceConfig
from lmforge.data.document import RecordError, RejectWriter
from lmforge.data.readers import UnitReader
from lmforge.data.sources import SourceError, plan_units


def read_all(tmp_path: Path, src: SourceConfig, **cfg_kw):
    cfg = DataConfig(sources=[src], **cfg_kw)
    docs, stats, rejects = [], [], []
    rej_dir = tmp_path / f"rej{len(list(tmp_path.glob('rej*')))}"
    for unit in plan_units(cfg):
        rw = RejectWriter(rej_dir / f"{unit.name}.jsonl", strict=cfg.strict)
        r = UnitReader(unit, src, cfg, rw)
        docs += list(r.documents())
        rw.close()
        stats.append(r.stats)
        if rw.path.exists():
            rejects += [json.loads(x) for x in rw.path.read_text().splitlines()]
    read = sum(s.read for s in stats)
    kept = sum(s.kept for s in stats)
    dropped = sum(sum(s.dropped.values()) for s in stats)
    assert read == kept + dropped, "accounting invariant broken"
    assert kept == len(docs)
    assert len(rejects) == dropped, "every dropped record is written to rejected/"
    return docs, stats, rejects


def test_jsonl_hostile_lines(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"text": "good one", "label": "x"}\n'
                  b'{"text": broken json\n'
                  b'{"text": "bad \xff\xfe utf8"}\n'
                  b'\n'
                  b'[1, 2]\n'
                  b'{"other": "no text field"}\n'
                  b'{"text": 12345}\n'
                  b'{"text": {"nested": 1}}\n'
                  b'{"text": "good two"}\n')
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(p)))
    assert [d.text for d in docs] == ["good one", "12345", "good two"]
    assert [d.line for d in docs] == [1, 7, 9]
    reasons = {(r["line"], r["reason"]) for r in rejects}
    assert reasons == {(2, "malformed_json"), (3, "invalid_utf8"), (4, "empty_line"), (5, "not_an_object"),
                       (6, "missing_text"), (8, "text_not_a_string")}
    assert all(r["source"] == str(p) for r in rejects)


def test_missing_values_fill_is_counted(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "", "label": "pos"}\n{"text": "t", "label": null}\n')
    src = SourceConfig(path=str(p), label_field="label")
    cfg_kw = {"clean": __import__("lmforge.data.config", fromlist=["CleanConfig"]).CleanConfig(
        missing_text="fill", fill_text="EMPTY", missing_label="fill", fill_label="neutral")}
    docs, stats, _ = read_all(tmp_path, src, **cfg_kw)
    assert [(d.text, d.label) for d in docs] == [("EMPTY", "pos"), ("t", "neutral")]
    assert stats[0].extra["filled_text"] == 1 and stats[0].extra["filled_label"] == 1


def test_label_outside_declared_set_is_rejected(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "meh"}\n{"text": "c"}\n')
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(p), label_field="label"), labels=["pos", "neg"])
    assert [d.label for d in docs] == ["pos"]
    assert {r["reason"] for r in rejects} == {"label_not_declared", "missing_label"}


def test_huge_record_is_skipped_in_bounded_memory(tmp_path):
    p = tmp_path / "big.jsonl"
    with open(p, "wb") as f:
        f.write(b'{"text": "before"}\n')
        f.write(b'{"text": "' + b"x" * (50 << 20) + b'"}\n')  # a 50 MB record
        f.write(b'{"text": "after"}\n')
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(p)), max_record_bytes=1 << 20)
    assert [d.text for d in docs] == ["before", "after"]
    assert [d.line for d in docs] == [1, 3]
    assert rejects[0]["reason"] == "record_too_large" and rejects[0]["line"] == 2


def test_empty_file_is_counted_not_fatal(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "one.jsonl").write_text('{"text": "x"}\n')
    docs, stats, _ = read_all(tmp_path, SourceConfig(path=str(tmp_path / "*.jsonl")))
    assert len(docs) == 1
    assert sum(s.extra["empty_files"] for s in stats) == 1


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="no input matches"):
        plan_units(DataConfig(sources=[SourceConfig(path=str(tmp_path / "nope" / "*.jsonl"))]))
    with pytest.raises(SourceError, match="no input matches"):
        plan_units(DataConfig(sources=[SourceConfig(path=str(tmp_path / "missing.txt"))]))


def test_strict_mode_stops_at_first_bad_record(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(RecordError, match=r"a.jsonl:2.*malformed_json"):
        read_all(tmp_path, SourceConfig(path=str(p)), strict=True)


def test_lines_and_text_formats(tmp_path):
    (tmp_path / "doc1.txt").write_text("first line\n\nsecond line\n")
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(tmp_path / "doc1.txt")))
    assert [d.text for d in docs] == ["first line", "second line"] and rejects[0]["reason"] == "empty_line"
    docs, _, _ = read_all(tmp_path, SourceConfig(path=str(tmp_path / "doc1.txt"), format="text"))
    assert len(docs) == 1 and "second line" in docs[0].text


def test_csv_and_tsv(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('text,label\n"hello, world",pos\n"multi\nline",neg\nonly_one_column\n,pos\n')
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(p), label_field="label"))
    assert [(d.text, d.label) for d in docs] == [("hello, world", "pos"), ("multi\nline", "neg")]
    assert {r["reason"] for r in rejects} == {"wrong_column_count", "missing_text"}
    t = tmp_path / "a.tsv"
    t.write_text("sentence\tlabel\nit was great\t1\nawful\t0\n")
    docs, _, _ = read_all(tmp_path, SourceConfig(path=str(t), text_field="sentence", label_field="label"))
    assert [(d.text, d.label) for d in docs] == [("it was great", "1"), ("awful", "0")]


def test_parquet_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"body": [f"doc {i}" if i != 3 else None for i in range(10)], "y": ["a", "b"] * 5})
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=4)
    src = SourceConfig(path=str(tmp_path / "a.parquet"), text_field="body", label_field="y")
    units = plan_units(DataConfig(sources=[src]))
    assert len(units) == 3  # one unit per row group
    docs, _, rejects = read_all(tmp_path, src)
    assert [d.text for d in docs] == [f"doc {i}" for i in range(10) if i != 3]
    assert rejects == [{"source": str(tmp_path / "a.parquet"), "line": 4, "reason": "missing_text",
                        "detail": "field 'body' is missing or empty", "snippet": rejects[0]["snippet"]}]


def test_corrupt_parquet_is_one_counted_reject(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file at all")
    docs, _, rejects = read_all(tmp_path, SourceConfig(path=str(tmp_path / "bad.parquet")))
    assert docs == [] and rejects[0]["reason"] == "unreadable_file"


def test_gzip_via_fsspec(tmp_path):
    import gzip

    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write('{"text": "zipped"}\n')
    docs, _, _ = read_all(tmp_path, SourceConfig(path=str(tmp_path / "a.jsonl.gz")))
    assert [d.text for d in docs] == ["zipped"]


def test_fsspec_memory_url():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/lmforge-test/a.jsonl", b'{"text": "from memory"}\n')
    cfg = DataConfig(sources=[SourceConfig(path="memory://lmforge-test/*.jsonl")])
    units = plan_units(cfg)
    assert len(units) == 1 and units[0].path.startswith("memory://")


def test_large_file_chunks_keep_line_numbers(tmp_path):
    p = tmp_path / "big.jsonl"
    lines = [json.dumps({"text": f"record number {i} " + "pad " * (i % 50)}) for i in range(20000)]
    p.write_text("\n".join(lines) + "\n")
    src = SourceConfig(path=str(p))
    cfg = DataConfig(sources=[src], chunk_mb=1)
    units = plan_units(cfg)
    assert len(units) > 1
    docs, _, _ = read_all(tmp_path, src, chunk_mb=1)
    assert len(docs) == 20000
    assert all(d.line == i + 1 and d.text.startswith(f"record number {i} ") for i, d in enumerate(docs))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.binary(max_size=80),
                          st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=40)),
                          st.builds(lambda t: json.dumps({"text": t, "label": "a"}).encode(), st.text(max_size=20))),
                max_size=25))
def test_property_jsonl_reader_never_fails_and_accounts(tmp_path_factory, records):
    d = tmp_path_factory.mktemp("prop")
    p = d / "x.jsonl"
    p.write_bytes(b"\n".join(r.replace(b"\n", b" ") for r in records) + b"\n")
    read_all(d, SourceConfig(path=str(p)), max_record_bytes=64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300))
def test_property_csv_reader_never_fails_and_accounts(tmp_path_factory, blob):
    d = tmp_path_factory.mktemp("propcsv")
    p = d / "x.csv"
    p.write_bytes(b"text,label\n" + blob)
    read_all(d, SourceConfig(path=str(p), label_field="label"))


@pytest.mark.parametrize("fmt,suffix", [("lines", ".txt"), ("text", ".txt"), ("tsv", ".tsv"), ("parquet", ".parquet"),
                                        ("jsonl", ".jsonl.gz")])
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.one_of(st.binary(max_size=300), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_property_every_reader_never_fails_and_accounts(tmp_path_factory, fmt, suffix, blob):
    """Random bytes (and random text) in every format, compressed ones too: never a traceback,
    read = kept + Σdropped (``read_all`` checks it)."""
    d = tmp_path_factory.mktemp("propfmt")
    p = d / f"x{suffix}"
    p.write_bytes(blob)
    read_all(d, SourceConfig(path=str(p), format=fmt))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.just(""), st.just("-DOCSTART- -X- O O"), st.text(max_size=30),
                          st.builds(lambda w, t: f"{w} {t}", st.text(max_size=8), st.sampled_from(["O", "B-PER", "I-PER", "X"]))),
                max_size=30))
def test_property_conll_reader_parses_or_names_the_line(tmp_path_factory, lines):
    from lmforge.data.conll import read_conll
    from lmforge.errors import LmforgeError

    p = tmp_path_factory.mktemp("propconll") / "x.conll"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    try:
        read_conll(p)
    except LmforgeError as exc:
        assert str(p) in str(exc) or "line" in str(exc)
