"""Missing-value imputers for a table, each fit on the train split only.

Every imputer has ``fit(train_df, columns)`` (``columns``: the columns it fills), ``transform(df)
-> df`` (a copy, with only those columns changed) and ``state() -> dict`` (its statistics, for
``preprocessor.json``); they are deterministic for a seed, so a saved preprocessor refits. Numeric columns are float64 with NaN for a
missing cell, categorical ones hold strings with None.

* mean / median / mode / constant: as scikit-learn's ``SimpleImputer`` (mode: most frequent,
  ties → the smallest value). Categorical columns use mode under mean, median and interpolate.
* interpolate: linear along ``columns.order`` (else row order), edges take the nearest value;
  a column with nothing to interpolate from takes the train median.
* knn: scikit-learn's ``KNNImputer`` on the numeric features z-scored with train statistics;
  a categorical cell takes the majority category of its k nearest train rows (same distance).
* iterative: numeric cells by ``IterativeImputer`` (BayesianRidge; exactly scikit-learn's on
  numeric-only data), categorical cells by ``LogisticRegression``, alternated for a few rounds.
* autoencoder: :mod:`lmforge.data.tabular.autoencoder`.
* drop_row: ``prepare`` rejects such rows; here a median/mode fallback for new rows.
* none: cells stay missing (a categorical one gets code 0, a numeric one stays NaN).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from lmforge.data.tabular.config import MissingConfig
from lmforge.data.tabular.transform import as_matrix, mode, quiet

ITERATIVE_CAT_ROUNDS = 3  # numeric ⇄ categorical alternations when categorical cells are imputed
ORDER = ("drop_row", "mean", "median", "mode", "constant", "interpolate", "none", "knn", "iterative", "autoencoder")


def is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_float_dtype(s.dtype)


def strategy_for(missing: MissingConfig, column: str, numeric: bool) -> str:
    """The strategy that fills ``column`` (per-column override, else the global one)."""
    s = missing.per_column.get(column, missing.strategy)
    if not numeric and s in ("mean", "median", "interpolate"):
        return "mode"
    return s


def columns_to_drop(train: pd.DataFrame, columns: list[str], above: Optional[float]) -> list[str]:
    """Feature columns missing in more than ``above`` of the train rows."""
    if above is None or len(train) == 0:
        return []
    return [c for c in columns if float(train[c].isna().mean()) > above]


class SimpleFill:
    """One value per column: mean, median, mode or constant (drop_row falls back to median/mode)."""

    def __init__(self, strategy: str, fill_value: float = 0.0, fill_category: str = "missing"):
        self.strategy, self.fill_value, self.fill_category = strategy, fill_value, fill_category
        self.values: dict[str, object] = {}

    def fit(self, train: pd.DataFrame, columns: list[str]) -> "SimpleFill":
        for c in columns:
            s, num = train[c], is_numeric(train[c])
            if self.strategy == "constant":
                v = float(self.fill_value) if num else self.fill_category
            elif not num or self.strategy == "mode":
                v = mode(s)
            else:
                with quiet():
                    v = float(np.nanmean(s) if self.strategy == "mean" else np.nanmedian(s)) if s.notna().any() else None
            if num and v is None:
                v = float(self.fill_value)  # all missing in train: the constant
            self.values[c] = float(v) if num else v
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for c, v in self.values.items():
            if v is not None:
                df[c] = df[c].where(df[c].notna(), v) if not is_numeric(df[c]) else df[c].fillna(v)
        return df

    def state(self) -> dict:
        return {"strategy": self.strategy, "values": self.values}


class Interpolate:
    """Linear interpolation within the rows transformed together, along the order column."""

    def __init__(self, order: Optional[str] = None):
        self.order = order
        self.fallback = SimpleFill("median")

    def fit(self, train: pd.DataFrame, columns: list[str]) -> "Interpolate":
        self.fallback.fit(train, columns)
        return self

    def _position(self, df: pd.DataFrame) -> np.ndarray:
        if self.order is None:
            return np.arange(len(df), dtype=np.float64)
        key = df[self.order]
        num = pd.to_numeric(key, errors="coerce")
        if num.notna().sum() >= key.notna().sum():
            return num.to_numpy(dtype=np.float64)
        when = pd.to_datetime(key.astype(object), errors="coerce", format="mixed").to_numpy(dtype="datetime64[ns]")
        return np.where(np.isnat(when), np.nan, when.astype(np.int64).astype(np.float64))

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        pos = self._position(df)  # (N,) the x of each row; NaN: unknown place → fallback
        for c in self.fallback.values:
            y = df[c].to_numpy(dtype=np.float64)
            known = ~np.isnan(y) & ~np.isnan(pos)
            if known.any():
                sort = np.argsort(pos[known], kind="stable")
                filled = np.interp(pos, pos[known][sort], y[known][sort])  # np.interp: edges → nearest
                y = np.where(np.isnan(y), filled, y)
            df[c] = y
        return self.fallback.transform(df)

    def state(self) -> dict:
        return {"strategy": "interpolate", "order": self.order, "fallback_median": self.fallback.values}


class _Scaled:
    """z-scoring of the numeric features with train statistics (shared by knn and iterative)."""

    def _fit_scale(self, train: pd.DataFrame) -> None:
        x = as_matrix(train, self.numeric)
        with quiet():
            mu, sd = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
        self.mu = np.where(np.isfinite(mu), mu, 0.0)
        self.sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)

    def _scaled(self, df: pd.DataFrame) -> np.ndarray:
        return (as_matrix(df, self.numeric) - self.mu) / self.sd  # (N, P)


class KNNFill(_Scaled):
    """k nearest train rows by NaN-aware Euclidean distance on the z-scored numeric features."""

    def __init__(self, k: int, numeric: list[str]):
        self.k, self.numeric = k, list(numeric)

    def fit(self, train: pd.DataFrame, columns: list[str]) -> "KNNFill":
        from sklearn.impute import KNNImputer

        self.own_num = [c for c in columns if c in self.numeric]
        self.own_cat = [c for c in columns if c not in self.numeric]
        self._fit_scale(train)
        z = self._scaled(train)  # (N, P)
        self.knn = KNNImputer(n_neighbors=self.k, keep_empty_features=True).fit(z) if self.numeric else None
        self.donors = {c: (z[train[c].notna().to_numpy()], train[c].dropna().astype(str).to_numpy()) for c in self.own_cat}
        self.modes = {c: mode(train[c]) for c in self.own_cat}
        return self

    def _vote(self, z: np.ndarray, donors: np.ndarray, labels: np.ndarray, default: object) -> list:
        """The most frequent label among each row's k nearest donors (ties: the smallest label, as
        :func:`mode`), counted for a block of rows at once; rows with no finite distance get ``default``."""
        from sklearn.metrics.pairwise import nan_euclidean_distances

        names, codes = np.unique(labels, return_inverse=True)  # sorted: the smallest label has the lowest code
        out: list = []
        for start in range(0, len(z), 1024):
            d = nan_euclidean_distances(z[start:start + 1024], donors)  # (B, donors)
            d = np.where(np.isnan(d), np.inf, d)
            near = np.argsort(d, axis=1, kind="stable")[:, :self.k]  # (B, k)
            finite = np.isfinite(np.take_along_axis(d, near, axis=1))  # (B, k)
            counts = np.zeros((len(d), len(names)), dtype=np.int64)  # (B, labels)
            np.add.at(counts, (np.repeat(np.arange(len(d)), near.shape[1]), codes[near].reshape(-1)),
                      finite.reshape(-1).astype(np.int64))
            best = counts.argmax(axis=1)  # the first of the tied maxima: the smallest label
            out += [names[b] if any_ else default for b, any_ in zip(best, finite.any(axis=1))]
        return out

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        z = self._scaled(df)
        if self.own_num and len(df):
            filled = self.knn.transform(z) * self.sd + self.mu  # (N, P)
            for c in self.own_num:  # observed cells keep their exact value (no unscaling round trip)
                df[c] = np.where(df[c].isna(), filled[:, self.numeric.index(c)], df[c].to_numpy(dtype=np.float64))
        for c in self.own_cat:
            miss = df[c].isna().to_numpy()
            if miss.any():
                donors, labels = self.donors[c]
                votes = (self._vote(z[miss], donors, labels, self.modes[c]) if len(donors) and self.numeric
                         else [self.modes[c]] * int(miss.sum()))
                col = df[c].to_numpy(dtype=object, copy=True)
                col[miss] = votes
                df[c] = pd.Series(col, index=df.index, dtype=object)
        return df

    def state(self) -> dict:
        return {"strategy": "knn", "k": self.k, "mean": self.mu.tolist(), "std": self.sd.tolist()}


def _numeric_targets_imputer(n_targets: int, **kw):
    """scikit-learn's ``IterativeImputer`` that models only the first ``n_targets`` columns (the
    numeric features) and uses the rest (one-hot categories, never missing) only as predictors.
    ``skip_complete`` would also skip a numeric column complete in train but missing at predict
    time; this keeps every numeric column's model, so the results equal the plain imputer's, which
    also fits a model for every one-hot column and never uses it."""
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    class NumericTargets(IterativeImputer):
        def _get_ordered_idx(self, mask_missing_values):
            idx = super()._get_ordered_idx(mask_missing_values)
            return idx[idx < n_targets]

    return NumericTargets(**kw)


class IterativeFill(_Scaled):
    """Round-robin regression (numeric) and classification (categorical) imputation."""

    def __init__(self, max_iter: int, seed: int, numeric: list[str], categorical: list[str]):
        self.max_iter, self.seed = max_iter, seed
        self.numeric, self.categorical = list(numeric), list(categorical)

    def _onehot(self, cats: pd.DataFrame, skip: Optional[str] = None) -> np.ndarray:
        blocks = [np.stack([(cats[c] == v).to_numpy(dtype=np.float64) for v in self.levels[c]], axis=1)
                  for c in self.categorical if c != skip and self.levels[c]]
        return np.hstack(blocks) if blocks else np.zeros((len(cats), 0))  # (N, ΣK)

    def fit(self, train: pd.DataFrame, columns: list[str]) -> "IterativeFill":
        self._fit(train, columns)
        return self

    def fit_transform(self, train: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
        """``fit`` then ``transform(train)``, with the train rows imputed once (by the fitting itself)."""
        return self._filled(train, self._fit(train, columns))

    def _fit(self, train: pd.DataFrame, columns: list[str]) -> dict:
        """Fit every round on ``train``; returns the rounds' final state for the train rows."""
        self.own_num = [c for c in columns if c in self.numeric]
        self.own_cat = [c for c in columns if c in self.categorical]
        self.levels = {c: sorted(train[c].dropna().astype(str).unique()) for c in self.categorical}
        self.modes = {c: mode(train[c].dropna().astype(str)) for c in self.categorical}
        self._fit_scale(train)
        self.rounds: list[tuple] = []  # per round: (IterativeImputer or None, {column: classifier or constant})
        state = None
        for _ in range(ITERATIVE_CAT_ROUNDS if self.own_cat else 1):
            models, state = self._round(train, None, state)
            self.rounds.append(models)
        return state

    def _start(self, df: pd.DataFrame) -> pd.DataFrame:
        cats = df[self.categorical].astype(object).copy()
        for c in self.categorical:
            cats[c] = cats[c].where(cats[c].notna(), self.modes[c]).map(lambda v: v if v is None else str(v))
        return cats

    def _round(self, df: pd.DataFrame, models: Optional[tuple], state: Optional[dict]) -> tuple[tuple, dict]:
        """One round from ``state`` (numeric matrix and categorical frame so far): applies
        ``models``, or fits them first when None. Returns the models and the new state."""
        from sklearn.linear_model import LogisticRegression

        state = state if state is not None else {"num": as_matrix(df, self.numeric), "cats": self._start(df)}
        x, cats = state["num"], state["cats"]
        fit = models is None
        imp, clfs = (None, {}) if fit else models
        z = np.hstack([as_matrix(df, self.numeric), self._onehot(cats)])  # (N, P + ΣK), original NaNs
        with quiet():
            if fit and self.own_num:  # fitting gives the imputed train rows too: no second pass over them
                imp = _numeric_targets_imputer(len(self.numeric), max_iter=self.max_iter, random_state=self.seed,
                                               keep_empty_features=True)
                x = imp.fit_transform(z)[:, :len(self.numeric)]  # (N, P)
            elif imp is not None and len(df):
                x = imp.transform(z)[:, :len(self.numeric)]  # (N, P)
            for c in self.own_cat:
                miss = df[c].isna().to_numpy()
                known = np.where(np.isnan(x), self.mu, x)  # a numeric column left missing (strategy none)
                feats = np.hstack([(known - self.mu) / self.sd, self._onehot(cats, skip=c)])
                if fit:
                    y = cats[c].to_numpy()[~miss]
                    clfs[c] = (LogisticRegression(max_iter=1000).fit(feats[~miss], y)
                               if len(set(y)) > 1 and feats.shape[1] else self.modes[c])
                if miss.any():
                    clf = clfs[c]
                    col = cats[c].to_numpy(dtype=object, copy=True)
                    col[miss] = clf.predict(feats[miss]) if not isinstance(clf, (str, type(None))) else clf
                    cats[c] = pd.Series(col, index=cats.index, dtype=object)
        state.update(num=x, cats=cats)
        return (imp, clfs), state

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        state = None
        for models in self.rounds:
            _, state = self._round(df, models, state)
        return self._filled(df, state)

    def _filled(self, df: pd.DataFrame, state: dict) -> pd.DataFrame:
        df = df.copy()
        for c in self.own_num:
            df[c] = np.where(df[c].isna(), state["num"][:, self.numeric.index(c)], df[c].to_numpy(dtype=np.float64))
        for c in self.own_cat:
            df[c] = pd.Series(state["cats"][c].to_numpy(dtype=object), index=df.index, dtype=object)
        return df

    def state(self) -> dict:
        return {"strategy": "iterative", "max_iter": self.max_iter, "rounds": len(self.rounds),
                "estimator": "BayesianRidge (numeric), LogisticRegression (categorical)"}


