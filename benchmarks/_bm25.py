"""A small Okapi BM25 ranker (Robertson/Sparck Jones idf, k1/b saturation) over an inverted index.

Used by the compression benchmark to pick *hard* distractor passages: lexically close to the
question, so that a compressor cannot tell the gold passage apart by topic alone. Pure Python, no
dependencies; ranking 1,500 short passages takes well under a millisecond per query.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

__all__ = ["BM25", "tokenize"]

_WORD = re.compile(r"[0-9a-z]+")
# A short English stop list: these words match everywhere and only add noise to lexical ranking.
_STOPWORDS = frozenset(
    "a an and are as at be by for from has have he her his in is it its of on or she that the their "
    "they this to was were what when where which who whom why will with how did do does".split()
)


_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ies", "ed", "es", "s")


def _stem(word: str) -> str:
    """Strip one common English suffix, keeping a stem of at least four letters."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text``, stop words removed, light suffix stripping
    ("questions" -> "question", "starting" -> "start"; no full stemmer: this is a ranking aid)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


class BM25:
    """Okapi BM25 over a fixed list of documents.

    ``k1`` (>= 0) is the term-frequency saturation, ``b`` in [0, 1] the length normalisation; the
    defaults are the usual 1.5 and 0.75. Idf is ``log(1 + (N - df + 0.5) / (df + 0.5))``, which is
    never negative.
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75,
                 tokenizer: Callable[[str], list[str]] = tokenize) -> None:
        if k1 < 0:
            raise ValueError(f"invalid k1: expected a number >= 0, received {k1!r}")
        if not 0.0 <= b <= 1.0:
            raise ValueError(f"invalid b: expected a number in [0, 1], received {b!r}")
        self.k1 = k1
        self.b = b
        self._tokenizer = tokenizer
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = {}
        for doc_id, doc in enumerate(documents):
            counts = Counter(tokenizer(doc))
            self._lengths.append(sum(counts.values()))
            for term, tf in counts.items():
                self._postings.setdefault(term, []).append((doc_id, tf))
        n = len(self._lengths)
        self._avg_length = (sum(self._lengths) / n) if n else 0.0
        self._idf = {term: math.log(1.0 + (n - len(p) + 0.5) / (len(p) + 0.5))
                     for term, p in self._postings.items()}

    def __len__(self) -> int:
        return len(self._lengths)

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every document sharing at least one query term (others score 0)."""
        out: dict[int, float] = {}
        avg = self._avg_length or 1.0
        for term in set(self._tokenizer(query)):
            postings = self._postings.get(term)
            if not postings:
                continue
            idf = self._idf[term]
            for doc_id, tf in postings:
                norm = self.k1 * (1.0 - self.b + self.b * self._lengths[doc_id] / avg)
                out[doc_id] = out.get(doc_id, 0.0) + idf * tf * (self.k1 + 1.0) / (tf + norm)
        return out

    def rank(self, query: str) -> list[int]:
        """Every document index, best first; ties (and zero scores) keep document order."""
        scores = self.scores(query)
        matched = sorted(scores, key=lambda d: (-scores[d], d))
        seen = set(matched)
        return matched + [d for d in range(len(self._lengths)) if d not in seen]
