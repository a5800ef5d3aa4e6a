"""Reading tables: hostile CSV rows, cells that do not parse, missing columns, empty files, Parquet."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmforge.data.tabular.config import ColumnsConfig, TableSourceConfig
from lmforge.data.tabular.read import read_table
from lmforge.errors import ArtifactError, DataError

COLS = ColumnsConfig(target="y", numeric=["a", "b"], categorical=["c"])


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_ragged_rows_rejected_with_their_line(tmp_path):
    p = write(tmp_path / "t.csv", 'a,b,c,y\n1,2,x,p\n3,4\n\n5,6,"two\nlines",q\n7,8,z,p,extra\n9,10,w,q\n')
    r = read_table(TableSourceConfig(path=str(p)), COLS)
    assert len(r.frame) == 3
    assert r.lines.tolist() == [2, 5, 8]  # the line each row starts on (the quoted field spans 5-6)
    assert [(x["line"], x["reason"]) for x in r.rejected] == [(3, "ragged_row"), (7, "ragged_row")]
    assert "2 fields, the header has 4" in r.rejected[0]["detail"]
    assert r.frame["c"].tolist() == ["x", "two\nlines", "w"]


def test_bad_numeric_cells_counted_with_examples(tmp_path):
    body = "a,b,c,y\n" + "".join(f"{v},1,x,p\n" for v in ["1.5", "abc", "NA", "?", "inf", "1e3", "x1", "", "2",
                                                               "oops", "no", "nope", "null"])
    p = write(tmp_path / "t.csv", body)
    r = read_table(TableSourceConfig(path=str(p)), COLS)
    a = r.frame["a"].to_numpy()
    assert a.dtype == np.float64
    assert a[0] == 1.5 and a[5] == 1000.0 and a[8] == 2.0
    assert np.isnan(a[[1, 2, 3, 4, 6, 7, 9, 10, 11, 12]]).all()
    err = r.type_errors["a"]
    assert err["count"] == 6  # abc, inf, x1, oops, no, nope; the missing tokens are not errors
    assert len(err["examples"]) == 5
    assert err["examples"][0] == {"source": str(p), "line": 3, "value": "abc"}
    assert "b" not in r.type_errors


def test_missing_tokens_are_missing(tmp_path):
    p = write(tmp_path / "t.csv", "a,b,c,y\n" + "".join(f"1,{t},{t},p\n" for t in ["", "NA", "N/A", "NaN", "nan", "null", "None", "?", " NA "]))
    r = read_table(TableSourceConfig(path=str(p)), COLS)
    assert r.frame["b"].isna().all() and r.frame["c"].isna().all()
    assert not r.type_errors


def test_missing_declared_column_names_it(tmp_path):
    p = write(tmp_path / "t.csv", "a,b,colour,y\n1,2,x,p\n")
    with pytest.raises(DataError) as e:
        read_table(TableSourceConfig(path=str(p)), ColumnsConfig(target="y", numeric=["a", "b"], categorical=["color"]))
    msg = str(e.value)
    assert "'color'" in msg and str(p) in msg and "colour" in msg and "did you mean 'colour'" in msg


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file_is_an_error_naming_it(tmp_path, text):
    p = write(tmp_path / "empty.csv", text)
    with pytest.raises(DataError, match="empty.csv.*empty"):
        read_table(TableSourceConfig(path=str(p)), COLS)


def test_header_only_and_missing_file(tmp_path):
    p = write(tmp_path / "h.csv", "a,b,c,y\n")
    assert len(read_table(TableSourceConfig(path=str(p)), COLS).frame) == 0
    with pytest.raises(ArtifactError, match="nothere"):
        read_table(TableSourceConfig(path=str(tmp_path / "nothere.csv")), COLS)


def test_not_utf8_names_the_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"a,b,c,y\n1,2,x,p\n1,2,\xff,p\n")
    with pytest.raises(DataError, match=r"t.csv:3: not UTF-8"):
        read_table(TableSourceConfig(path=str(p)), COLS)


def test_strict_stops_at_first_bad_row(tmp_path):
    p = write(tmp_path / "t.csv", "a,b,c,y\n1,2,x,p\n1,zz,x,p\n")
    with pytest.raises(DataError, match=r"t.csv:3: column 'b'"):
        read_table(TableSourceConfig(path=str(p)), COLS, strict=True)


def test_tsv_glob_and_ignored_columns(tmp_path):
    write(tmp_path / "p1.tsv", "a\tb\tc\ty\tnote\n1\t2\tx\tp\thello\n")
    write(tmp_path / "p2.tsv", "note\ty\tc\tb\ta\nbye\tq\tz\t4\t3\n")
    r = read_table(TableSourceConfig(path=str(tmp_path / "p*.tsv")), COLS)
    assert r.frame[["a", "b", "c", "y"]].values.tolist() == [[1.0, 2.0, "x", "p"], [3.0, 4.0, "z", "q"]]
    assert r.sources == [str(tmp_path / "p1.tsv"), str(tmp_path / "p2.tsv")]
    assert r.ignored_columns == ["note"]
    assert all(len(f["sha256"]) == 64 for f in r.files)


def test_parquet_round_trip(tmp_path):
    df = pd.DataFrame({"a": [1.5, None, 3.0], "b": ["4", "bad", None], "c": ["x", None, "NA"], "y": [1.0, 2.0, 3.0],
                       "extra": [0, 0, 0]})
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    r = read_table(TableSourceConfig(path=str(p)), COLS)
    assert r.lines.tolist() == [0, 1, 2]  # row index
    np.testing.assert_array_equal(r.frame["a"].to_numpy(), [1.5, np.nan, 3.0])
    np.testing.assert_array_equal(r.frame["b"].to_numpy(), [4.0, np.nan, np.nan])
    assert r.type_errors["b"]["count"] == 1
    assert r.frame["c"].tolist() == ["x", None, None]
    assert r.frame["y"].tolist() == ["1", "2", "3"]  # integral floats read as their integer text
    assert r.ignored_columns == ["extra"]


def test_builtin_penguins():
    cols = ColumnsConfig(target="species", numeric=["bill_length_mm", "body_mass_g"], categorical=["island", "sex"])
    r = read_table(TableSourceConfig(builtin="penguins"), cols)
    assert len(r.frame) == 344 and r.frame["sex"].isna().sum() == 11
    assert r.frame["body_mass_g"].dtype == np.float64
    assert "year" in r.ignored_columns and not r.rejected and not r.type_errors


def test_dates_that_do_not_parse_are_type_errors(tmp_path):
    p = write(tmp_path / "t.csv", "d,a,y\n2024-01-05,1,p\nnot a date,2,q\n,3,p\n2024-02-30,4,q\n")
    r = read_table(TableSourceConfig(path=str(p)), ColumnsConfig(target="y", numeric=["a"], dates=["d"]))
    assert r.frame["d"].tolist() == ["2024-01-05", None, None, None]
    assert r.type_errors["d"]["count"] == 2


def test_a_missing_id_column_names_its_own_key_or_is_optional(tmp_path):
    p = write(tmp_path / "t.csv", "a,b,c,y\n1,2,x,p\n3,4,z,q\n")
    cols = ColumnsConfig(target="y", id="row_id", numeric=["a", "b"], categorical=["c"])
    with pytest.raises(DataError, match=r"declared in data\.tabular\.columns\.id"):
        read_table(TableSourceConfig(path=str(p)), cols)
    r = read_table(TableSourceConfig(path=str(p)), cols, optional=("row_id",))  # predict: ids from line numbers
    assert r.absent == ["row_id"] and r.frame["row_id"].isna().all() and r.frame["a"].tolist() == [1.0, 3.0]
