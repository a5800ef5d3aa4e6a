"""CoNLL NER files: one token per line (``word ... TAG``, tag in the last column), a blank line
between sentences, ``-DOCSTART-`` lines between documents (skipped). Every line must have the
same number of columns as the first token line; a deviation is an error naming file and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import ArtifactError, LmforgeError


class CoNLLError(LmforgeError, ValueError):
    pass


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    source: str
    line: int  # 1-based line of the first token


def read_conll(path: str | Path, sep: str | None = None) -> list[Sentence]:
    """Sentences of a CoNLL file. ``sep`` None splits on any whitespace (CoNLL-2003), '\\t' for TSV."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no CoNLL file at {path}")
    out: list[Sentence] = []
    words: list[str] = []
    tags: list[str] = []
    start, ncols = 0, None
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n").rstrip("\r")
            if not line.strip():
                if words:
                    out.append(Sentence(words, tags, str(path), start))
                    words, tags = [], []
                continue
            cols = line.split(sep) if sep else line.split()
            if cols[0] == "-DOCSTART-":
                if words:
                    out.append(Sentence(words, tags, str(path), start))
                    words, tags = [], []
                continue
            if ncols is None:
                ncols = len(cols)
                if ncols < 2:
                    raise CoNLLError(f"{path}:{lineno}: expected at least 2 columns (word ... tag); got {line!r}")
            elif len(cols) != ncols:
                raise CoNLLError(f"{path}:{lineno}: expected {ncols} columns like the first token line; "
                                 f"got {len(cols)}: {line!r}")
            if not words:
                start = lineno
            words.append(cols[0])
            tags.append(cols[-1])
    if words:
        out.append(Sentence(words, tags, str(path), start))
    return out


def check_iob2(sentences: list[Sentence], labels: set[str] | None = None) -> None:
    """Tags must look like O / B-X / I-X (and be declared, when ``labels`` is given)."""
    for s in sentences:
        for i, t in enumerate(s.tags):
            if t != "O" and not (len(t) > 2 and t[:2] in ("B-", "I-")):
                raise CoNLLError(f"{s.source}:{s.line + i}: tag {t!r} is not IOB2 (O, B-TYPE or I-TYPE)")
            if labels is not None and t not in labels:
                raise CoNLLError(f"{s.source}:{s.line + i}: tag {t!r} is not one of the model's labels {sorted(labels)}")
