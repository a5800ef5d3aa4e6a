"""Plan the work: expand sources (globs, fsspec URLs, built-ins) into ordered work units.

A work unit is the smallest piece one worker reads: a whole file, a byte range of a large
local line-based file (cut at line starts, with the line number it starts at), a Parquet row
group, or a slice of a built-in corpus. Units are numbered in a deterministic order, so the
corpus order — and everything derived from it — does not depend on the number of workers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Optional

from lmforge.data.config import DataConfig, SourceConfig
from lmforge.errors import LmforgeError

COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".lz4")
EXTENSION_FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
    ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".txt": "lines", ".text": "lines",
}


class SourceError(LmforgeError, ValueError):
    """A source that cannot be read at all (missing path, unknown format, ...)."""


@dataclass
class WorkUnit:
    index: int
    source_index: int
    path: str
    format: str
    start: int = 0            # byte offset (line files) or row group (parquet)
    end: int = -1             # byte offset, exclusive; -1 = to end of file
    first_line: int = 1       # 1-based line number of the first line in [start, end)
    files: Optional[list[str]] = field(default=None)  # built-in corpora: files of this slice
    size: int = 0             # bytes this unit covers (for progress and the manifest)
    stamp: Optional[list[int]] = field(default=None)  # [file size, mtime ns] when planned (local files)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "WorkUnit":
        return cls(**d)

    @property
    def name(self) -> str:
        return f"unit_{self.index:05d}"


def check_readable(units: list[WorkUnit]) -> None:
    """Every local input can be opened for reading; otherwise one :class:`SourceError` listing
    all that cannot, before any work starts."""
    bad = []
    for path in dict.fromkeys(f for u in units for f in (u.files or [u.path])):
        if os.path.isfile(path):
            try:
                with open(path, "rb") as fh:
                    fh.read(1)
            except OSError as exc:
                bad.append(f"{path}: {exc.strerror or exc}")
    if bad:
        raise SourceError("cannot read input file(s): " + "; ".join(bad) + " — fix the permissions and rerun")


def stamp_units(units: list[WorkUnit]) -> None:
    """Record each local input's size and modification time at planning: a unit's completion
    marker is then valid only for the file as it was, and a file that changes while it is read is
    caught (:func:`check_unchanged`)."""
    for u in units:
        if u.format != "builtin" and os.path.isfile(u.path):
            st = os.stat(u.path)
            u.stamp = [st.st_size, st.st_mtime_ns]


def check_unchanged(unit: WorkUnit) -> None:
    """A :class:`SourceError` when ``unit``'s file no longer has the size and mtime it had at planning."""
    if unit.stamp is None:
        return
    try:
        st = os.stat(unit.path)
        now = [st.st_size, st.st_mtime_ns]
    except OSError:
        now = None
    if now != unit.stamp:
        raise SourceError(f"{unit.path} changed while it was being read (size/mtime {unit.stamp} at planning, {now} "
                          "now); nothing from it was counted: rerun once the file is stable")


def infer_format(path: str) -> str:
    name = path.lower()
    for suf in COMPRESSION_SUFFIXES:
        if name.endswith(suf):
            name = name[: -len(suf)]
    ext = os.path.splitext(name)[1]
    return EXTENSION_FORMATS.get(ext, "lines")


def _expand(src: SourceConfig) -> list[tuple[str, int, bool]]:
    """Files of a path/glob/URL as (path, size, is_local_uncompressed), sorted."""
    import fsspec

    fs, _, paths = fsspec.get_fs_token_paths(src.path)
    has_magic = any(ch in src.path for ch in "*?[")
    if has_magic:
        paths = sorted(p for p in fs.glob(src.path) if not fs.isdir(p))
    else:
        paths = [p for p in paths if fs.exists(p)]
        if paths and fs.isdir(paths[0]):
            paths = sorted(p for p in fs.find(paths[0]) if not os.path.basename(p).startswith("."))
    if not paths:
        raise SourceError(f"data.sources: no input matches {src.path!r} (check the path or glob)")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    out = []
    for p in paths:
        local = protocol in ("file", "local")
        url = p if local else f"{protocol}://{p}"
        size = fs.size(p) or 0
        compressed = p.lower().endswith(COMPRESSION_SUFFIXES)
        out.append((url, size, local and not compressed))
    return out


def source_files(src: SourceConfig) -> list[tuple[str, int, bool]]:
    """The files one source names: (path or URL, size, local and uncompressed), sorted."""
    return _expand(src)


def _line_chunks(path: str, size: int, chunk_bytes: int) -> list[tuple[int, int, int]]:
    """Cut a local file into (start, end, first_line) ranges aligned to line starts."""
    if size <= chunk_bytes:
        return [(0, size, 1)]
    bounds = [0]
    with open(path, "rb") as f:
        pos = chunk_bytes
        while pos < size:
            f.seek(pos)
            f.readline()  # move to the next line start
            nxt = f.tell()
            if nxt >= size:
                break
            if nxt > bounds[-1]:
                bounds.append(nxt)
            pos = nxt + chunk_bytes
        bounds.append(size)
        # line numbers: count newlines in each range (streamed, 8 MiB at a time)
        chunks, line = [], 1
        for a, b in zip(bounds[:-1], bounds[1:]):
            chunks.append((a, b, line))
            f.seek(a)
            remaining = b - a
            while remaining > 0:
                buf = f.read(min(remaining, 8 << 20))
                if not buf:
                    break
                line += buf.count(b"\n")
                remaining -= len(buf)
    return chunks


def plan_units(cfg: DataConfig) -> list[WorkUnit]:
    """Expand every source into work units, in a deterministic order."""
    from lmforge.data import stdlib_corpus

    units: list[WorkUnit] = []
    chunk_bytes = cfg.chunk_mb << 20
    for si, src in enumerate(cfg.sources):
        if src.builtin:
            for files in stdlib_corpus.slices():
                units.append(WorkUnit(len(units), si, f"builtin:{src.builtin}", "builtin", files=files,
                                      size=sum(os.path.getsize(f) for f in files)))
            continue
        for path, size, splittable in _expand(src):
            fmt = src.format if src.format != "auto" else infer_format(path)
            if fmt in ("lines", "jsonl") and splittable:
                try:
                    chunks = _line_chunks(path, size, chunk_bytes)
                except OSError:  # unreadable: one unit, which check_readable reports with all the others
                    chunks = [(0, size, 1)]
                for a, b, line in chunks:
                    units.append(WorkUnit(len(units), si, path, fmt, a, b, line, size=b - a))
            elif fmt == "parquet":
                units.extend(_parquet_units(path, si, len(units), size))
            else:
                units.append(WorkUnit(len(units), si, path, fmt, size=size))
    return units


def _parquet_units(path: str, si: int, first_index: int, size: int) -> list[WorkUnit]:
    import fsspec
    import pyarrow.parquet as pq

    try:
        with fsspec.open(path, "rb") as fh:
            n_groups = pq.ParquetFile(fh).metadata.num_row_groups
    except Exception:  # unreadable footer: one unit; its reader reports the file as rejected
        return [WorkUnit(first_index, si, path, "parquet", 0, -1, size=size)]
    n_groups = max(n_groups, 1)
    return [WorkUnit(first_index + g, si, path, "parquet", g, g + 1, size=size // n_groups) for g in range(n_groups)]
