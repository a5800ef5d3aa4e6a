"""Reference word 5-gram shingling and exact Jaccard, used for the benchmark's ground truth.

Independent of lmforge's implementation, but it follows the same definition of a word that
lmforge documents for its MinHash (``lmforge/data/minhash.py``): after lowercasing, a word is
a maximal run of ASCII letters/digits and non-ASCII characters; everything else separates
words. Shingles are the distinct overlapping runs of ``n`` words; a text with 1..n-1 words has
a single shingle made of all its words, and a text without words has none.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9\u0080-\U0010ffff]+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingle_set(text: str, n: int = 5) -> set:
    w = words(text)
    if not w:
        return set()
    if len(w) < n:
        return {" ".join(w)}
    return {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard_sets(a: set, b: set) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def jaccard(a: str, b: str, n: int = 5) -> float:
    return jaccard_sets(shingle_set(a, n), shingle_set(b, n))
