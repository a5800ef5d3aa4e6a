"""Read one declared table (CSV, TSV, Parquet or the bundled penguins) into a typed DataFrame.

Only the declared columns are kept (``ignored_columns`` lists the others). Numeric columns become
float64 with NaN for a missing cell; every other declared column (target, categorical, id, order,
dates) becomes ``object`` strings with ``None`` for a missing cell — a regression target is parsed
later, once the task is known. Bad input is counted, never a traceback:

* a CSV/TSV row with the wrong number of fields is rejected (``ragged_row``) with its line;
* a numeric or date cell that does not parse becomes missing and is a *type error*, counted per
  column with up to ``TYPE_ERROR_EXAMPLES`` examples (line, value);
* a declared column the file lacks is a :class:`DataError` naming the column, the file, the
  columns it has and the closest match.

``lines[i]`` is row i's place in its file: the 1-based line a CSV row starts on (the header is
line 1), or the 0-based row index for Parquet and built-in tables.
"""

from __future__ import annotations

import csv
import difflib
import glob
import gzip
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from lmforge.data.tabular.config import ColumnsConfig, TableSourceConfig
from lmforge.errors import ArtifactError, DataError
from lmforge.models.weights import sha256

MISSING_TOKENS = frozenset({"", "NA", "N/A", "NaN", "nan", "null", "None", "?"})
TYPE_ERROR_EXAMPLES = 5


@dataclass
class ReadResult:
    """A table read from one source: kept rows, and what was rejected or did not parse."""

    frame: pd.DataFrame  # (N, declared columns), RangeIndex
    lines: np.ndarray  # (N,) int64: the line (CSV) or row index (Parquet/builtin) of each row
    sources: list[str]  # (N,) the file each row came from ("builtin:penguins" for the bundled table)
    rejected: list[dict] = field(default_factory=list)  # {source, line, reason, detail}
    type_errors: dict[str, dict] = field(default_factory=dict)  # column -> {count, examples: [{source, line, value}]}
    ignored_columns: list[str] = field(default_factory=list)  # in the file, not declared
    files: list[dict] = field(default_factory=list)  # {path, sha256}
    absent: list[str] = field(default_factory=list)  # optional declared columns no file had (read as missing)


def declared_columns(columns: ColumnsConfig) -> dict[str, str]:
    """Declared column → its role (``target``, ``id``, ``order``, ``numeric``, ``categorical``, ``dates``)."""
    roles: dict[str, str] = {}
    for role in ("target", "id", "order"):
        name = getattr(columns, role)
        if name:
            roles.setdefault(name, role)
    for role in ("numeric", "categorical", "dates"):
        for name in getattr(columns, role):
            roles.setdefault(name, role)
    return roles


def is_missing(value: object) -> bool:
    """A missing cell: None, NaN/NaT, or one of ``MISSING_TOKENS`` (after stripping spaces)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and value.strip() in MISSING_TOKENS


def _text(value: object) -> Optional[str]:
    """A cell as a string (None when missing); 3.0 → "3" so integer codes read the same from any format."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value: object) -> tuple[float, bool]:
    """``(value, ok)``: a finite float, NaN for a missing cell, or ``(nan, False)`` when it does not parse."""
    if is_missing(value):
        return math.nan, True
    if isinstance(value, (bool, np.bool_)):
        return math.nan, False
    try:
        x = float(value.strip() if isinstance(value, str) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan, False
    return (x, True) if math.isfinite(x) else (math.nan, False)


def _format(path: str, declared: str) -> str:
    if declared != "auto":
        return declared
    name = path.lower().removesuffix(".gz")
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    return "tsv" if name.endswith((".tsv", ".tab")) else "csv"


def _decode(path: str) -> str:
    raw = gzip.open(path).read() if path.lower().endswith(".gz") else Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                        "save the file as UTF-8") from None


def _read_delimited(path: str, delimiter: str, strict: bool) -> tuple[list[str], list[list[str]], list[int], list[dict]]:
    """Header, rows, the line each row starts on, and the ragged rows (rejected)."""
    csv.field_size_limit(sys.maxsize)
    reader = csv.reader(_decode(path).splitlines(keepends=True), delimiter=delimiter)
    header: Optional[list[str]] = None
    rows, lines, rejected = [], [], []
    end = 0  # last physical line consumed so far
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row or all(not c.strip() for c in row):
                continue  # blank line: not a row
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(row) != len(header):
                detail = f"{len(row)} fields, the header has {len(header)}"
                if strict:
                    raise DataError(f"{path}:{start}: {detail} (data.strict is on)")
                rejected.append({"source": path, "line": start, "reason": "ragged_row", "detail": detail})
                continue
            rows.append(row)
            lines.append(start)
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    if header is None:
        raise DataError(f"{path}: the file is empty (no header row); a table needs a header naming its columns")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{path}:1: the header names {dup} more than once; rename the duplicate columns")
    return header, rows, lines, rejected


def _missing_column(path: str, col: str, role: str, have: list[str]) -> DataError:
    close = difflib.get_close_matches(col, have, n=1, cutoff=0.6)
    close = close or [c for c in have if c.lower() == col.lower()]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    key = f"columns.{role}"
    return DataError(f"{path}: no column {col!r} (declared in data.tabular.{key}); "
                     f"the file has columns {have}{hint}")


