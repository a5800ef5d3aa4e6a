"""Imputers against scikit-learn, the mixed-type and autoencoder imputers on generated data, and
no leakage: every statistic comes from the train split."""

import numpy as np
import pandas as pd
import pytest
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer

from lmforge.data.tabular.autoencoder import AutoencoderFill
from lmforge.data.tabular.config import (AutoencoderImputerConfig, ColumnsConfig, MissingConfig, TabularConfig)
from lmforge.data.tabular.impute import (Interpolate, IterativeFill, KNNFill, SimpleFill, TableImputer,
                                         columns_to_drop, mode)
from lmforge.data.tabular.preprocess import TabularPreprocessor

NUM = ["a", "b", "c", "d"]


def correlated(n=300, p_missing=0.2, seed=0):
    """Four numeric columns driven by one latent factor; (frame with NaN, complete values, missing mask)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    full = np.stack([z, 2 * z + 0.3 * rng.normal(size=n), -z + 0.3 * rng.normal(size=n) + 5,
                     0.5 * z + 0.3 * rng.normal(size=n) * 10], axis=1)
    full[:, 1] = np.round(full[:, 1], 1)  # ties for the mode
    mask = rng.random(full.shape) < p_missing
    x = np.where(mask, np.nan, full)
    return pd.DataFrame(x, columns=NUM), full, mask


def split(df, n_train=200):
    return df.iloc[:n_train].reset_index(drop=True), df.iloc[n_train:].reset_index(drop=True)


@pytest.mark.parametrize("strategy,sk", [("mean", "mean"), ("median", "median"), ("mode", "most_frequent"),
                                         ("constant", "constant")])
def test_simple_fill_equals_sklearn(strategy, sk):
    df, _, _ = correlated()
    train, test = split(df)
    ours = SimpleFill(strategy, fill_value=-7.5).fit(train, NUM)
    ref = SimpleImputer(strategy=sk, fill_value=-7.5).fit(train.to_numpy())
    for part in (train, test):
        np.testing.assert_allclose(ours.transform(part)[NUM].to_numpy(), ref.transform(part.to_numpy()), atol=1e-6)


def test_mode_ties_take_the_smallest():
    assert mode(pd.Series([3.0, 1.0, 3.0, 1.0, 2.0, np.nan])) == 1.0
    assert mode(pd.Series(["b", "a", "b", "a", None])) == "a"
    assert mode(pd.Series([None, None], dtype=object)) is None
    cats = pd.DataFrame({"c": ["z", "y", None, "z", "y", None]})
    assert SimpleFill("mode").fit(cats, ["c"]).transform(cats)["c"].tolist() == ["z", "y", "y", "z", "y", "y"]
    assert SimpleFill("constant", fill_category="?").fit(cats, ["c"]).transform(cats)["c"].tolist()[2] == "?"


def test_knn_equals_sklearn_on_scaled_features():
    df, _, _ = correlated()
    train, test = split(df)
    ours = KNNFill(5, NUM).fit(train, NUM)
    mu, sd = np.nanmean(train.to_numpy(), 0), np.nanstd(train.to_numpy(), 0)
    ref = KNNImputer(n_neighbors=5).fit((train.to_numpy() - mu) / sd)
    for part in (train, test):
        np.testing.assert_allclose(ours.transform(part)[NUM].to_numpy(),
                                   ref.transform((part.to_numpy() - mu) / sd) * sd + mu, atol=1e-6)


def test_knn_categorical_majority_of_neighbours():
    train = pd.DataFrame({"x": [0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 5.0], "c": ["lo", "lo", "lo", "hi", "hi", "hi", None]})
    test = pd.DataFrame({"x": [0.05, 10.05, np.nan], "c": [None, None, None]})
    imp = KNNFill(3, ["x"]).fit(train, ["c"])
    assert imp.transform(test)["c"].tolist() == ["lo", "hi", "hi"]  # no numeric value: the train mode (tie → smallest)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # the reference's own warning
def test_iterative_numeric_only_equals_sklearn():
    df, _, _ = correlated()
    train, test = split(df)
    ours = IterativeFill(10, 3, NUM, []).fit(train, NUM)
    ref = IterativeImputer(max_iter=10, random_state=3).fit(train.to_numpy())
    for part in (train, test):
        np.testing.assert_allclose(ours.transform(part)[NUM].to_numpy(), ref.transform(part.to_numpy()), atol=1e-6)


def test_iterative_mixed_types_beats_mode():
    rng = np.random.default_rng(1)
    n = 400
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    group = np.where(x1 + x2 > 0.8, "high", np.where(x1 - x2 > 0, "left", "right"))  # predictable from x1, x2
    df = pd.DataFrame({"x1": x1, "x2": x2, "g": group.astype(object)})
    hidden = rng.random(n) < 0.25
    df.loc[hidden, "g"] = None
    df.loc[rng.random(n) < 0.1, "x1"] = np.nan
    train, test = split(df, 300)
    imp = IterativeFill(10, 0, ["x1", "x2"], ["g"]).fit(train, ["x1", "x2", "g"])
    out = imp.transform(test)
    assert out["g"].notna().all() and out["x1"].notna().all()
    assert set(out["g"]) <= {"high", "left", "right"}
    miss = test["g"].isna().to_numpy()
    truth = group[300:][miss]
    acc_iter = np.mean(out["g"].to_numpy()[miss] == truth)
    acc_mode = np.mean(mode(train["g"]) == truth)
    assert acc_iter > acc_mode + 0.1, (acc_iter, acc_mode)


def test_autoencoder_is_deterministic_and_beats_mean():
    df, full, mask = correlated(n=344)
    train, test = split(df, 244)
    cfg = AutoencoderImputerConfig()
    a = AutoencoderFill(cfg, 7, NUM, []).fit(train, NUM)
    b = AutoencoderFill(cfg, 7, NUM, []).fit(train, NUM)
    out = a.transform(test)[NUM].to_numpy()
    np.testing.assert_array_equal(out, b.transform(test)[NUM].to_numpy())
    m = mask[244:]
    mean = np.where(m, np.nanmean(train.to_numpy(), 0), full[244:])
    rmse = lambda x: np.sqrt(np.mean(((x - full[244:]) / full.std(0))[m] ** 2))  # noqa: E731
    assert not np.isnan(out).any()
    assert rmse(out) < 0.8 * rmse(mean), (rmse(out), rmse(mean))
    assert (out[~m] == full[244:][~m]).all()  # observed cells untouched


def test_autoencoder_fills_categoricals_with_known_categories():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    df = pd.DataFrame({"x": x, "c": np.where(x > 0, "pos", "neg").astype(object)})
    df.loc[rng.random(200) < 0.2, "c"] = None
    imp = AutoencoderFill(AutoencoderImputerConfig(epochs=100), 0, ["x"], ["c"]).fit(df, ["c"])
    out = imp.transform(df)
    assert set(out["c"]) == {"pos", "neg"}
    miss = df["c"].isna().to_numpy()
    assert np.mean(out["c"].to_numpy()[miss] == np.where(x > 0, "pos", "neg")[miss]) > 0.8


def test_interpolate_along_order_edges_nearest():
    train = pd.DataFrame({"v": [1.0, 2.0, 3.0], "t": ["1", "2", "3"]})
    df = pd.DataFrame({"v": [np.nan, 10.0, np.nan, 30.0, np.nan], "t": ["5", "1", "2", "3", "0"]})
    out = Interpolate("t").fit(train, ["v"]).transform(df)
    assert out["v"].tolist() == [30.0, 10.0, 20.0, 30.0, 10.0]
    lonely = pd.DataFrame({"v": [np.nan], "t": ["1"]})
    assert Interpolate("t").fit(train, ["v"]).transform(lonely)["v"].tolist() == [2.0]  # the train median


def test_per_column_and_drop_column_above():
    df = pd.DataFrame({"a": [1.0, 2.0, np.nan, 10.0], "b": [1.0, 2.0, np.nan, 10.0], "c": ["x", None, "y", "y"],
                       "sparse": [np.nan, np.nan, np.nan, 1.0]})
    missing = MissingConfig(strategy="mean", per_column={"b": "median", "c": "constant"})
    out = TableImputer(missing, ["a", "b"], ["c"], seed=0).fit(df).transform(df)
    assert out["a"][2] == pytest.approx(13 / 3) and out["b"][2] == 2.0 and out["c"][1] == "missing"
    assert columns_to_drop(df, ["a", "b", "c", "sparse"], 0.5) == ["sparse"]
    assert columns_to_drop(df, ["a", "sparse"], None) == []


def test_fit_on_train_only_no_leak():
    """Test rows with a huge shifted mean must not move any fitted statistic."""
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(0, 1, 100), "c": rng.choice(["u", "v"], 100).astype(object), "y": ["p"] * 100})
    train.loc[::7, "x"] = np.nan
    test = pd.DataFrame({"x": rng.normal(1000, 1, 50), "c": ["w"] * 50, "y": ["p"] * 50})
    test.loc[::5, "x"] = np.nan
    for strategy in ("mean", "median", "knn", "iterative", "autoencoder"):
        cfg = TabularConfig(columns=ColumnsConfig(target="y", numeric=["x"], categorical=["c"]),
                            missing=MissingConfig(strategy=strategy, autoencoder=AutoencoderImputerConfig(epochs=20)),
                            scaling="zscore")
        pre = TabularPreprocessor(cfg, seed=0).fit(train)
        before = (pre.scaler.center.copy(), pre.scaler.scale.copy(), pre.encoder.categories)
        arrays = pre.transform(test)
        filled = pre.imputed(test)["x"].to_numpy()[::5]
        assert np.all(np.abs(filled) < 10), strategy  # imputed from train, not from the shifted test rows
        assert np.array_equal(before[0], pre.scaler.center) and np.array_equal(before[1], pre.scaler.scale)
        assert abs(pre.scaler.center[0] - np.nanmean(pre.imputed(train)["x"])) < 1e-9
        assert pre.encoder.categories == {"c": ["u", "v"]}  # "w" only in test: unknown, code 0
        assert (arrays.cat[:, 0] == 0).all() and (arrays.x[:, 1:] == 0).all()


def test_knn_votes_break_ties_toward_the_smallest_label():
    train = pd.DataFrame({"a": [0.0, 0.1, 0.2, 0.3, 5.0, 5.1], "c": ["y", "x", "y", "x", "z", "z"]})
    fill = KNNFill(4, ["a"]).fit(train, ["c"])  # the 4 nearest to 0.15: two x, two y → x
    out = fill.transform(pd.DataFrame({"a": [0.15, 5.05], "c": [None, None]}))
    assert out["c"].tolist() == ["x", "z"]


@pytest.mark.parametrize("missing", [{"strategy": "knn"}, {"strategy": "iterative"},
                                     {"strategy": "iterative", "per_column": {"k": "iterative"}}])
def test_fit_transform_imputes_train_once_with_the_same_arrays(missing):
    df, _, _ = correlated(n=200, seed=3)
    rng = np.random.default_rng(1)
    df["k"] = pd.Series(np.where(rng.random(200) < 0.2, None, rng.choice(["p", "q", "r"], 200)), dtype=object)
    cfg = TabularConfig(columns=ColumnsConfig(numeric=NUM, categorical=["k"]), missing=MissingConfig(**missing))
    a = TabularPreprocessor(cfg, 0, task="regression").fit(df).transform(df)
    b = TabularPreprocessor(cfg, 0, task="regression").fit_transform(df)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.cat, b.cat)
