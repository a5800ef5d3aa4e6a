"""Labeled examples for fine-tuning and evaluation, from a prepared data folder or from files.

* a prepared folder (``lmforge data prepare``): ``splits/<split>/unit_*.jsonl`` rows with
  ``text`` and ``label`` (already cleaned, deduplicated and split without leakage);
* JSONL / CSV / TSV files with a text and a label field (``text_field``/``label_field``);
* CoNLL files (``.txt``/``.conll``) for token tasks;
* for prediction only, plain text files: one example per line.

Every example keeps its source file and line, so errors and predictions can point back to it.
A missing field is an error naming the file, line and field — nothing is silently skipped.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from lmforge.data.conll import read_conll
from lmforge.errors import ArtifactError, LmforgeError
from lmforge.layout import splits_dir, tokens_dir


class LabeledDataError(LmforgeError, ValueError):
    pass


@dataclass
class Example:
    text: Union[str, list[str]]  # a string (sequence task) or a list of words (token task)
    label: Union[str, list[str], None]  # a label, a tag per word, or None (prediction input)
    source: str
    line: int
    id: Optional[str] = None  # the record's own id (predict --id-field), carried to the outputs


def _check_field(rec: dict, key: str, where: str, required: bool, blank_ok: bool = False) -> Optional[object]:
    """The value of ``key``; absent/None (or blank, unless ``blank_ok``) is missing: an error when required."""
    value = rec.get(key)
    if value is None or (isinstance(value, str) and not value.strip() and not blank_ok):
        if required:
            raise LabeledDataError(f"{where}: missing {key!r} (fields: {sorted(rec)}); name the right field: "
                                   "finetune.data.text_field / label_field in a config, --text-field (and "
                                   "--label-field for evaluate) on the command line")
        return None
    return value


def _id(rec: dict, id_field: Optional[str], where: str) -> Optional[str]:
    if id_field is None:
        return None
    if rec.get(id_field) is None:
        raise LabeledDataError(f"{where}: no {id_field!r} field for the record id (fields: {sorted(rec)})")
    return str(rec[id_field])


def read_records(path: str | Path, text_field: str = "text", label_field: str = "label",
                 need_label: bool = True, id_field: Optional[str] = None, header: bool = True) -> list[Example]:
    """Sequence examples from a .jsonl/.json, .csv, .tsv or (prediction only) .txt file. A CSV/TSV
    with ``header=False`` has no header row; its columns are named "0", "1", ..."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no data file at {path}")
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if b"\x00" in head:
        raise LabeledDataError(f"{path}: looks binary (NUL bytes in its first {len(head)} bytes), not a "
                               ".jsonl/.csv/.tsv text file; point the data key at the labeled text file")
    try:
        return _read_records(path, text_field, label_field, need_label, id_field, header)
    except UnicodeDecodeError as exc:
        raise LabeledDataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); a binary file, or "
                               "text in another encoding (convert it with iconv -t utf-8)") from None


def _read_records(path: Path, text_field: str, label_field: str, need_label: bool, id_field: Optional[str],
                  header: bool) -> list[Example]:
    suffix = path.suffix.lower()
    out: list[Example] = []
    if suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise LabeledDataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise LabeledDataError(f"{path}:{lineno}: expected a JSON object")
                where = f"{path}:{lineno}"
                text = _check_field(rec, text_field, where, True)
                label = _check_field(rec, label_field, where, need_label, blank_ok=True)
                out.append(Example(str(text), None if label is None else str(label), str(path), lineno,
                                   _id(rec, id_field, where)))
    elif suffix in (".csv", ".tsv"):
        csv.field_size_limit(sys.maxsize)
        with open(path, encoding="utf-8", newline="") as fh:
            fmt = dict(delimiter="\t", quoting=csv.QUOTE_NONE) if suffix == ".tsv" else {}  # TSV as GLUE & co write it
            if header:
                reader = csv.DictReader(fh, **fmt)
            else:
                first = next(csv.reader(fh, **fmt), [])
                fh.seek(0)
                reader = csv.DictReader(fh, fieldnames=[str(i) for i in range(len(first))], **fmt)
            if reader.fieldnames is None or text_field not in reader.fieldnames:
                raise LabeledDataError(f"{path}:1: header {reader.fieldnames} has no {text_field!r} column; "
                                       "name the text column: finetune.data.text_field in a config, "
                                       "--text-field on the command line"
                                       + ("" if not header else " (a file without a header row: finetune.data.csv_header: false, columns \"0\", \"1\", ...)"))
            for rec in reader:
                lineno = reader.line_num
                if None in rec:
                    raise LabeledDataError(f"{path}:{lineno}: more columns than the header")
                where = f"{path}:{lineno}"
                text = _check_field(rec, text_field, where, True)
                label = _check_field(rec, label_field, where, need_label, blank_ok=True)
                out.append(Example(str(text), None if label is None else str(label), str(path), lineno,
                                   _id(rec, id_field, where)))
    elif suffix in (".txt", ".text") and not need_label:
        with open(path, encoding="utf-8") as fh:
            out = [Example(line.rstrip("\n"), None, str(path), i) for i, line in enumerate(fh, 1) if line.strip()]
    else:
        raise LabeledDataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv, .tsv"
                               + (", .txt" if not need_label else "") + ")")
    return out


def read_token_file(path: str | Path, need_label: bool = True) -> list[Example]:
    """Token examples. With labels: a CoNLL file (tag in the last column; tab-separated for .tsv).
    For prediction: ``.conll`` is CoNLL (tags ignored), ``.jsonl`` reads the ``text`` field and
    ``.txt`` takes a sentence per line; both are split into words on whitespace."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not need_label and suffix in (".jsonl", ".txt", ".text"):
        return [Example(ex.text.split(), None, ex.source, ex.line)
                for ex in read_records(path, "text", "label", need_label=False)]
    sentences = read_conll(path, "\t" if suffix == ".tsv" else None)
    return [Example(s.words, s.tags if need_label else None, s.source, s.line) for s in sentences]


def read_prepared_split(data_dir: str | Path, split: str) -> list[Example]:
    """The ``split`` of a prepared folder, in file order."""
    d = splits_dir(data_dir) / split
    if not d.is_dir():
        raise ArtifactError(f"no split {split!r} at {d}; run `lmforge data prepare` (or set finetune.data.train_file)")
    out: list[Example] = []
    for f in sorted(d.glob("*.jsonl")):
        with open(f, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                rec = json.loads(line)
                if rec.get("label") is None:
                    raise LabeledDataError(f"{f}:{lineno}: no label: the data was prepared without labels "
                                           "(data.sources[].label_field)")
                out.append(Example(rec["text"], str(rec["label"]), rec.get("source", str(f)), rec.get("line", lineno)))
    return out


def prepared_labels(data_dir: str | Path) -> Optional[list[str]]:
    """Label names declared by the prepared data (tokens/index.json), if any."""
    from lmforge.data.shards import read_index

    tokens = tokens_dir(data_dir)
    if (tokens / "index.json").is_file():
        labels = read_index(tokens).get("labels")
        if labels:
            return [str(x) for x in labels]
    return None
