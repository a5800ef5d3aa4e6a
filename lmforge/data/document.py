"""The record every data step sees, and the bookkeeping of what each step keeps and drops."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from lmforge.errors import LmforgeError


@dataclass(slots=True)
class Document:
    """One text record. ``source``/``line`` say where it came from (line is 1-based)."""

    text: str
    id: str
    label: Optional[str] = None
    group: Optional[str] = None
    source: str = ""
    line: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "text": self.text}
        if self.label is not None:
            d["label"] = self.label
        if self.group is not None:
            d["group"] = self.group
        d["source"] = self.source
        d["line"] = self.line
        if self.meta:
            d["meta"] = self.meta
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Document":
        return cls(text=d["text"], id=d["id"], label=d.get("label"), group=d.get("group"),
                   source=d.get("source", ""), line=d.get("line", 0), meta=d.get("meta") or {})


class StepStats:
    """Counts for one step: ``read == kept + sum(dropped.values())`` always holds."""

    def __init__(self, name: str):
        self.name = name
        self.read = 0
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self.extra: Counter[str] = Counter()  # informational counters (e.g. fields filled)

    def drop(self, reason: str) -> None:
        self.read += 1
        self.dropped[reason] += 1

    def keep(self) -> None:
        self.read += 1
        self.kept += 1

    def to_json(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "extra": dict(sorted(self.extra.items()))}

    @classmethod
    def from_json(cls, name: str, d: dict[str, Any]) -> "StepStats":
        s = cls(name)
        s.read, s.kept = d["read"], d["kept"]
        s.dropped.update(d.get("dropped", {}))
        s.extra.update(d.get("extra", {}))
        return s

    def merge(self, other: "StepStats") -> None:
        self.read += other.read
        self.kept += other.kept
        self.dropped.update(other.dropped)
        self.extra.update(other.extra)


class RejectWriter:
    """Appends rejected records (source, line, reason, a snippet) to a JSONL file, lazily."""

    SNIPPET = 200

    def __init__(self, path: Path, strict: bool = False):
        self.path = path
        self.strict = strict
        self._fh = None
        self.count = 0

    def write(self, reason: str, source: str, line: int, text: Any = None, detail: str = "") -> None:
        if self.strict:
            raise RecordError(f"{source}:{line}: rejected ({reason}){': ' + detail if detail else ''}")
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")
        snippet = text if isinstance(text, str) else (repr(text) if text is not None else None)
        if snippet is not None:  # lone surrogates (from undecodable input) cannot be written as UTF-8
            snippet = snippet[: self.SNIPPET].encode("utf-8", "replace").decode("utf-8")
        rec = {"source": source, "line": line, "reason": reason}
        if detail:
            rec["detail"] = detail
        if snippet is not None:
            rec["snippet"] = snippet
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RecordError(LmforgeError, ValueError):
    """A bad record under ``strict: true``."""
