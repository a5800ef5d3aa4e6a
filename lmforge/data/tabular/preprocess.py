"""The fitted table → arrays transform: dates/log features → impute → polynomial features →
outlier clipping → scaling → categorical encoding, every statistic from the train split.

Polynomial features are computed after imputation (a square of an imputed value, not an imputed
square). ``transform`` gives :class:`TabularArrays`: ``x`` holds the numeric features first
(``n_numeric`` of them), then the one-hot (or ordinal) categorical columns; ``cat`` always holds
the categorical codes (0 = missing/unknown, 1..K) for models that embed them.

Saved as ``preprocessor.json`` (readable: config, features, statistics, a check) next to
``train.parquet`` (the train rows it was fit on). Nothing is pickled — lmforge never unpickles:
``load`` verifies the rows' sha256, refits (every step is deterministic for the seed) and checks
the refit reproduces the recorded per-feature statistics.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from lmforge.config.schema import to_dict
from lmforge.data.tabular.config import TabularConfig
from lmforge.data.tabular.impute import TableImputer, columns_to_drop
from lmforge.data.tabular.transform import (CategoryEncoder, DateFeatures, LogFeatures, OutlierClipper,
                                            PolynomialFeatures, Scaler, as_matrix)
from lmforge.errors import ArtifactError, DataError, writing
from lmforge.layout import ensure_dir
from lmforge.models.weights import sha256

MAX_INTEGER_CLASSES = 20  # task: auto → classification for an integer target with at most this many values
ORDER_KEY = "__order__"  # the order column, carried through the feature steps for interpolation
JSON_FILE, TRAIN_FILE = "preprocessor.json", "train.parquet"
FORMAT = "lmforge.tabular.preprocessor/2"


@dataclass
class TabularArrays:
    """One split as arrays, rows aligned."""

    x: np.ndarray  # (N, F) float32: numeric features, then one-hot / ordinal categorical columns
    cat: np.ndarray  # (N, G) int64: categorical codes, 0 = missing/unknown, 1..K
    y: Optional[np.ndarray]  # (N,) int64 class ids (-1: unknown/missing) or float32 values (NaN: missing)
    ids: list[str]
    lines: list[int]


def to_float(value: object) -> float:
    """A target cell as a float; NaN when missing or not a number."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def resolve_task(task: str, target: pd.Series) -> str:
    """``auto`` → classification when the target is text or has ≤ 20 distinct integer values."""
    if task != "auto":
        return task
    values = target.dropna()
    nums = np.array([to_float(v) for v in values])
    if len(values) == 0 or np.isnan(nums).any():
        return "classification"
    integer = bool(np.all(nums == np.round(nums)))
    return "classification" if integer and len(np.unique(nums)) <= MAX_INTEGER_CLASSES else "regression"


def sort_labels(labels) -> list[str]:
    """Label names sorted; numerically when they all are integers ("2" before "10")."""
    labels = sorted({str(v) for v in labels})
    try:
        return sorted(labels, key=int)
    except ValueError:
        return labels


