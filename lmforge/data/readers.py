"""Read one work unit into Documents, rejecting bad records instead of failing.

Formats: ``text`` (a document per file), ``lines`` (a document per line), ``jsonl``,
``csv``/``tsv`` and ``parquet``, from local paths or any fsspec URL, plus the built-in
stdlib corpora. Every raw record counts as read in the ``read`` step and is either kept or
dropped with a reason (malformed_json, invalid_utf8, record_too_large, missing_text,
label_not_declared, ...); dropped records go to the unit's ``rejected`` file with their
source and line. Memory per record is bounded by ``max_record_bytes``: an oversized line is
skipped in pieces, never held whole.

Format readers (``_lines``, ``_jsonl``, ``_csv``, ..., and the built-in corpora, a source kind
of their own) only parse: they yield raw records ``(fields, line)``. One validation step,
``UnitReader._make``, turns a record into a :class:`Document` or a counted reject.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, BinaryIO, Iterator, Optional

from lmforge.data.config import DataConfig, SourceConfig
from lmforge.data.document import Document, RecordError, RejectWriter, StepStats
from lmforge.data.sources import WorkUnit

_READ_PIECE = 1 << 20


def _iter_lines(fh: BinaryIO, start: int, end: int, limit: int) -> Iterator[tuple[int, Optional[bytes]]]:
    """Yield (line_offset_index, line bytes or None if longer than ``limit``) for lines starting in [start, end)."""
    if start:
        fh.seek(start)
    pos = start
    i = 0
    while end < 0 or pos < end:
        line = fh.readline(limit + 1)
        if not line:
            return
        pos += len(line)
        if len(line) > limit and not line.endswith(b"\n"):
            # too long: skip the rest of this line in bounded pieces
            while True:
                piece = fh.readline(_READ_PIECE)
                pos += len(piece)
                if not piece or piece.endswith(b"\n"):
                    break
            yield i, None
        else:
            yield i, line
        i += 1


class UnitReader:
    """Reads one unit. Call :meth:`documents`; inspect :attr:`stats` afterwards."""

    def __init__(self, unit: WorkUnit, src: SourceConfig, cfg: DataConfig, rejects: RejectWriter):
        self.unit, self.src, self.cfg, self.rejects = unit, src, cfg, rejects
        self.stats = StepStats("read")
        self.labels = set(cfg.labels) if cfg.labels is not None else None
        if unit.format == "builtin":  # built-in corpora use fixed field names
            labeled = unit.path.endswith("stdlib_packages")
            self.fields = ("text", "label" if labeled else None, "id", None)
        else:
            self.fields = (src.text_field, src.label_field, src.id_field, src.group_field)

    # -- record → Document -------------------------------------------------------------
    def _reject(self, reason: str, line: int, text: Any = None, detail: str = "", source: str | None = None) -> None:
        self.stats.drop(reason)
        self.rejects.write(reason, source or self.unit.path, line, text, detail)

    def _make(self, rec: dict[str, Any], line: int, source: str | None = None) -> Optional[Document]:
        """Validate one parsed record (a mapping of fields); count and return a Document or None."""
        cfg = self.cfg.clean
        text_field, label_field, id_field, group_field = self.fields
        source = source or self.unit.path
        text = rec.get(text_field)
        if text is not None and not isinstance(text, str):
            if isinstance(text, (int, float)) and not isinstance(text, bool):
                text = str(text)
            else:
                self._reject("text_not_a_string", line, text, f"field {text_field!r} is {type(text).__name__}", source)
                return None
        if text is None or not text.strip():
            if cfg.missing_text == "drop":
                self._reject("missing_text", line, rec, f"field {text_field!r} is missing or empty", source)
                return None
            text = cfg.fill_text
            self.stats.extra["filled_text"] += 1
        label = None
        if label_field:
            raw = rec.get(label_field)
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                if cfg.missing_label == "drop":
                    self._reject("missing_label", line, text, f"field {label_field!r} is missing or empty", source)
                    return None
                raw = cfg.fill_label
                self.stats.extra["filled_label"] += 1
            label = str(raw).strip()
            if self.labels is not None and label not in self.labels:
                self._reject("label_not_declared", line, text, f"label {label!r} is not in data.labels", source)
                return None
        doc_id = rec.get(id_field) if id_field else None
        group = rec.get(group_field) if group_field else None
        self.stats.keep()
        return Document(text=text, id=str(doc_id) if doc_id is not None else f"{source}:{line}",
                        label=label, group=str(group) if group is not None else None,
                        source=source, line=line)

    @property
    def _bad_encoding_reason(self) -> str:
        return "invalid_utf8" if self.src.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else "invalid_encoding"

    def _decode(self, raw: Optional[bytes], line: int) -> Optional[str]:
        if raw is None:
            self._reject("record_too_large", line, None, f"longer than data.max_record_bytes={self.cfg.max_record_bytes}")
            return None
        try:
            return raw.decode(self.src.encoding, self.src.encoding_errors)
        except UnicodeDecodeError as exc:
            self._reject(self._bad_encoding_reason, line, raw[:200].decode("utf-8", "replace"),
                         f"{exc} (set data.sources[].encoding, e.g. latin-1, or encoding_errors: replace)")
            return None

    def _binary(self) -> Optional[str]:
        """Why the unit's file looks binary (from its first 8 KiB), or None for text: NUL bytes
        (none in ASCII-compatible text), or over 30 % of the characters undecodable."""
        import codecs

        import fsspec

        with fsspec.open(self.unit.path, "rb", compression="infer") as fh:
            head = fh.read(8192)
        if not head:
            return None
        if b"\x00" in head and not codecs.lookup(self.src.encoding).name.startswith(("utf-16", "utf-32")):
            return f"NUL bytes in its first {len(head)} bytes (a binary file, or text in UTF-16: set encoding)"
        text = codecs.getincrementaldecoder(self.src.encoding)("replace").decode(head, final=False)
        bad = text.count("\ufffd") / max(1, len(text))
        if bad > 0.3:
            return f"{bad:.0%} of its first {len(head)} bytes are not {self.src.encoding}"
        return None

    # -- formats -------------------------------------------------------------------------
    def documents(self) -> Iterator[Document]:
        """The unit's records, each validated into a Document by :meth:`_make` (the one step that
        turns raw records into Documents); rejects are counted and written as they are met."""
        for rec, line, source in self.records():
            doc = self._make(rec, line, source)
            if doc is not None:
                yield doc

    def records(self) -> Iterator[tuple[dict, int, Optional[str]]]:
        """Raw records ``(fields, line, source or None for the unit's file)`` from the unit's format
        reader; records that cannot even be parsed are rejected here."""
        fmt = self.unit.format
        if fmt == "builtin":
            from lmforge.data import stdlib_corpus

            for item in stdlib_corpus.read(self.unit.files or [], self.unit.path.endswith("stdlib_packages")):
                if isinstance(item, stdlib_corpus.Unparsable):
                    self._reject("unparsable_source", 1, None, item.detail, source=item.path)
                else:
                    yield item
            return
        import sys

        import fsspec

        readers = {"lines": self._lines, "jsonl": self._jsonl, "text": self._text,
                   "csv": self._csv, "tsv": self._csv, "parquet": self._parquet}
        try:
            why = self._binary() if fmt != "parquet" else None
            if why is not None:  # the whole file is skipped as one counted reject, and said on the console
                self._reject("binary_file", self.unit.first_line, None, why)
                if self.unit.start == 0:
                    print(f"[data] warning: {self.unit.path}: skipped, looks binary: {why}", file=sys.stderr,
                          flush=True)
                return
            with fsspec.open(self.unit.path, "rb", compression="infer") as fh:
                for rec, line in readers[fmt](fh):
                    yield rec, line, None
        except RecordError:
            raise
        except Exception as exc:  # a file we cannot open or parse at all: one counted reject
            self._reject("unreadable_file", self.unit.first_line, None, f"{type(exc).__name__}: {exc}")
            return
        if self.stats.read == 0 and self.unit.start == 0:
            self.stats.extra["empty_files"] += 1

    def _text_lines(self, fh) -> Iterator[tuple[int, str]]:
        """(line number, decoded line without its newline) for each non-empty line of the unit;
        undecodable, oversized and empty lines are counted and rejected here."""
        u = self.unit
        for i, raw in _iter_lines(fh, u.start, u.end, self.cfg.max_record_bytes):
            line = u.first_line + i
            text = self._decode(raw, line)
            if text is None:
                continue
            text = text.rstrip("\r\n")
            if not text.strip():
                self._reject("empty_line", line)
                continue
            yield line, text

    def _lines(self, fh) -> Iterator[tuple[dict, int]]:
        for line, text in self._text_lines(fh):
            yield {self.fields[0]: text}, line

    def _jsonl(self, fh) -> Iterator[tuple[dict, int]]:
        for line, text in self._text_lines(fh):
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as exc:
                self._reject("malformed_json", line, text, str(exc))
                continue
            if not isinstance(rec, dict):
                self._reject("not_an_object", line, text, f"expected a JSON object, got {type(rec).__name__}")
                continue
            yield rec, line

    def _text(self, fh) -> Iterator[tuple[dict, int]]:
        raw = fh.read(self.cfg.max_record_bytes + 1)
        if len(raw) > self.cfg.max_record_bytes:
            raw = None
        elif not raw:
            return  # empty file: counted by documents()
        text = self._decode(raw, 1)
        if text is None:
            return
        yield {self.fields[0]: text}, 1

    def _csv(self, fh) -> Iterator[tuple[dict, int]]:
        delimiter = "\t" if self.unit.format == "tsv" else ","
        stream = io.TextIOWrapper(fh, encoding=self.src.encoding, newline="",
                                  errors="surrogateescape" if self.src.encoding_errors == "strict" else "replace")
        csv.field_size_limit(self.cfg.max_record_bytes)
        reader = csv.reader(stream, delimiter=delimiter)
        header: Optional[list[str]] = None
        errors_in_a_row = 0
        prev_end = 0  # a record starts on the line after the previous record ended
        while True:
            try:
                row = next(reader)
                errors_in_a_row = 0
            except StopIteration:
                return
            except csv.Error as exc:
                errors_in_a_row += 1
                reason = "record_too_large" if "field larger" in str(exc) else "malformed_csv"
                self._reject(reason, prev_end + 1, None, str(exc))
                prev_end = reader.line_num
                if errors_in_a_row > 1000:
                    return
                continue
            line, prev_end = prev_end + 1, reader.line_num
            if header is None and self.src.csv_header:
                header = row
                continue
            names = header if header is not None else [str(i) for i in range(len(row))]
            if not row or not any(c.strip() for c in row):
                self._reject("empty_line", line)
                continue
            if len(row) != len(names):
                self._reject("wrong_column_count", line, delimiter.join(row)[:200],
                             f"expected {len(names)} columns, got {len(row)}")
                continue
            if any(_has_surrogates(c) for c in row):
                self._reject(self._bad_encoding_reason, line,
                             delimiter.join(row).encode("utf-8", "replace")[:200].decode("utf-8", "replace"))
                continue
            yield dict(zip(names, row)), line

    def _parquet(self, fh) -> Iterator[tuple[dict, int]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(fh)
        cols = [c for c in self.fields if c]
        present = set(pf.schema_arrow.names)
        cols = [c for c in dict.fromkeys(cols) if c in present]
        groups = range(pf.metadata.num_row_groups) if self.unit.end < 0 else range(self.unit.start, self.unit.end)
        row0 = sum(pf.metadata.row_group(g).num_rows for g in range(groups.start)) if groups else 0
        for g in groups:
            table = pf.read_row_group(g, columns=cols)
            for i, rec in enumerate(table.to_pylist()):
                yield rec, row0 + i + 1
            row0 += table.num_rows


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True

