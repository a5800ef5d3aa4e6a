"""A whitespace word tokenizer for datatrove's MinHash (optional ``--word-tokenizer whitespace``).

datatrove's MinHash first runs ``simplify_text`` (lowercase, punctuation to spaces, numbers to
0, whitespace collapsed, diacritics removed); its English word tokenizer (spaCy's blank
``en``) then mostly splits that on spaces. This class does just the split — the fastest
reasonable choice, used to show how much of datatrove's signature time is spaCy. It lives in
its own module so datatrove's worker processes can unpickle it.
"""

from __future__ import annotations

from datatrove.utils.word_tokenizers import WordTokenizer


class SplitWordTokenizer(WordTokenizer):
    def __init__(self):
        super().__init__("en")

    def word_tokenize(self, text: str) -> list[str]:
        return text.split()

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in text.split("\n") if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        out, pos = [], 0
        for s in text.split("\n"):
            if s.strip():
                out.append((pos, pos + len(s)))
            pos += len(s) + 1
        return out
