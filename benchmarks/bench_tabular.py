"""Tables: lmforge's imputation strategies against the scikit-learn pipeline that does the same,
on the palmerpenguins table (344 rows, real missing values).

    python benchmarks/bench_tabular.py [--splits 5] [--mask-seeds 3]

Part 1, downstream. The same seeded splits for both sides: ``--splits`` repeated stratified
(by species) 70/30 splits, seeds 0..splits-1. Two tasks:

* classification of ``species`` from bill_length_mm, bill_depth_mm, flipper_length_mm,
  body_mass_g (numeric) and island, sex (categorical); 344 rows (2 rows lack every numeric, 11 lack
  sex) → ``LogisticRegression(max_iter=2000)``, accuracy on the 30 %;
* regression of ``body_mass_g`` from the other three numerics and species, island, sex; the 342
  rows with a target (9 lack sex) → ``Ridge(alpha=1.0)``, RMSE in grams on the 30 %.

lmforge side: ``TabularPreprocessor`` (zscore, onehot, the strategy under test) fit on the train
part, ``transform`` of train and test, its ``x`` → the estimator. Peer: ``Pipeline(ColumnTransformer(
numeric: imputer → StandardScaler, categorical: SimpleImputer(most_frequent) → OneHotEncoder(
handle_unknown='ignore')), estimator)`` with the matching imputer: SimpleImputer(mean / median /
most_frequent / constant 0 and 'missing'), KNNImputer(5), IterativeImputer(BayesianRidge,
max_iter=10, random_state=split seed). For ``iterative`` the lmforge side imputes the categoricals
by mode (``per_column``), as the peer does; ``iterative-mixed`` (sex by a classifier),
``autoencoder`` and ``drop_row`` (train rows with a missing feature dropped; test rows filled by
its median/mode fallback, so every strategy is scored on the same test rows) are lmforge-only.
Neither side is tuned. Time: preprocessing only, fit + arrays for train and test — lmforge
``fit_transform(train)``, ``transform(test)``; the peer ``fit_transform(train)``,
``transform(test)`` — each run ``--time-repeats`` times per split (fresh objects, the fastest
kept: the machine is shared), then the median over the splits.

Part 2, imputation quality. The 333 complete rows; ``--mask-seeds`` seeds: a 70/30 split, then 10 %
and 30 % of the six feature cells hidden at random (train and test alike). Each imputer is fit on
the masked train part and fills the masked test part; scored on the hidden test cells: RMSE of the
numerics in units of each column's train standard deviation (pooled over the four columns), and
accuracy on hidden sex and island cells (the train part's own hidden cells are scored too, in the
JSON). lmforge: mean, median, knn, iterative (mixed-type: categoricals by logistic regression),
autoencoder. scikit-learn: SimpleImputer(mean), KNNImputer on raw units and on z-scored numerics,
IterativeImputer(BayesianRidge); it has no mixed-type imputer, so its categorical cells are always
SimpleImputer(most_frequent).

Prints one JSON line per (part, task or mask rate, strategy, side), then the Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.experimental import enable_iterative_imputer  # noqa: E402,F401
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer  # noqa: E402
from sklearn.linear_model import BayesianRidge, LogisticRegression, Ridge  # noqa: E402
from sklearn.model_selection import StratifiedShuffleSplit  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

import lmforge.data.tabular.autoencoder  # noqa: E402,F401  (torch imported before any timing)
from lmforge.data.tabular.config import (ColumnsConfig, MissingConfig, TableSourceConfig,  # noqa: E402
                                         TabularConfig)
from lmforge.data.tabular.preprocess import TabularPreprocessor  # noqa: E402
from lmforge.data.tabular.read import read_table  # noqa: E402

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
TASKS = {  # task → (target, numeric features, categorical features)
    "classification": ("species", NUMERIC, CATEGORICAL),
    "regression": ("body_mass_g", NUMERIC[:3], ["species", "island", "sex"]),
}
K, MAX_ITER, TEST = 5, 10, 0.3
TIME_REPEATS = 3  # preprocessing timed this many times per split (fresh fit each), the fastest kept (--time-repeats)
# strategy → (lmforge MissingConfig kwargs, peer numeric imputer factory or None: lmforge-only)
STRATEGIES = {
    "mean": ({"strategy": "mean"}, lambda s: SimpleImputer(strategy="mean")),
    "median": ({"strategy": "median"}, lambda s: SimpleImputer(strategy="median")),
    "mode": ({"strategy": "mode"}, lambda s: SimpleImputer(strategy="most_frequent")),
    "constant": ({"strategy": "constant"}, lambda s: SimpleImputer(strategy="constant", fill_value=0.0)),
    "knn": ({"strategy": "knn", "knn_neighbors": K}, lambda s: KNNImputer(n_neighbors=K)),
    "iterative": ({"strategy": "iterative", "iterative_max_iter": MAX_ITER, "per_column": "categoricals→mode"},
                  lambda s: IterativeImputer(estimator=BayesianRidge(), max_iter=MAX_ITER, random_state=s)),
    "iterative-mixed": ({"strategy": "iterative", "iterative_max_iter": MAX_ITER}, None),
    "autoencoder": ({"strategy": "autoencoder"}, None),
    "drop_row": ({"strategy": "drop_row"}, None),
}


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def load() -> pd.DataFrame:
    """The penguins table as lmforge reads it: numerics float64/NaN, the rest strings/None."""
    cols = ColumnsConfig(target="species", numeric=NUMERIC, categorical=CATEGORICAL)
    return read_table(TableSourceConfig(builtin="penguins"), cols).frame


def for_sklearn(df: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """None → NaN in the text columns (SimpleImputer's missing marker)."""
    df = df.copy()
    for c in categorical:
        df[c] = df[c].astype(object).where(df[c].notna(), np.nan)
    return df


def lm_config(task: str, strategy: str) -> TabularConfig:
    target, num, cat = TASKS[task]
    kw = dict(STRATEGIES[strategy][0])
    if kw.get("per_column") == "categoricals→mode":
        kw["per_column"] = {c: "mode" for c in cat}
    return TabularConfig(columns=ColumnsConfig(target=target, numeric=list(num), categorical=list(cat)),
                         task=task, missing=MissingConfig(**kw), scaling="zscore", categorical_encoding="onehot")


def estimator(task: str):
    return LogisticRegression(max_iter=2000) if task == "classification" else Ridge(alpha=1.0)


def score(task: str, y_true, y_pred) -> float:
    if task == "classification":
        return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    return float(np.sqrt(np.mean((np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)) ** 2)))


