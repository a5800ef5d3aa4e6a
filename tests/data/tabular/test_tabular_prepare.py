"""``prepare_tabular`` end to end: penguins and a hostile generated CSV; accounting, stratified
split, save/load of the preprocessor, a tampered save refused, no statistic from val/test."""

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lmforge.data.config import DataConfig, SplitConfig
from lmforge.data.tabular.config import (ColumnsConfig, FeaturesConfig, MissingConfig, TableSourceConfig,
                                         TabularConfig)
from lmforge.data.tabular.preprocess import TabularPreprocessor
from lmforge.data.tabular.prepare import load_manifest, load_split, prepare_tabular
from lmforge.data.tabular.read import read_table
from lmforge.errors import ArtifactError, DataError

PENGUIN_COLS = ColumnsConfig(target="species", numeric=["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"],
                             categorical=["island", "sex"])


def penguins(strategy="median", **kw) -> DataConfig:
    tab = TabularConfig(sources=[TableSourceConfig(builtin="penguins")], columns=PENGUIN_COLS,
                        missing=MissingConfig(strategy=strategy), **kw)
    return DataConfig(kind="tabular", tabular=tab, split=SplitConfig(val=0.15, test=0.15))


def hostile_csv(path: Path, n=150, seed=0) -> Path:
    """price ≈ 3·temp (+10 in city a); bad cells, ragged rows, rows without a target, a far-off val/test."""
    rng = random.Random(seed)
    rows = ["id,day,temp,city,notes,price"]
    for i in range(n):
        t = rng.gauss(20, 5)
        c = rng.choice("abc")
        temp = "warm" if i % 17 == 5 else ["", "NA", "?"][i % 3] if i % 13 == 4 else f"{t:.2f}"
        price = "" if i % 25 == 3 else f"{3 * t + (10 if c == 'a' else 0) + rng.gauss(0, 1):.2f}"
        rows.append(f"r{i},2024-03-{i % 28 + 1:02d},{temp},{c},free text,{price}")
    rows.insert(7, "r-bad,2024-01-01,1")  # ragged
    rows.insert(30, "r-bad2,2024-01-01,1,a,x,5,6")  # ragged
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def csv_config(path: Path, **tab_kw) -> DataConfig:
    tab = TabularConfig(sources=[TableSourceConfig(path=str(path))],
                        columns=ColumnsConfig(target="price", id="id", numeric=["temp"], categorical=["city"], dates=["day"]),
                        **tab_kw)
    return DataConfig(kind="tabular", tabular=tab, split=SplitConfig(val=0.2, test=0.2))


def test_penguins_end_to_end(tmp_path):
    m = prepare_tabular(penguins(), seed=0, out=tmp_path, progress=False)
    for f in ("manifest.json", "report.md", "missingness.png", "rejected/rows.jsonl", "tabular/train.npz",
              "tabular/val.npz", "tabular/test.npz", "tabular/preprocessor/preprocessor.json",
              "tabular/preprocessor/train.parquet"):
        assert (tmp_path / f).is_file(), f
    assert load_manifest(tmp_path) == json.loads((tmp_path / "manifest.json").read_text())
    assert m["kind"] == "tabular" and m["task"] == "classification" and m["labels"] == ["Adelie", "Chinstrap", "Gentoo"]
    c = m["counts"]
    assert c["read"] == 344 == c["kept"] + sum(c["rejected_by_reason"].values())
    assert sum(m["splits"].values()) == c["kept"]
    assert m["missing_before"]["train"]["sex"] + m["missing_before"]["val"]["sex"] + m["missing_before"]["test"]["sex"] == 11
    assert all(v == 0 for s in m["missing_after"].values() for v in s.values())
    assert m["ignored_columns"] == ["year"] and m["n_numeric"] == 4 and m["cat_cardinalities"] == [4, 3]
    assert m["feature_names"][4:] == ["island=Biscoe", "island=Dream", "island=Torgersen", "sex=female", "sex=male"]
    # stratified: every split has the overall label proportions (to one row per class)
    overall = Counter()
    arrays = {s: load_split(tmp_path, s) for s in ("train", "val", "test")}
    for a in arrays.values():
        overall.update(a.y.tolist())
    for s, a in arrays.items():
        assert a.x.dtype == np.float32 and a.cat.dtype == np.int64 and a.y.dtype == np.int64
        assert a.x.shape == (m["splits"][s], 9) and a.cat.shape == (m["splits"][s], 2)
        got = Counter(a.y.tolist())
        for k, n in overall.items():
            assert abs(got[k] - n * len(a.y) / 344) <= 1, (s, k)
    assert not set(arrays["train"].lines) & set(arrays["test"].lines)
    assert abs(arrays["train"].x[:, :4].mean(0)).max() < 1e-5  # z-scored on train


def test_saved_preprocessor_gives_identical_arrays_and_refuses_tampering(tmp_path):
    data = penguins(strategy="iterative", outliers="iqr", scaling="robust")
    prepare_tabular(data, seed=1, out=tmp_path, progress=False)
    pre = TabularPreprocessor.load(tmp_path / "tabular" / "preprocessor")
    frame = read_table(data.tabular.sources[0], PENGUIN_COLS).frame
    for s in ("train", "test"):
        saved = load_split(tmp_path, s)
        again = pre.transform(frame.iloc[saved.lines], lines=saved.lines)  # penguins: line = row index
        np.testing.assert_array_equal(again.x, saved.x)
        np.testing.assert_array_equal(again.cat, saved.cat)
        np.testing.assert_array_equal(again.y, saved.y)
    unlabeled = pre.transform(frame.drop(columns="species").iloc[:5])  # prediction input: no target
    assert unlabeled.y is None and unlabeled.x.shape == (5, 9) and unlabeled.ids == ["0", "1", "2", "3", "4"]
    with pytest.raises(DataError, match="lacks the feature columns \\['sex'\\]"):
        pre.transform(frame.drop(columns="sex"))
    state = tmp_path / "tabular" / "preprocessor" / "train.parquet"
    blob = bytearray(state.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    state.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="modified after it was written"):
        TabularPreprocessor.load(tmp_path / "tabular" / "preprocessor")


