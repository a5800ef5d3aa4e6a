"""The fitted column transforms of a table: feature engineering, outlier clipping, scaling and
categorical encoding. Each ``fit`` sees the train split only; ``transform`` applies the stored
statistics to any split (or to new rows at prediction time).

Statistics ignore missing cells (``nan*`` reductions), so a column left missing by
``missing.strategy: none`` still has finite statistics. A constant column never divides by zero:
its spread is taken as 1.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from itertools import combinations
from typing import Optional

import numpy as np
import pandas as pd

DATE_PARTS = ("year", "month", "day", "weekday")


def _spread(x: np.ndarray) -> np.ndarray:
    """A per-column divisor: ``x`` with zeros and non-finite values replaced by 1."""
    return np.where(np.isfinite(x) & (x != 0), x, 1.0)


def mode(values: pd.Series) -> object:
    """Most frequent non-missing value; ties → the smallest (as ``SimpleImputer``); None if all missing."""
    counts = values.dropna().value_counts()
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index
    return min(best)


def as_matrix(df: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Numeric columns as a float64 matrix (N, C), NaN for missing."""
    return df[columns].to_numpy(dtype=np.float64, na_value=np.nan).reshape(len(df), len(columns))


@contextmanager
def quiet():
    """Silence numpy's 'all-NaN slice' / 'mean of empty slice' warnings (an all-missing column)
    and scikit-learn's convergence warnings (an iterative imputer stopped at max_iter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


class DateFeatures:
    """Each date column → ``<col>_year``, ``_month``, ``_day``, ``_weekday`` (Monday = 0); the date
    column itself is removed. An unparseable date was already counted and blanked when read."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)

    def names(self) -> list[str]:
        return [f"{c}_{p}" for c in self.columns for p in DATE_PARTS]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for c in self.columns:
            stamps = pd.to_datetime(df[c].astype(object), errors="coerce", format="mixed")
            for part, attr in zip(DATE_PARTS, ("year", "month", "day", "day_of_week")):
                df[f"{c}_{part}"] = getattr(stamps.dt, attr).astype("float64").to_numpy()
            df = df.drop(columns=c)
        return df