def run_lmforge(task: str, strategy: str, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> tuple[float, float]:
    """(score, preprocessing seconds)."""
    _, num, cat = TASKS[task]
    if strategy == "drop_row":  # what `lmforge data prepare` does to the train split
        train = train[train[num + cat].notna().all(axis=1)]
    took = []
    for _ in range(TIME_REPEATS):
        t0 = time.perf_counter()
        pre = TabularPreprocessor(lm_config(task, strategy), seed, task=task)
        a_train = pre.fit_transform(train)  # as the peer's fit_transform: train imputed once
        a_test = pre.transform(test)
        took.append(time.perf_counter() - t0)
    model = estimator(task).fit(a_train.x, a_train.y)
    return score(task, a_test.y, model.predict(a_test.x)), min(took)


def peer_pipeline(task: str, strategy: str, seed: int) -> Pipeline:
    _, num, cat = TASKS[task]
    cat_imp = (SimpleImputer(strategy="constant", fill_value="missing") if strategy == "constant"
               else SimpleImputer(strategy="most_frequent"))
    prep = ColumnTransformer([
        ("num", Pipeline([("impute", STRATEGIES[strategy][1](seed)), ("scale", StandardScaler())]), list(num)),
        ("cat", Pipeline([("impute", cat_imp), ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))]), list(cat)),
    ])
    return Pipeline([("prep", prep), ("model", estimator(task))])