class TableImputer:
    """Every feature column's imputer, applied in ``ORDER`` (simple fills first, so knn, iterative
    and autoencoder see the other columns already filled)."""

    def __init__(self, missing: MissingConfig, numeric: list[str], categorical: list[str], seed: int,
                 order: Optional[str] = None):
        self.missing, self.seed, self.order = missing, seed, order
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.strategies = {c: strategy_for(missing, c, c in self.numeric) for c in self.numeric + self.categorical}
        self.steps: list[tuple[str, list[str], object]] = []  # (strategy, columns, fitted imputer)

    def _make(self, strategy: str):
        m = self.missing
        if strategy in ("mean", "median", "mode", "constant"):
            return SimpleFill(strategy, m.fill_value, m.fill_category)
        if strategy == "drop_row":
            return SimpleFill("median")
        if strategy == "interpolate":
            return Interpolate(self.order)
        if strategy == "knn":
            return KNNFill(m.knn_neighbors, self.numeric)
        if strategy == "iterative":
            return IterativeFill(m.iterative_max_iter, self.seed, self.numeric, self.categorical)
        from lmforge.data.tabular.autoencoder import AutoencoderFill

        return AutoencoderFill(m.autoencoder, self.seed, self.numeric, self.categorical)

    def fit(self, train: pd.DataFrame) -> "TableImputer":
        self.fit_transform(train)
        return self

    def fit_transform(self, train: pd.DataFrame) -> pd.DataFrame:
        """Fit every step on ``train`` as the earlier steps left it; returns the imputed train rows
        (computed on the way, so a caller need not impute train again)."""
        self.steps = []
        for strategy in ORDER:
            cols = [c for c, s in self.strategies.items() if s == strategy]
            if cols and strategy != "none":
                imputer = self._make(strategy)
                if hasattr(imputer, "fit_transform"):  # imputes the train rows while fitting
                    train = imputer.fit_transform(train, cols)
                else:
                    train = imputer.fit(train, cols).transform(train)
                self.steps.append((strategy, cols, imputer))
        return train

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        for _, _, imputer in self.steps:
            df = imputer.transform(df)
        return df

    def state(self) -> dict:
        return {"strategies": self.strategies,
                "steps": [{"columns": cols, **imputer.state()} for _, cols, imputer in self.steps]}
