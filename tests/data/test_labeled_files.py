"""Labeled files for fine-tuning: CSV/TSV without a header row (``finetune.data.csv_header: false``)."""

import pytest

from lmforge.data.labeled_files import read_records
from lmforge.errors import LmforgeError
from lmforge.tasks import get_task


def test_headerless_tsv_and_csv_name_columns_by_position(tmp_path):
    tsv = tmp_path / "ag.tsv"
    tsv.write_text('Stocks fell "sharply" on Monday.\tBusiness\nThe Reds won 3-1.\tSports\n')
    got = read_records(tsv, "0", "1", header=False)
    assert [(e.text, e.label, e.line) for e in got] == [('Stocks fell "sharply" on Monday.', "Business", 1),
                                                         ("The Reds won 3-1.", "Sports", 2)]
    csv_ = tmp_path / "ag.csv"
    csv_.write_text('"3","Title, with comma","Body"\n"4","T2","B2"\n')
    assert [(e.text, e.label) for e in get_task("sequence").read(csv_, "2", "0", header=False)] == [("Body", "3"), ("B2", "4")]


def test_a_headerless_file_read_with_a_header_says_how_to_fix_it(tmp_path):
    tsv = tmp_path / "ag.tsv"
    tsv.write_text("Stocks fell.\tBusiness\n")
    with pytest.raises(LmforgeError, match="csv_header: false"):
        read_records(tsv, "text", "label")
    with pytest.raises(LmforgeError, match="has no 'text' column"):  # no header: columns are "0", "1"
        read_records(tsv, "text", "label", header=False)


def test_a_binary_or_non_utf8_file_is_a_clear_data_error_not_a_traceback(tmp_path, capsys):
    from lmforge.cli import main

    binary = tmp_path / "train.tsv"
    binary.write_bytes(b"sentence\tlabel\n" + bytes(range(256)) * 20)
    with pytest.raises(LmforgeError, match=r"train.tsv: looks binary \(NUL bytes"):
        read_records(binary, "sentence", "label")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("sentence\tlabel\nété chaud\t1\n".encode("latin-1"))
    with pytest.raises(LmforgeError, match=r"latin.tsv: not UTF-8 text \(byte \d+"):
        read_records(latin, "sentence", "label")
    cfg = tmp_path / "ft.yaml"  # the same through the CLI: exit code 1 and one line, no traceback
    cfg.write_text(f"finetune: {{task: sequence, data: {{train_file: {binary}, text_field: sentence}}}}\n"
                   f"run_dir: {tmp_path / 'run'}\nmodel: {{preset: tiny}}\n")
    assert main(["finetune", str(cfg), "--no-progress"]) == 1
    assert "looks binary" in capsys.readouterr().err
