"""Schema of ``data.tabular``: a table with declared columns, missing values, outliers, scaling,
categorical encoding and feature engineering — every fitted step fit on the train split only.

Used when ``data.kind: tabular``. The split (``data.split.val/test``, stratified for
classification) is the text pipeline's key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

IMPUTERS = ("drop_row", "mean", "median", "mode", "constant", "interpolate", "knn", "iterative", "autoencoder", "none")


@dataclass
class TableSourceConfig:
    """One table: CSV/TSV/Parquet file(s), or a bundled one."""

    path: Optional[str] = field(default=None, metadata={"help": "CSV, TSV or Parquet file (glob allowed)"})
    builtin: Optional[Literal["penguins"]] = field(default=None, metadata={"help": "the palmerpenguins package's table (344 rows, real missing values)"})
    format: Literal["auto", "csv", "tsv", "parquet"] = "auto"

    def validate(self):
        if (self.path is None) == (self.builtin is None):
            yield "path", "set exactly one of 'path' or 'builtin'"


@dataclass
class ColumnsConfig:
    """The declared schema. Columns not named here are ignored (and listed in the report)."""

    target: Optional[str] = field(default=None, metadata={"help": "column to predict"})
    numeric: list[str] = field(default_factory=list, metadata={"help": "numeric feature columns (a cell that does not parse is a type error, counted per column)"})
    categorical: list[str] = field(default_factory=list, metadata={"help": "categorical feature columns"})
    id: Optional[str] = field(default=None, metadata={"help": "row id column (kept for predictions, never a feature)"})
    order: Optional[str] = field(default=None, metadata={"help": "order key (time series): rows are sorted by it for interpolation"})
    dates: list[str] = field(default_factory=list, metadata={"help": "date columns: expanded into year/month/day/weekday features"})

    def problems(self):
        """Missing declarations (checked by ``data.validate`` when ``data.kind: tabular``)."""
        if not self.target:
            yield "target", "name the column to predict (data.tabular.columns.target)"
        if not (self.numeric or self.categorical or self.dates):
            yield "numeric", "declare at least one feature column (numeric, categorical or dates)"

    def validate(self):
        named = [c for c in [self.target, self.id, *self.numeric, *self.categorical, *self.dates] if c]
        dup = sorted({c for c in named if named.count(c) > 1})
        if dup:
            yield "numeric", f"columns declared twice: {dup}"


@dataclass
class AutoencoderImputerConfig:
    """The denoising autoencoder imputer (our small MLP, trained on the train split's observed cells)."""

    hidden: int = field(default=64, metadata={"min": 2})
    bottleneck: int = field(default=16, metadata={"min": 1})
    epochs: int = field(default=200, metadata={"min": 1})
    mask_prob: float = field(default=0.2, metadata={"min": 0.0, "max": 0.9, "help": "extra cells hidden during training (denoising)"})
    lr: float = field(default=1e-2, metadata={"min": 0.0})


@dataclass
class MissingConfig:
    """Missing values: one strategy for all columns, overridable per column."""

    strategy: Literal["drop_row", "mean", "median", "mode", "constant", "interpolate", "knn", "iterative", "autoencoder", "none"] = field(
        default="median", metadata={"help": "numeric columns (categorical ones use mode unless the strategy is drop_row, constant, knn, iterative or autoencoder)"})
    per_column: dict[str, str] = field(default_factory=dict, metadata={"help": "column → strategy for that column"})
    drop_column_above: Optional[float] = field(default=None, metadata={"min": 0.0, "max": 1.0, "help": "drop a feature column missing in more than this fraction of train rows"})
    fill_value: float = field(default=0.0, metadata={"help": "constant for numeric columns"})
    fill_category: str = field(default="missing", metadata={"help": "constant for categorical columns"})
    knn_neighbors: int = field(default=5, metadata={"min": 1})
    iterative_max_iter: int = field(default=10, metadata={"min": 1})
    autoencoder: AutoencoderImputerConfig = field(default_factory=AutoencoderImputerConfig)
    missing_target: Literal["drop", "error"] = field(default="drop", metadata={"help": "rows without a target are rejected (counted) or stop the run"})

    def validate(self):
        for col, s in self.per_column.items():
            if s not in IMPUTERS:
                yield f"per_column.{col}", f"unknown strategy {s!r}; choose one of {', '.join(IMPUTERS)}"


@dataclass
class FeaturesConfig:
    """Simple feature engineering, applied before scaling."""

    log: list[str] = field(default_factory=list, metadata={"help": "numeric columns replaced by log1p(x - min_train) (skewed positives)"})
    polynomial: list[str] = field(default_factory=list, metadata={"help": "numeric columns whose squares and pairwise products are added"})


@dataclass
class TabularConfig:
    """``data.tabular``: sources, schema and the preprocessing steps (fit on train only)."""

    sources: list[TableSourceConfig] = field(default_factory=list)
    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    task: Literal["auto", "classification", "regression"] = field(default="auto", metadata={"help": "auto: classification when the target is categorical (text) or has few integer values, else regression"})
    missing: MissingConfig = field(default_factory=MissingConfig)
    outliers: Literal["none", "iqr", "zscore"] = field(default="none", metadata={"help": "clip numeric features to train quartiles ± outlier_factor·IQR, or to mean ± outlier_factor·std"})
    outlier_factor: Optional[float] = field(default=None, metadata={"min": 0.0, "help": "default 1.5 for iqr, 3 for zscore"})
    scaling: Literal["none", "minmax", "zscore", "robust"] = field(default="zscore", metadata={"help": "numeric features: min-max to [0,1], z-score, or (x - median) / IQR; fit on train"})
    categorical_encoding: Literal["onehot", "ordinal"] = field(default="onehot", metadata={"help": "one-hot columns, or one integer code per column (the tabular Transformer embeds codes either way)"})
    features: FeaturesConfig = field(default_factory=FeaturesConfig)

    def kind_problems(self):
        """Problems that matter only when the data is a table (``data.kind: tabular``)."""
        yield from ((f"columns.{k}", m) for k, m in self.columns.problems())
