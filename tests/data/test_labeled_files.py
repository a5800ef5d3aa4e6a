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
