"""What differs between a new prompt and a cached one, beyond embedding similarity.

MiniLM puts "Are cats afraid of tigers?" and "Are tigers afraid of cats?" at cosine 0.994, and
"capital of France" next to "capital of Germany". The features here see what embeddings blur:
numbers, names, negation, swapped roles and unmatched content words. Some of them are hard
vetoes (a cache must never serve an answer about another number or another named entity); the
rest feed the calibrated verifier. Both texts are folded first (NFKC, one apostrophe, one dash),
and the near-miss checks of :mod:`~lean_core.cache._vetoes` (opposite words, times, reordered
numbers, currencies, C/C++/C#, reversed "A-B" pairs) add vetoes that are not model features.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from lean_core.cache import _vetoes
from lean_core.cache._veto_measures import is_unit
from lean_core.cache.normalize import fold_for_matching

__all__ = ["FEATURE_NAMES", "PairFeatures", "pair_features"]

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*|\d+(?:[.,:/]\d+)*", re.UNICODE)
_NUMBER = re.compile(r"^\d+(?:[.,:/]\d+)*$")
_LETTERS = re.compile(r"[^\W\d_]+")
_NEGATIONS = _vetoes.NEGATION_WORDS
_WH = frozenset("what why how when where who whom whose which".split())
_STOPWORDS = frozenset("""
a an the and or but if of at by for with about against between into through during before after above below to
from up down in out on off over under again further then once here there all any both each few more most other
some such only own same so than too very s t can will just don should now i me my myself we our ours you your
yours he him his she her hers it its they them their what which who whom this that these those am is are was
were be been being have has had having do does did doing would could might must shall may get got also ever
much many way ways one best good better someone something anyone anything people thing things make
""".split()) | _WH
_CONTRACTIONS = (("can't", "can not"), ("won't", "will not"), ("n't", " not"))  # on folded text: one apostrophe

FEATURE_NAMES = (
    "similarity", "similarity_sq", "content_jaccard", "unmatched_max", "unmatched_min", "unmatched_share",
    "length_ratio", "wh_mismatch", "number_mismatch", "entity_mismatch", "negation_mismatch", "role_swap",
    "order_discord",
)


@dataclass(frozen=True)
class PairFeatures:
    """Differences between two prompts; ``vector`` is in :data:`FEATURE_NAMES` order."""

    similarity: float
    content_jaccard: float
    unmatched_max: int
    unmatched_min: int
    unmatched_share: float
    length_ratio: float
    wh_mismatch: bool
    number_mismatch: bool
    entity_mismatch: bool
    negation_mismatch: bool
    role_swap: bool
    order_discord: float
    near_miss: str | None = None
    """A near-miss found by :func:`lean_core.cache._vetoes.near_miss` ("direction differs", "times
    differ", ...); a veto, not a model feature."""

    @property
    def vector(self) -> list[float]:
        # Counts are clipped: long prompts must not score outside the range the model was fitted on.
        return [self.similarity, self.similarity ** 2, self.content_jaccard, float(min(self.unmatched_max, 4)),
                float(min(self.unmatched_min, 4)), self.unmatched_share, self.length_ratio, float(self.wh_mismatch),
                float(self.number_mismatch), float(self.entity_mismatch), float(self.negation_mismatch),
                float(self.role_swap), self.order_discord]

    @property
    def veto(self) -> str | None:
        """The reason no semantic hit may be served between these prompts, or None."""
        if self.number_mismatch:
            return "numbers differ"
        if self.entity_mismatch:
            return "named entities differ"
        if self.negation_mismatch:
            return "negation differs"
        if self.role_swap:
            return "roles swapped"
        return self.near_miss


@dataclass(frozen=True)
class _Parsed:
    words: tuple[str, ...]
    content: tuple[str, ...]
    numbers: frozenset[str]
    entities: frozenset[str]
    wh: frozenset[str]
    text: str
    """The folded text the rest was read from."""


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _parse(text: str) -> _Parsed:
    text = fold_for_matching(text)
    lowered = text.lower()
    for old, new in _CONTRACTIONS:
        lowered = lowered.replace(old, new)
    raw = _WORD.findall(text)
    words = tuple(_WORD.findall(lowered))
    numbers = frozenset(_vetoes.numbers(lowered))
    entities: set[str] = set()
    for position, token in enumerate(raw):
        # Capitalised mid-sentence words and acronyms; the first word and "I" are capitalised anyway.
        starts_sentence = position == 0 or text[: text.find(token)].rstrip().endswith((".", "?", "!", ":"))
        if is_unit(token, raw[position - 1] if position else ""):
            continue  # "64 GB", "Celsius": a unit (compared by the "units differ" veto), not a name
        if token.isupper() and len(token) > 1 and not token.isdigit():
            entities.add(token.lower())
        elif token[:1].isupper() and not starts_sentence and token != "I":
            entities.add(token.lower())
    content = tuple(_stem(w) for w in words if w not in _STOPWORDS and w not in _NEGATIONS and not _NUMBER.match(w))
    return _Parsed(words=words, content=content, numbers=numbers,
                   entities=frozenset(_stem(e) for e in entities) - _STOPWORDS,
                   wh=frozenset(w for w in words if w in _WH), text=text)


def _order(a: _Parsed, b: _Parsed) -> tuple[bool, float]:
    """(roles swapped, share of discordant pairs) over content words that occur once in each.

    Two content words that change order with a shared word between them in both texts swapped
    roles around it: "cats afraid of tigers" / "tigers afraid of cats", and also "euros to
    dollars" / "dollars to euros", where the pivot is a function word.
    """
    content_a, content_b = a.content, b.content
    shared = [w for w in dict.fromkeys(content_a) if content_a.count(w) == 1 and content_b.count(w) == 1]
    if len(shared) < 2:
        return False, 0.0
    words_a = [_stem(w) for w in a.words]
    words_b = [_stem(w) for w in b.words]
    pivots = [w for w in dict.fromkeys(words_a) if words_a.count(w) == 1 and words_b.count(w) == 1]
    pos_a = {w: words_a.index(w) for w in pivots}
    pos_b = {w: words_b.index(w) for w in pivots}
    pairs = discordant = 0
    swapped = False
    for i, x in enumerate(shared):
        for y in shared[i + 1:]:
            if x not in pos_a or y not in pos_a:
                continue
            pairs += 1
            if (pos_a[x] - pos_a[y]) * (pos_b[x] - pos_b[y]) < 0:
                discordant += 1
                lo_a, hi_a = sorted((pos_a[x], pos_a[y]))
                lo_b, hi_b = sorted((pos_b[x], pos_b[y]))
                if any(lo_a < pos_a[m] < hi_a and lo_b < pos_b[m] < hi_b for m in pivots if m not in (x, y)):
                    swapped = True
    return swapped, discordant / pairs if pairs else 0.0


def _known(parsed: _Parsed) -> set[str]:
    """What an entity of the other prompt may match: a word, two adjacent words joined ("Python3"
    against "Python 3", "WiFi" against "Wi Fi"), or the letters of a word with digits ("Windows"
    against "Windows10")."""
    words = parsed.words
    known = set(words) | set(parsed.content) | {x + y for x, y in itertools.pairwise(words)}
    for word in words:
        if not word.isalpha() and not word.isdigit():
            parts = _LETTERS.findall(word)
            known.update(parts)
            known.update(_stem(p) for p in parts)
    return known


def pair_features(query: str, cached: str, similarity: float) -> PairFeatures:
    """Features of (new prompt, cached prompt) given their embedding cosine."""
    a, b = _parse(query), _parse(cached)
    set_a, set_b = set(a.content), set(b.content)
    union = set_a | set_b
    only_a, only_b = len(set_a - set_b), len(set_b - set_a)
    known_a, known_b = _known(a), _known(b)
    entity_mismatch = bool({e for e in a.entities if e not in known_b} | {e for e in b.entities if e not in known_a})
    swapped, discord = _order(a, b)
    length_a, length_b = max(len(a.words), 1), max(len(b.words), 1)
    return PairFeatures(
        similarity=float(similarity),
        content_jaccard=len(set_a & set_b) / len(union) if union else 1.0,
        unmatched_max=max(only_a, only_b),
        unmatched_min=min(only_a, only_b),
        unmatched_share=(only_a + only_b) / len(union) if union else 0.0,
        length_ratio=min(length_a, length_b) / max(length_a, length_b),
        wh_mismatch=a.wh != b.wh,
        number_mismatch=a.numbers != b.numbers,
        entity_mismatch=entity_mismatch,
        negation_mismatch=_vetoes.negation_differs(a.words, b.words),
        role_swap=swapped,
        order_discord=discord,
        near_miss=_vetoes.near_miss(a.text, b.text, a.words, b.words),
    )
