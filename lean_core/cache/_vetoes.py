"""Near-miss vetoes: small changes of wording that change the request.

Sentence embeddings put "under 18" next to "over 18", "7 am" next to "7 pm" and "Lyon-Milan" next to
"Milan-Lyon". Each check here compares one thing two prompts say and names the difference:

* opposite words: a word on one side whose opposite (``data/cache_opposites.json``) is on the
  other and not itself ("direction differs", "antonyms differ"), comparatives and inflections
  folded ("cheaper" = cheap, "more expensive" = expensive, "less expensive" = cheap);
* numbers: signed ("-20", "−20", "minus 20"), thousands separators folded, digits inside names
  ("Python3", "IPv6"); :func:`numbers` feeds the "numbers differ" veto of ``pair_features``, and
  the same numbers in another order are "numbers reordered";
* times of day (am/pm, 24 h, noon, midnight) compared as minutes ("times differ");
* currencies by symbol or name ("currency differs"), when both prompts name one;
* names with ``++`` or ``#`` (C, C++, C#, F#: "language differs");
* ordered pairs joined by ``-``, ``/``, "to" or "into" that appear reversed ("order swapped");
* units of one dimension (gigabytes / terabytes, km / miles, cups / tablespoons: "units differ") and
  relative dates (yesterday / last week, this / next weekend: "dates differ") that both prompts
  name, from :mod:`lean_core.cache._veto_measures`.

Texts are first folded by :func:`lean_core.cache.normalize.fold_for_matching` (NFKC, one
apostrophe, one dash, the minus sign). Negation, including "non-", "un-", "in-", "dis-" prefixes,
is compared by :func:`negation_differs` for the "negation differs" veto of ``pair_features``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

from lean_core.cache._veto_measures import dates_differ, units_differ

__all__ = ["NEGATION_WORDS", "NUMBER_WORDS", "near_miss", "negation_differs", "negations", "numbers", "times"]

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million "
    "billion trillion first second third fourth fifth sixth seventh eighth ninth tenth half twice once".split())
NEGATION_WORDS = frozenset("not no never nor none nobody nothing nowhere neither without cannot non n't".split())
_NEGATIVE_PREFIXES = ("non", "un", "in", "im", "il", "ir", "dis")

_TOKEN = re.compile(r"[^\W_]+")
_AM_PM = re.compile(r"(?<![\w:.])(\d{1,2})(?::([0-5]\d))?\s*([ap])\.?\s?m(?![a-z])\.?")
_CLOCK = re.compile(r"(?<![\w:.])([01]?\d|2[0-3]):([0-5]\d)(?![\d:])")
_NAMED_TIME = re.compile(r"\b(noon|midday|midnight)\b")
# A sign counts only where it cannot be a hyphen (at the start, after a space or an opening bracket),
# and "minus" only where no number precedes it ("9 minus 4" is a subtraction).
_SIGNED = re.compile(r"(?:(?<=[\s(\[=:])|^)(?:(-)|(?<!\d )(?:minus|negative)\s+)(?=[$€£¥₹]?\d)")
_NUMBER = re.compile(r"(?<!\w)(?<!\d\.)[$€£¥₹]?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)*)(?!\w)")
_DIGITS_IN_WORD = re.compile(r"(?<=[a-z])(\d+(?:\.\d+)*)(?![\d.]*[a-z])|\b(\d+)(?=[a-z])")
_CURRENCY_SYMBOLS = {"$": "dollar", "€": "euro", "£": "pound", "¥": "yen", "₹": "rupee"}
_CURRENCY_WORDS = {"dollar": "dollar", "dollars": "dollar", "usd": "dollar", "euro": "euro", "euros": "euro",
                   "eur": "euro", "pound": "pound", "pounds": "pound", "gbp": "pound", "quid": "pound", "yen": "yen",
                   "jpy": "yen", "rupee": "rupee", "rupees": "rupee", "inr": "rupee"}
_SUFFIXED_NAME = re.compile(r"(?<![\w+#])([a-z][a-z0-9]*)(\+\+|#)(?![\w+#])")
_CONNECTORS = frozenset({"-", "/", "to", "into", "->", "→"})
_PAIR_TOKEN = re.compile(r"[^\W_]+|->|[-/→]")
_NOT_STEMS = frozenset({"off", "out", "down", "pre", "post", "max", "min", "end", "top", "add", "win", "new"})
_DETERMINERS = frozenset("which the this that each any every some another no which".split())
_PARTICLES = frozenset({"in", "out", "on", "off", "up", "down"})
_ARTICLES = frozenset({"a", "an", "the"})
_NOT_ENDS = frozenset({"how", "what", "why", "when", "where", "who", "which", "want", "need", "have", "going",
                       "able", "is", "are", "was", "be", "it", "this", "that", "i", "you", "we", "they"})


@lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[str, tuple[tuple[int, int], ...]], dict[str, str], tuple[str, ...]]:
    """word -> ((group, +1/-1), ...), irregular forms, and the reason of each group."""
    raw = json.loads((resources.files("lean_core") / "data" / "cache_opposites.json").read_text(encoding="utf-8"))
    index: dict[str, list[tuple[int, int]]] = {}
    reasons: list[str] = []
    for category, reason in (("direction", "direction differs"), ("antonym", "antonyms differ")):
        for first, second in raw[category]:
            group = len(reasons)
            reasons.append(reason)
            index.setdefault(first, []).append((group, 1))
            index.setdefault(second, []).append((group, -1))
    return {w: tuple(v) for w, v in index.items()}, dict(raw["irregular"]), tuple(reasons)


def _forms(word: str) -> tuple[str, ...]:
    """The listed words that ``word`` is or inflects (comparatives, plurals, tenses), else ()."""
    index, irregular, _ = _lexicon()
    if word in index:  # listed as is ("evening" is not "even" + "ing")
        return (word,)
    if word in irregular:
        return (irregular[word],)
    for suffix, repl in (("iest", "y"), ("ier", "y"), ("ies", "y"), ("ied", "y"), ("est", ""), ("er", ""),
                         ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("d", "")):
        if word.endswith(suffix):
            stem = word[: -len(suffix)] + repl
            doubled = stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else ""  # "bigger" -> "big"
            for candidate in (stem, stem + "e", doubled):
                # Short stems are particles ("offer" is not "off" + "er").
                if len(candidate) >= 3 and candidate not in _NOT_STEMS and candidate in index:
                    return (candidate,)
    return ()


def _polarities(tokens: Sequence[str]) -> Counter[tuple[int | tuple[int, str], int]]:
    """(group, sign) counts; "less X" counts as X's opposite, and "more"/"less" that only make a
    comparative of a listed word are not counted themselves. The particles in/out, on/off, up/down
    are grouped with the word before them: "log in" against "log out" is a direction, "find out"
    against "interested in" is not."""
    index, _, _ = _lexicon()
    found: Counter[tuple[int | tuple[int, str], int]] = Counter()
    skip = -1
    for i, token in enumerate(tokens):
        if i == skip:
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if token in ("more", "most", "less", "least") and nxt and nxt not in ("than", "of") and _forms(nxt):
            flip = -1 if token in ("less", "least") else 1
            for base in _forms(nxt):
                for group, sign in index[base]:
                    found[(group, sign * flip)] += 1
            skip = i + 1
            continue
        for base in _forms(token):
            for group, sign in index[base]:
                key: int | tuple[int, str] = (group, tokens[i - 1] if i else "") if token in _PARTICLES else group
                found[(key, sign)] += 1
    return found


def _opposites(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> str | None:
    _, _, reasons = _lexicon()
    pa, pb = _polarities(tokens_a), _polarities(tokens_b)
    for key in {k for k, _ in pa} | {k for k, _ in pb}:
        plus, minus = (key, 1), (key, -1)
        # One side says a pole more often and the other says its opposite more often: a swap,
        # not a word added on one side ("sign up for X" / "sign up for X and log in").
        if (pa[plus] > pb[plus] and pb[minus] > pa[minus]) or (pb[plus] > pa[plus] and pa[minus] > pb[minus]):
            return reasons[key[0] if isinstance(key, tuple) else key]
    return None


def times(text: str) -> tuple[frozenset[int], str]:
    """Minutes after midnight of each time of day in ``text``, and the text with them blanked."""
    found: set[int] = set()

    def am_pm(match: re.Match[str]) -> str:
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        if 1 <= hour <= 12:
            found.add((hour % 12 + (12 if match.group(3) == "p" else 0)) * 60 + minute)
            return " "
        return match.group(0)

    def clock(match: re.Match[str]) -> str:
        found.add(int(match.group(1)) * 60 + int(match.group(2)))
        return " "

    def named(match: re.Match[str]) -> str:
        found.add(0 if match.group(1) == "midnight" else 720)
        return " "

    lowered = _AM_PM.sub(am_pm, text.lower())
    lowered = _CLOCK.sub(clock, lowered)
    lowered = _NAMED_TIME.sub(named, lowered)
    return frozenset(found), lowered


def numbers(text: str) -> list[str]:
    """Numbers of a folded text in order of appearance: signed, without thousands separators,
    without leading zeros, times of day left out, number words included."""
    _, rest = times(text)
    rest = _SIGNED.sub(lambda m: " \x00", rest)  # mark negatives, then read them below
    found: list[tuple[int, str]] = []
    for match in _NUMBER.finditer(rest):
        value = match.group(1).replace(",", "")
        if "." not in value:
            value = str(int(value))
        negative = rest[max(match.start() - 2, 0): match.start()].endswith("\x00")
        found.append((match.start(), ("-" if negative else "") + value))
    for match in _DIGITS_IN_WORD.finditer(rest):
        digits = match.group(1) or match.group(2)
        found.append((match.start(), str(int(digits)) if "." not in digits else digits))
    previous = ""
    for match in _TOKEN.finditer(rest):
        word = match.group(0)
        # "which one", "the one", "this one": a pronoun, not a count.
        if word in NUMBER_WORDS and not (word == "one" and previous in _DETERMINERS):
            found.append((match.start(), word))
        previous = word
    return [value for _, value in sorted(found)]


def _currencies(text: str, tokens: Sequence[str]) -> frozenset[str]:
    found = {name for symbol, name in _CURRENCY_SYMBOLS.items() if symbol in text}
    return frozenset(found | {_CURRENCY_WORDS[t] for t in tokens if t in _CURRENCY_WORDS})


def _ordered_pairs(text: str) -> set[tuple[str, str]]:
    """(x, y) for "x-y", "x/y", "x to y", "x into y" (articles after the connector skipped)."""
    tokens = _PAIR_TOKEN.findall(text.lower())
    pairs = set()
    for i in range(1, len(tokens) - 1):
        if tokens[i] not in _CONNECTORS:
            continue
        left, j = tokens[i - 1], i + 1
        while j < len(tokens) - 1 and tokens[j] in _ARTICLES:
            j += 1
        right = tokens[j]
        if left in _CONNECTORS or right in _CONNECTORS or left in _NOT_ENDS or right in _NOT_ENDS or left == right:
            continue
        pairs.add((left, right))
    return pairs


def negations(tokens: Sequence[str], other: Sequence[str]) -> tuple[int, int]:
    """(negation words in ``tokens``, words negated by a prefix whose stem ``other`` uses bare:
    "unsafe" against "safe", "nontoxic" against "toxic")."""
    words = sum(t in NEGATION_WORDS for t in tokens)
    prefixed = 0
    bare = set(other)
    split = set(itertools.pairwise(other))
    for token in set(tokens) - bare:
        for prefix in _NEGATIVE_PREFIXES:
            stem = token[len(prefix):]
            if not token.startswith(prefix) or len(stem) < 3:
                continue
            if (prefix, stem) in split and prefix not in NEGATION_WORDS:
                break  # "infront" against "in front": a spelling, not a negation
            if stem in bare or stem.rstrip("s") in bare or any(w.rstrip("s") == stem for w in bare):
                prefixed += 1
                break
    return words, prefixed


def negation_differs(tokens_a: Sequence[str], tokens_b: Sequence[str]) -> bool:
    """One prompt negated and the other not; or, where a prefix negates a word the other prompt
    uses bare, a different number of negations ("really inadvisable without training" against
    "advisable without training"), while "not toxic" and "nontoxic" still agree."""
    words_a, prefixed_a = negations(tokens_a, tokens_b)
    words_b, prefixed_b = negations(tokens_b, tokens_a)
    total_a, total_b = words_a + prefixed_a, words_b + prefixed_b
    return (total_a > 0) != (total_b > 0) or (bool(prefixed_a or prefixed_b) and total_a != total_b)


def near_miss(text_a: str, text_b: str, tokens_a: Sequence[str], tokens_b: Sequence[str]) -> str | None:
    """The first difference that makes two folded prompts different requests, or None.

    ``tokens_*``: the lower-cased words of each text, contractions expanded.
    """
    opposite = _opposites(tokens_a, tokens_b)
    if opposite is not None:
        return opposite
    times_a, _ = times(text_a)
    times_b, _ = times(text_b)
    if times_a != times_b:
        return "times differ"
    if dates_differ(text_a, text_b):
        return "dates differ"
    if units_differ(text_a, text_b, tokens_a, tokens_b):
        return "units differ"
    nums_a, nums_b = numbers(text_a), numbers(text_b)
    if len(set(nums_a)) > 1 and Counter(nums_a) == Counter(nums_b) and nums_a != nums_b:
        return "numbers reordered"
    cur_a, cur_b = _currencies(text_a, tokens_a), _currencies(text_b, tokens_b)
    if cur_a and cur_b and cur_a != cur_b:
        return "currency differs"
    if {m.group(0) for m in _SUFFIXED_NAME.finditer(text_a.lower())} != \
            {m.group(0) for m in _SUFFIXED_NAME.finditer(text_b.lower())}:
        return "language differs"
    pairs_a, pairs_b = _ordered_pairs(text_a), _ordered_pairs(text_b)
    if any((y, x) in pairs_b and (x, y) not in pairs_b and (y, x) not in pairs_a for x, y in pairs_a):
        return "order swapped"
    return None