class TabularPreprocessor:
    """Fit on the train split, then turn any split (or new rows) into :class:`TabularArrays`."""

    def __init__(self, cfg: TabularConfig, seed: int, task: Optional[str] = None, labels: Optional[list[str]] = None):
        self.cfg, self.seed = cfg, seed
        self.task = task or cfg.task
        self.labels: Optional[list[str]] = list(labels) if labels else None
        self.target = cfg.columns.target
        self.fitted = False

    # ---- the steps ---------------------------------------------------------------------------------
    def _features(self, df: pd.DataFrame) -> pd.DataFrame:
        """Kept feature columns (+ the order key), dates expanded, log columns transformed."""
        cols = self.numeric_raw + self.categorical + self.dates.columns
        frame = df[cols].copy()
        if self.cfg.columns.order:
            frame[ORDER_KEY] = df[self.cfg.columns.order].to_numpy()
        return self.log.transform(self.dates.transform(frame))

    def imputed(self, df: pd.DataFrame) -> pd.DataFrame:
        """Feature columns after the feature steps and imputation (the report counts what is left missing)."""
        return self.poly.transform(self.imputer.transform(self._features(df)))

    def fit(self, train: pd.DataFrame, drop: Optional[list[str]] = None) -> "TabularPreprocessor":
        """Fit every step on ``train``; ``drop``: columns to drop (default: from ``missing.drop_column_above``)."""
        self._fit(train, drop)
        return self

    def fit_transform(self, train: pd.DataFrame, lines: Optional[list[int]] = None,
                      ids: Optional[list[str]] = None, drop: Optional[list[str]] = None) -> TabularArrays:
        """``fit(train)`` then ``transform(train)``, imputing the train rows once."""
        return self._arrays(train, self._fit(train, drop), lines, ids)

    def _fit(self, train: pd.DataFrame, drop: Optional[list[str]]) -> pd.DataFrame:
        """:meth:`fit`; returns the imputed train feature frame it computed on the way (= ``imputed(train)``)."""
        c, f = self.cfg.columns, self.cfg.features
        unknown = sorted(set(f.log + f.polynomial) - set(c.numeric))
        if unknown:
            raise DataError(f"data.tabular.features names {unknown}, which are not numeric columns "
                            f"(columns.numeric: {c.numeric})")
        self.dropped = list(drop) if drop is not None else columns_to_drop(
            train, c.numeric + c.categorical + c.dates, self.cfg.missing.drop_column_above)
        keep = [x for x in c.numeric + c.categorical + c.dates if x not in self.dropped]
        if not keep:
            raise DataError(f"every feature column was dropped (missing in more than "
                            f"{self.cfg.missing.drop_column_above} of train rows: {self.dropped}); "
                            "raise data.tabular.missing.drop_column_above")
        self.numeric_raw = [x for x in c.numeric if x in keep]
        self.categorical = [x for x in c.categorical if x in keep]
        self.dates = DateFeatures([x for x in c.dates if x in keep])
        self.log = LogFeatures([x for x in f.log if x in keep])
        self.log.fit(self.dates.transform(train[self.numeric_raw + self.dates.columns]))
        self.poly = PolynomialFeatures([x for x in f.polynomial if x in keep])
        base = self.numeric_raw + self.dates.names()
        self.imputer = TableImputer(self.cfg.missing, base, self.categorical, self.seed, ORDER_KEY if c.order else None)
        frame = self.poly.transform(self.imputer.fit_transform(self._features(train)))  # = self.imputed(train)
        self.numeric = base + self.poly.names()
        x = as_matrix(frame, self.numeric)  # (N, P)
        self.outliers = OutlierClipper(self.cfg.outliers, self.cfg.outlier_factor).fit(x)
        self.scaler = Scaler(self.cfg.scaling).fit(self.outliers.transform(x))
        self.encoder = CategoryEncoder(self.categorical, self.cfg.categorical_encoding).fit(frame)
        if self.target in train.columns:
            self.task = resolve_task(self.task, train[self.target])
            if self.task == "classification" and not self.labels:
                self.labels = sort_labels(train[self.target].dropna())
        self.fitted = True
        roles = [x for x in [*c.numeric, *c.categorical, *c.dates, c.order, c.id, self.target] if x]
        self._train = train[[x for x in dict.fromkeys(roles) if x in train.columns]].reset_index(drop=True)
        return frame

    def transform(self, df: pd.DataFrame, lines: Optional[list[int]] = None,
                  ids: Optional[list[str]] = None) -> TabularArrays:
        """``df`` → arrays; ``y`` is None when ``df`` has no target column."""
        return self.transform_with_frame(df, lines, ids)[0]

    def transform_with_frame(self, df: pd.DataFrame, lines: Optional[list[int]] = None,
                             ids: Optional[list[str]] = None) -> tuple[TabularArrays, pd.DataFrame]:
        """:meth:`transform`, plus the imputed feature frame it was made from (:meth:`imputed`)."""
        if not self.fitted:
            raise DataError("the tabular preprocessor is not fit yet: call fit(train) first")
        order = [self.cfg.columns.order] if self.cfg.columns.order else []
        missing = [x for x in self.numeric_raw + self.categorical + self.dates.columns + order if x not in df.columns]
        if missing:
            raise DataError(f"the table lacks the feature columns {missing} the preprocessor was fit with")
        frame = self.imputed(df)
        return self._arrays(df, frame, lines, ids), frame

    def _arrays(self, df: pd.DataFrame, frame: pd.DataFrame, lines: Optional[list[int]],
                ids: Optional[list[str]]) -> TabularArrays:
        """The arrays of ``df`` from its imputed feature ``frame``."""
        num = self.scaler.transform(self.outliers.transform(as_matrix(frame, self.numeric)))  # (N, P)
        codes = self.encoder.codes(frame)  # (N, G)
        x = np.hstack([num, self.encoder.encode(codes)]).astype(np.float32)  # (N, F)
        y = None
        if self.target in df.columns:
            if self.task == "classification":
                index = {v: i for i, v in enumerate(self.labels or [])}
                y = np.array([index.get(str(v), -1) if v is not None else -1 for v in df[self.target]], dtype=np.int64)
            else:
                y = np.array([to_float(v) for v in df[self.target]], dtype=np.float32)
        lines = [int(v) for v in lines] if lines is not None else list(range(len(df)))
        if ids is None:
            idc = self.cfg.columns.id
            ids = [str(v) for v in df[idc]] if idc and idc in df.columns else [str(v) for v in lines]
        return TabularArrays(x, codes, y, list(ids), lines)

    # ---- what the model and the report need --------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return self.numeric + self.encoder.names()

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def cat_cardinalities(self) -> list[int]:
        return self.encoder.cardinalities()

    def summary(self) -> dict:
        """The readable part of ``preprocessor.json``."""
        return {"task": self.task, "labels": self.labels, "target": self.target, "seed": self.seed,
                "feature_names": self.feature_names, "n_numeric": self.n_numeric,
                "categorical": self.categorical, "cat_cardinalities": self.cat_cardinalities,
                "categories": self.encoder.categories, "dropped_columns": self.dropped,
                "statistics": {"imputer": self.imputer.state(), "log_minimum": self.log.minimum,
                               "outliers": self.outliers.stats(), "scaler": self.scaler.stats()},
                "config": to_dict(self.cfg)}

    # ---- save / load -----------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``preprocessor.json`` (config, seed, task, labels, statistics, a check) + the train rows it
        was fit on (``train.parquet``). No fitted object is pickled: :meth:`load` refits on those
        rows — every step is deterministic for a seed — and checks the result against the record."""
        folder = ensure_dir(Path(folder), "preprocessor")
        with writing(folder):
            self._train.to_parquet(folder / TRAIN_FILE, index=False)
            meta = {"format": FORMAT, **self.summary(), "train_file": TRAIN_FILE,
                    "train_sha256": sha256(folder / TRAIN_FILE), "check": self._check()}
            (folder / JSON_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        return folder

    def _check(self) -> dict:
        """Per-feature mean and std of the transformed train rows: what a refit must reproduce."""
        x = self.transform(self._train).x.astype(np.float64)
        with np.errstate(all="ignore"):
            return {"x_mean": np.nan_to_num(np.nanmean(x, 0)).tolist() if len(x) else [],
                    "x_std": np.nan_to_num(np.nanstd(x, 0)).tolist() if len(x) else []}

    @classmethod
    def load(cls, folder: str | Path) -> "TabularPreprocessor":
        from lmforge.config.schema import build

        folder = Path(folder)
        meta_path, train_path = folder / JSON_FILE, folder / TRAIN_FILE
        if not meta_path.is_file() or not train_path.is_file():
            raise ArtifactError(f"no tabular preprocessor at {folder} (needs {JSON_FILE} and {TRAIN_FILE}); "
                                "run `lmforge data prepare` with data.kind: tabular")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            expected = meta["train_sha256"]
        except (ValueError, KeyError) as exc:
            raise ArtifactError(f"{meta_path}: unreadable or not a {FORMAT} record ({exc}); prepare the data again") from None
        actual = sha256(train_path)
        if actual != expected:
            raise ArtifactError(f"{train_path} was modified after it was written (sha256 {actual[:16]}…, "
                                f"{JSON_FILE} records {str(expected)[:16]}…); prepare the data again "
                                "(`lmforge data prepare`)")
        train = pd.read_parquet(train_path)
        train = train.astype(object).where(train.notna(), None) if len(train) else train
        for col in meta["config"]["columns"]["numeric"]:
            if col in train.columns:
                train[col] = pd.to_numeric(train[col], errors="coerce").astype(np.float64)
        pre = cls(build(TabularConfig, meta["config"], str(meta_path)), int(meta["seed"]), task=meta["task"],
                  labels=meta["labels"]).fit(train, drop=meta["dropped_columns"])
        got, want = pre._check(), meta["check"]
        for k in ("x_mean", "x_std"):
            if len(got[k]) != len(want[k]) or not np.allclose(got[k], want[k], rtol=1e-5, atol=1e-6):
                raise ArtifactError(f"{folder}: refitting the preprocessor on its train rows does not reproduce the "
                                    f"recorded statistics ({k}); were scikit-learn/torch upgraded since? prepare the "
                                    "data again")
        return pre