def run_peer(task: str, strategy: str, train: pd.DataFrame, test: pd.DataFrame, seed: int) -> tuple[float, float]:
    target, num, cat = TASKS[task]
    x_train, x_test = for_sklearn(train[num + cat], cat), for_sklearn(test[num + cat], cat)
    took = []
    for _ in range(TIME_REPEATS):
        pipe = peer_pipeline(task, strategy, seed)
        t0 = time.perf_counter()
        z_train = pipe[:-1].fit_transform(x_train)
        z_test = pipe[:-1].transform(x_test)
        took.append(time.perf_counter() - t0)
    y_train = train[target].to_numpy(dtype=object if task == "classification" else np.float64)
    pipe[-1].fit(z_train, y_train)
    return score(task, test[target].to_numpy(), pipe[-1].predict(z_test)), min(took)


def splits(df: pd.DataFrame, n: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    out = []
    for seed in range(n):
        sss = StratifiedShuffleSplit(n_splits=1, test_size=TEST, random_state=seed)
        tr, te = next(sss.split(np.zeros(len(df)), df["species"].to_numpy()))
        out.append((seed, np.sort(tr), np.sort(te)))
    return out


def part_downstream(frame: pd.DataFrame, n_splits: int) -> list[dict]:
    rows = []
    for task, (target, _, _) in TASKS.items():
        df = frame[frame[target].notna()].reset_index(drop=True)
        parts = splits(df, n_splits)
        for strategy, (_, peer) in STRATEGIES.items():
            sides = {"lmforge": run_lmforge, **({"sklearn": run_peer} if peer else {})}
            res = {side: [] for side in sides}
            for seed, tr, te in parts:
                train, test = df.iloc[tr], df.iloc[te]
                for side, fn in sides.items():  # interleaved, per split
                    res[side].append(fn(task, strategy, train, test, seed))
            metric = "accuracy" if task == "classification" else "rmse_g"
            summary = {}
            for side, vals in res.items():
                scores, secs = [v[0] for v in vals], [v[1] for v in vals]
                summary[side] = {"scores": scores, "mean": statistics.mean(scores),
                                 "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                                 "prep_ms_median": 1000 * statistics.median(secs)}
                rec = {"part": "downstream", "task": task, "strategy": strategy, "side": side, "metric": metric,
                       "mean": round(summary[side]["mean"], 6), "std": round(summary[side]["std"], 6),
                       "per_split": [round(s, 6) for s in scores], "n_test": len(parts[0][2]),
                       "prep_ms_median": round(summary[side]["prep_ms_median"], 2),
                       "prep_ms_per_split": [round(1000 * s, 2) for s in secs]}
                if side == "sklearn":
                    diffs = [abs(a - b) for a, b in zip(summary["lmforge"]["scores"], scores)]
                    rec["abs_diff_per_split"] = [float(f"{d:.3g}") for d in diffs]
                    rec["abs_diff_max"] = float(f"{max(diffs):.3g}")
                    summary["diff_max"] = max(diffs)
                emit(rec)
            rows.append({"task": task, "strategy": strategy, **summary})
    return rows


# ---- part 2 ------------------------------------------------------------------------------------------
def lm_imputer(strategy: str):
    def run(train: pd.DataFrame, frames: list[pd.DataFrame], seed: int) -> list[pd.DataFrame]:
        missing = MissingConfig(strategy=strategy, knn_neighbors=K, iterative_max_iter=MAX_ITER)
        cfg = TabularConfig(columns=ColumnsConfig(target="species", numeric=NUMERIC, categorical=CATEGORICAL),
                            task="classification", missing=missing, scaling="zscore", categorical_encoding="onehot")
        pre = TabularPreprocessor(cfg, seed, task="classification").fit(train)
        return [pre.imputed(f) for f in frames]
    return run


def sk_imputer(kind: str):
    def run(train: pd.DataFrame, frames: list[pd.DataFrame], seed: int) -> list[pd.DataFrame]:
        num = {"mean": lambda: SimpleImputer(strategy="mean"),
               "knn": lambda: KNNImputer(n_neighbors=K),
               "knn-zscored": lambda: Pipeline([("z", StandardScaler()), ("knn", KNNImputer(n_neighbors=K))]),
               "iterative": lambda: IterativeImputer(estimator=BayesianRidge(), max_iter=MAX_ITER, random_state=seed)}[kind]()
        cat = SimpleImputer(strategy="most_frequent")
        num.fit(train[NUMERIC])
        cat.fit(for_sklearn(train[CATEGORICAL], CATEGORICAL))
        out = []
        for f in frames:
            g = f.copy()
            filled = num.transform(f[NUMERIC])
            if kind == "knn-zscored":
                filled = num.named_steps["z"].inverse_transform(filled)
            g[NUMERIC] = filled
            g[CATEGORICAL] = cat.transform(for_sklearn(f[CATEGORICAL], CATEGORICAL))
            out.append(g)
        return out
    return run


IMPUTERS = {("lmforge", "mean"): lm_imputer("mean"), ("lmforge", "median"): lm_imputer("median"),
            ("lmforge", "knn"): lm_imputer("knn"), ("lmforge", "iterative-mixed"): lm_imputer("iterative"),
            ("lmforge", "autoencoder"): lm_imputer("autoencoder"),
            ("sklearn", "mean"): sk_imputer("mean"), ("sklearn", "knn"): sk_imputer("knn"),
            ("sklearn", "knn-zscored"): sk_imputer("knn-zscored"), ("sklearn", "iterative"): sk_imputer("iterative")}


def hide(df: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    df = df.copy()
    for j, c in enumerate(NUMERIC + CATEGORICAL):
        col = df[c].to_numpy(dtype=np.float64 if c in NUMERIC else object, copy=True)
        col[mask[:, j]] = np.nan if c in NUMERIC else None
        df[c] = pd.Series(col, index=df.index, dtype=np.float64 if c in NUMERIC else object)
    return df


def quality(truth: pd.DataFrame, filled: pd.DataFrame, mask: np.ndarray, sd: np.ndarray) -> dict:
    p = len(NUMERIC)
    err = (filled[NUMERIC].to_numpy(dtype=np.float64) - truth[NUMERIC].to_numpy(dtype=np.float64)) / sd  # (N, P)
    m = mask[:, :p]
    out = {"num_rmse_std": float(np.sqrt(np.mean(err[m] ** 2))) if m.any() else float("nan"),
           "num_cells": int(m.sum()), "left_missing": int(np.isnan(err[m]).sum())}
    for j, c in enumerate(CATEGORICAL):
        h = mask[:, p + j]
        got = filled[c].to_numpy(dtype=object)[h]
        out[f"{c}_acc"] = float(np.mean([str(a) == str(b) for a, b in zip(got, truth[c].to_numpy(dtype=object)[h])])) if h.any() else float("nan")
        out[f"{c}_cells"] = int(h.sum())
    return out


def part_quality(frame: pd.DataFrame, seeds: int, rates=(0.1, 0.3)) -> list[dict]:
    complete = frame[frame[NUMERIC + CATEGORICAL].notna().all(axis=1)].reset_index(drop=True)
    rows = []
    for rate in rates:
        per = {key: [] for key in IMPUTERS}
        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            perm = rng.permutation(len(complete))
            n_test = round(TEST * len(complete))
            train, test = complete.iloc[np.sort(perm[n_test:])], complete.iloc[np.sort(perm[:n_test])]
            m_train = rng.random((len(train), len(NUMERIC + CATEGORICAL))) < rate
            m_test = rng.random((len(test), len(NUMERIC + CATEGORICAL))) < rate
            h_train, h_test = hide(train, m_train), hide(test, m_test)
            sd = train[NUMERIC].to_numpy(dtype=np.float64).std(axis=0)
            for key, fn in IMPUTERS.items():
                t0 = time.perf_counter()
                f_test, f_train = fn(h_train, [h_test, h_train], seed)
                took = time.perf_counter() - t0
                per[key].append({"test": quality(test, f_test, m_test, sd), "train": quality(train, f_train, m_train, sd),
                                 "seconds": took})
        for (side, name), vals in per.items():
            def agg(split: str, field: str) -> tuple[float, float]:
                xs = [v[split][field] for v in vals]
                return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)
            rec = {"part": "imputation", "mask_rate": rate, "strategy": name, "side": side, "seeds": seeds,
                   "fit_transform_s_median": round(statistics.median(v["seconds"] for v in vals), 4)}
            for split in ("test", "train"):
                for field in ("num_rmse_std", "sex_acc", "island_acc"):
                    mu, sdv = agg(split, field)
                    rec[f"{split}_{field}"] = round(mu, 4)
                    rec[f"{split}_{field}_std"] = round(sdv, 4)
            rec["test_hidden_cells"] = {k: sum(v["test"][k] for v in vals) for k in ("num_cells", "sex_cells", "island_cells")}
            rec["left_missing"] = sum(v["test"]["left_missing"] + v["train"]["left_missing"] for v in vals)
            emit(rec)
            rows.append(rec)
    return rows


# ---- tables ----------------------------------------------------------------------------------------------
def pm(mu: float, sd: float, digits: int) -> str:
    return f"{mu:.{digits}f} ± {sd:.{digits}f}"


def tables(down: list[dict], qual: list[dict], n_splits: int, seeds: int) -> str:
    by = {(r["task"], r["strategy"]): r for r in down}
    out = [] if not down else [f"**Downstream** (mean ± std over {n_splits} stratified 70/30 splits; |Δ| = largest per-split "
           "difference lmforge − sklearn; — = lmforge-only)", "",
           "| strategy | accuracy lmforge | accuracy sklearn | max \\|Δ\\| | RMSE g lmforge | RMSE g sklearn | max \\|Δ\\| |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for s in STRATEGIES if down else []:
        c, r = by[("classification", s)], by[("regression", s)]
        cells = [s]
        for row, d in ((c, 4), (r, 2)):
            cells.append(pm(row["lmforge"]["mean"], row["lmforge"]["std"], d))
            if "sklearn" in row:
                cells += [pm(row["sklearn"]["mean"], row["sklearn"]["std"], d), f"{row['diff_max']:.{d}f}"]
            else:
                cells += ["—", "—"]
        out.append("| " + " | ".join(cells) + " |")
    out += [] if not down else ["", f"**Preprocessing time** (fit + train and test arrays, ms: fastest of {TIME_REPEATS} "
                                "per split, median over the splits)", "",
            "| strategy | classification lmforge | classification sklearn | regression lmforge | regression sklearn |",
            "|---|---:|---:|---:|---:|"]
    for s in STRATEGIES if down else []:
        cells = [s]
        for task in TASKS:
            row = by[(task, s)]
            cells.append(f"{row['lmforge']['prep_ms_median']:.1f}")
            cells.append(f"{row['sklearn']['prep_ms_median']:.1f}" if "sklearn" in row else "—")
        out.append("| " + " | ".join(cells) + " |")
    out += [] if not qual else ["", f"**Imputation quality** (333 complete rows, cells hidden at random, held-out 30 %; mean ± std over "
            f"{seeds} seeds; numeric RMSE in train-std units, lower is better)", "",
            "| hidden | side | imputer | numeric RMSE (std units) | sex accuracy | island accuracy | fit + fill s |",
            "|---:|---|---|---:|---:|---:|---:|"]
    for r in qual:
        out.append(f"| {int(r['mask_rate'] * 100)} % | {r['side']} | {r['strategy']} | "
                   f"{pm(r['test_num_rmse_std'], r['test_num_rmse_std_std'], 3)} | {pm(r['test_sex_acc'], r['test_sex_acc_std'], 3)} | "
                   f"{pm(r['test_island_acc'], r['test_island_acc_std'], 3)} | {r['fit_transform_s_median']:.3f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--mask-seeds", type=int, default=3)
    ap.add_argument("--parts", default="downstream,imputation")
    ap.add_argument("--time-repeats", type=int, default=TIME_REPEATS)
    args = ap.parse_args()
    globals()["TIME_REPEATS"] = max(1, args.time_repeats)
    warnings.simplefilter("ignore", ConvergenceWarning)  # the peer's IterativeImputer stopping at max_iter (lmforge silences its own)
    t0 = time.perf_counter()
    frame = load()
    parts = args.parts.split(",")
    down = part_downstream(frame, args.splits) if "downstream" in parts else []
    qual = part_quality(frame, args.mask_seeds) if "imputation" in parts else []
    emit({"part": "meta", "wall_s": round(time.perf_counter() - t0, 1), "cpus": os.cpu_count(),
          "torch_threads": __import__("torch").get_num_threads()})
    print()
    print(tables(down, qual, args.splits, args.mask_seeds))


if __name__ == "__main__":
    main()