def _typed(raw: pd.DataFrame, roles: dict[str, str], lines: np.ndarray, source: str,
           type_errors: dict[str, dict], strict: bool) -> pd.DataFrame:
    """The declared columns, typed; unparseable numeric and date cells become missing and counted."""
    out = {}
    for col, role in roles.items():
        values = raw[col].tolist()
        if role == "numeric":
            parsed = np.empty(len(values), dtype=np.float64)
            for i, v in enumerate(values):
                parsed[i], ok = _number(v)
                if not ok:
                    _type_error(type_errors, col, source, int(lines[i]), v, strict)
            out[col] = parsed
            continue
        texts = [_text(v) for v in values]
        if role == "dates":
            stamps = pd.to_datetime(pd.Series(texts, dtype=object), errors="coerce", format="mixed")
            for i, (t, s) in enumerate(zip(texts, stamps)):
                if t is not None and pd.isna(s):
                    _type_error(type_errors, col, source, int(lines[i]), t, strict)
                    texts[i] = None
        out[col] = pd.Series(texts, dtype=object)
    return pd.DataFrame(out, columns=list(roles))


def typed_frame(rows: list[dict], roles: dict[str, str]) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Rows given as objects (a server's JSON rows), typed exactly as a file's rows are: an absent
    key is a missing cell; cells that do not parse are counted in the returned type errors."""
    raw = pd.DataFrame([[row.get(col) for col in roles] for row in rows], columns=list(roles), dtype=object)
    type_errors: dict[str, dict] = {}
    return _typed(raw, roles, np.arange(len(rows), dtype=np.int64), "request", type_errors, False), type_errors


def _type_error(type_errors: dict[str, dict], col: str, source: str, line: int, value: object, strict: bool) -> None:
    if strict:
        raise DataError(f"{source}:{line}: column {col!r}: {value!r} is not a valid value (data.strict is on)")
    entry = type_errors.setdefault(col, {"count": 0, "examples": []})
    entry["count"] += 1
    if len(entry["examples"]) < TYPE_ERROR_EXAMPLES:
        entry["examples"].append({"source": source, "line": line, "value": str(value)[:100]})


def _one_file(path: str, fmt: str, roles: dict[str, str], res: ReadResult, strict: bool,
              optional: tuple[str, ...] = ()) -> pd.DataFrame:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            raw = pq.read_table(path).to_pandas()
        except Exception as exc:  # pyarrow raises several types for a corrupt file
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        raw.columns = [str(c) for c in raw.columns]
        lines = np.arange(len(raw), dtype=np.int64)
    else:
        header, rows, line_list, rejected = _read_delimited(path, "\t" if fmt == "tsv" else ",", strict)
        res.rejected += rejected
        raw = pd.DataFrame(rows, columns=header, dtype=object)
        lines = np.asarray(line_list, dtype=np.int64)
    for col, role in roles.items():
        if col not in raw.columns:
            if col not in optional:
                raise _missing_column(path, col, role, [str(c) for c in raw.columns])
            raw[col] = None  # an optional column the file lacks: every cell missing
            res.absent += [col] if col not in res.absent else []
    res.ignored_columns += [c for c in raw.columns if c not in roles and c not in res.ignored_columns]
    res.lines = np.concatenate([res.lines, lines])
    res.sources += [path] * len(raw)
    return _typed(raw, roles, lines, path, res.type_errors, strict)


def read_table(src: TableSourceConfig, columns: ColumnsConfig, strict: bool = False,
               optional: tuple[str, ...] = ()) -> ReadResult:
    """Read ``src`` (every file its glob matches, in sorted order) keeping the ``columns`` declared.
    With ``strict`` the first ragged row or type error is a :class:`DataError` instead of a count.
    Declared columns named in ``optional`` may be absent from a file (their cells read as missing;
    listed in ``absent``); any other absent one is a :class:`DataError` naming its config key."""
    roles = declared_columns(columns)
    res = ReadResult(pd.DataFrame(), np.zeros(0, dtype=np.int64), [])
    if src.builtin == "penguins":
        import palmerpenguins

        raw = palmerpenguins.load_penguins()
        name = "builtin:penguins"
        for col, role in roles.items():
            if col not in raw.columns:
                raise _missing_column(name, col, role, list(raw.columns))
        res.lines = np.arange(len(raw), dtype=np.int64)
        res.sources = [name] * len(raw)
        res.ignored_columns = [c for c in raw.columns if c not in roles]
        res.files = [{"path": name, "sha256": None}]
        res.frame = _typed(raw, roles, res.lines, name, res.type_errors, strict)
        return res
    if src.builtin is not None:
        raise DataError(f"unknown built-in table {src.builtin!r}; the one bundled is 'penguins'")
    paths = sorted(glob.glob(src.path)) if glob.has_magic(src.path) else [src.path]
    paths = [p for p in paths if Path(p).is_file()]
    if not paths:
        raise ArtifactError(f"no table file at {src.path!r} (data.tabular.sources[].path); check the path or glob")
    frames = [_one_file(p, _format(p, src.format), roles, res, strict, optional) for p in paths]
    res.files = [{"path": p, "sha256": sha256(Path(p))} for p in paths]
    res.frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return res