class LogFeatures:
    """``x ← log1p(max(x − min_train, 0))`` for skewed positive columns (values below the train
    minimum map to 0)."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)
        self.minimum: dict[str, float] = {}

    def fit(self, train: pd.DataFrame) -> "LogFeatures":
        for c in self.columns:
            lo = np.nanmin(train[c].to_numpy(dtype=np.float64)) if train[c].notna().any() else 0.0
            self.minimum[c] = float(lo)
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        for c in self.columns:
            x = df[c].to_numpy(dtype=np.float64)
            df[c] = np.log1p(np.clip(x - self.minimum[c], 0.0, None))
        return df


class PolynomialFeatures:
    """Squares ``a^2`` and pairwise products ``a*b`` of the listed columns, appended."""

    def __init__(self, columns: list[str]):
        self.columns = list(columns)

    def names(self) -> list[str]:
        return [f"{c}^2" for c in self.columns] + [f"{a}*{b}" for a, b in combinations(self.columns, 2)]

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        new = {f"{c}^2": df[c].to_numpy(dtype=np.float64) ** 2 for c in self.columns}
        for a, b in combinations(self.columns, 2):
            new[f"{a}*{b}"] = df[a].to_numpy(dtype=np.float64) * df[b].to_numpy(dtype=np.float64)
        return df.assign(**new) if new else df


class OutlierClipper:
    """Clip numeric columns to ``[q1 − f·IQR, q3 + f·IQR]`` (iqr, f = 1.5) or ``mean ± f·std``
    (zscore, f = 3), bounds from the train split."""

    def __init__(self, method: str, factor: Optional[float] = None):
        self.method = method
        self.factor = factor if factor is not None else {"iqr": 1.5, "zscore": 3.0}.get(method, 0.0)
        self.low: Optional[np.ndarray] = None  # (C,)
        self.high: Optional[np.ndarray] = None  # (C,)

    def fit(self, x: np.ndarray) -> "OutlierClipper":
        if self.method == "none" or x.shape[1] == 0:
            return self
        with np.errstate(all="ignore"), quiet():
            if self.method == "iqr":
                q1, q3 = np.nanpercentile(x, 25, axis=0), np.nanpercentile(x, 75, axis=0)
                self.low, self.high = q1 - self.factor * (q3 - q1), q3 + self.factor * (q3 - q1)
            else:
                mean, std = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
                self.low, self.high = mean - self.factor * std, mean + self.factor * std
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.low is None:
            return x
        low = np.where(np.isfinite(self.low), self.low, -np.inf)
        high = np.where(np.isfinite(self.high), self.high, np.inf)
        return np.clip(x, low, high)  # NaN stays NaN

    def stats(self) -> dict:
        return {"method": self.method, "factor": self.factor,
                "low": None if self.low is None else self.low.tolist(),
                "high": None if self.high is None else self.high.tolist()}


class Scaler:
    """minmax: ``(x − min) / (max − min)``; zscore: ``(x − mean) / std``; robust:
    ``(x − median) / IQR``; none. Statistics from the train split; a zero spread divides by 1."""

    def __init__(self, method: str):
        self.method = method
        self.center: Optional[np.ndarray] = None  # (C,)
        self.scale: Optional[np.ndarray] = None  # (C,)

    def fit(self, x: np.ndarray) -> "Scaler":
        c = x.shape[1]
        center, scale = np.zeros(c), np.ones(c)
        if self.method != "none" and c and len(x):
            with np.errstate(all="ignore"), quiet():
                if self.method == "minmax":
                    lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
                    center, scale = lo, hi - lo
                elif self.method == "zscore":
                    center, scale = np.nanmean(x, axis=0), np.nanstd(x, axis=0)
                elif self.method == "robust":
                    center = np.nanmedian(x, axis=0)
                    scale = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
        self.center = np.where(np.isfinite(center), center, 0.0)
        self.scale = _spread(scale)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.center) / self.scale

    def stats(self) -> dict:
        return {"method": self.method, "center": self.center.tolist(), "scale": self.scale.tolist()}


class CategoryEncoder:
    """Categories learned on train, sorted; codes 1..K, 0 for a missing or unseen category.
    ``onehot`` gives K columns per categorical column (all zeros for code 0); ``ordinal`` one
    column holding the code."""

    def __init__(self, columns: list[str], encoding: str = "onehot"):
        self.columns = list(columns)
        self.encoding = encoding
        self.categories: dict[str, list[str]] = {}

    def fit(self, train: pd.DataFrame) -> "CategoryEncoder":
        for c in self.columns:
            self.categories[c] = sorted({str(v) for v in train[c] if v is not None and not pd.isna(v)})
        return self

    def cardinalities(self) -> list[int]:
        """K + 1 per column (code 0 = missing/unknown)."""
        return [len(self.categories[c]) + 1 for c in self.columns]

    def names(self) -> list[str]:
        if self.encoding == "ordinal":
            return list(self.columns)
        return [f"{c}={v}" for c in self.columns for v in self.categories[c]]

    def codes(self, df: pd.DataFrame) -> np.ndarray:
        out = np.zeros((len(df), len(self.columns)), dtype=np.int64)  # (N, G)
        for j, c in enumerate(self.columns):
            index = {v: i + 1 for i, v in enumerate(self.categories[c])}
            out[:, j] = [index.get(str(v), 0) if v is not None and not pd.isna(v) else 0 for v in df[c]]
        return out

    def encode(self, codes: np.ndarray) -> np.ndarray:
        """Codes (N, G) → feature columns (N, G) ordinal or (N, ΣK) one-hot."""
        if self.encoding == "ordinal":
            return codes.astype(np.float64)
        blocks = []
        for j, c in enumerate(self.columns):
            k = len(self.categories[c])
            eye = np.vstack([np.zeros((1, k)), np.eye(k)])  # row 0: unknown → all zeros
            blocks.append(eye[codes[:, j]])
        return np.hstack(blocks) if blocks else np.zeros((len(codes), 0))