def test_hostile_csv_accounting_and_rejections(tmp_path):
    src = hostile_csv(tmp_path / "shop.csv")
    m = prepare_tabular(csv_config(src, features=FeaturesConfig(log=["temp"], polynomial=["temp"])), seed=0,
                        out=tmp_path / "out", progress=False)
    c = m["counts"]
    assert c["read"] == 152 and c["read"] == c["kept"] + c["rejected"] == c["kept"] + sum(c["rejected_by_reason"].values())
    assert c["rejected_by_reason"] == {"missing_target": 6, "ragged_row": 2}
    rows = [json.loads(x) for x in (tmp_path / "out" / "rejected" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and {r["line"] for r in rows if r["reason"] == "ragged_row"} == {8, 31}
    assert all(r["source"] == str(src) for r in rows)
    assert m["task"] == "regression" and m["labels"] is None and m["ignored_columns"] == ["notes"]
    assert m["type_errors"]["temp"]["count"] == 9 and m["type_errors"]["temp"]["examples"][0]["value"] == "warm"
    assert m["feature_names"] == ["temp", "day_year", "day_month", "day_day", "day_weekday", "temp^2",
                                  "city=a", "city=b", "city=c"]
    assert m["sources"][0]["path"] == str(src) and len(m["sources"][0]["sha256"]) == 64
    train = load_split(tmp_path / "out", "train")
    assert train.y.dtype == np.float32 and not np.isnan(train.x).any() and train.ids[0].startswith("r")
    report = (tmp_path / "out" / "report.md").read_text()
    assert "missing_target" in report and "warm" in report and "| temp |" in report


def test_no_statistic_from_val_or_test(tmp_path):
    """Shift every val/test row far away: the fitted statistics must equal train-only ones."""
    src = hostile_csv(tmp_path / "shop.csv")
    data = csv_config(src)
    prepare_tabular(data, seed=0, out=tmp_path / "a", progress=False)
    held = set(load_split(tmp_path / "a", "val").lines) | set(load_split(tmp_path / "a", "test").lines)
    lines = src.read_text().splitlines()
    for i, line in enumerate(lines):
        f = line.split(",")
        if i + 1 in held and len(f) == 6 and f[2] not in ("", "NA", "warm", "?"):
            f[2] = str(float(f[2]) + 1e6)
            lines[i] = ",".join(f)
    shifted = tmp_path / "shifted.csv"
    shifted.write_text("\n".join(lines) + "\n")
    prepare_tabular(csv_config(shifted), seed=0, out=tmp_path / "b", progress=False)
    a, b = (TabularPreprocessor.load(tmp_path / d / "tabular" / "preprocessor") for d in "ab")
    np.testing.assert_array_equal(a.scaler.center, b.scaler.center)
    np.testing.assert_array_equal(a.scaler.scale, b.scaler.scale)
    assert a.imputer.state() == b.imputer.state()
    np.testing.assert_array_equal(load_split(tmp_path / "a", "train").x, load_split(tmp_path / "b", "train").x)
    assert load_split(tmp_path / "b", "test").x[:, 0].max() > 1e4  # the shift is there, and only there


def test_drop_row_declared_labels_and_determinism(tmp_path):
    data = penguins(strategy="drop_row")
    data.labels = ["Adelie", "Gentoo"]
    m = prepare_tabular(data, seed=3, out=tmp_path / "a", progress=False)
    r = m["counts"]["rejected_by_reason"]
    assert r["unknown_label"] == 68 and r["missing_value:bill_length_mm"] == 2 and r["missing_value:sex"] == 9
    assert m["counts"]["kept"] == 344 - 68 - 11 and m["labels"] == ["Adelie", "Gentoo"]
    m2 = prepare_tabular(data, seed=3, out=tmp_path / "b", progress=False)
    assert m2["splits"] == m["splits"]
    assert load_split(tmp_path / "a", "test").lines == load_split(tmp_path / "b", "test").lines


def test_errors_name_the_cause(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("a,y\n1,\n2,\n")
    data = DataConfig(kind="tabular", tabular=TabularConfig(sources=[TableSourceConfig(path=str(src))],
                                                            columns=ColumnsConfig(target="y", numeric=["a"])))
    with pytest.raises(DataError, match="train split is empty.*missing_target"):
        prepare_tabular(data, seed=0, out=tmp_path / "out", progress=False)
    data.tabular.missing.missing_target = "error"
    with pytest.raises(DataError, match=r"t.csv:2: column 'y' is empty"):
        prepare_tabular(data, seed=0, out=tmp_path / "out", progress=False)
    with pytest.raises(ArtifactError, match="no split 'dev'"):
        load_split(tmp_path, "dev")


def test_autoencoder_and_knn_on_penguins_are_complete(tmp_path, capsys):
    for strategy in ("knn", "autoencoder"):
        m = prepare_tabular(penguins(strategy, categorical_encoding="ordinal"), seed=0, out=tmp_path / strategy)
        assert all(v == 0 for s in m["missing_after"].values() for v in s.values())
        assert m["feature_names"][4:] == ["island", "sex"]
        x = load_split(tmp_path / strategy, "train").x
        assert not np.isnan(x).any() and set(np.unique(x[:, 5])) <= {1.0, 2.0}
    assert "[data] split: train" in capsys.readouterr().out
