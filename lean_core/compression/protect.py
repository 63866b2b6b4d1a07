"""Protected spans: text a compressor must never alter (numbers, code, URLs, identifiers, ...).

Compressors treat every span as atomic: it is kept byte for byte or not at all, and text units
are never cut through one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["DEFAULT_PROTECTED_KINDS", "ProtectedSpan", "find_protected_spans"]


@dataclass(frozen=True, slots=True)
class ProtectedSpan:
    start: int
    end: int
    kind: str

    def text(self, source: str) -> str:
        return source[self.start:self.end]


_PATTERNS: dict[str, re.Pattern[str]] = {
    "code_block": re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.S),
    "inline_code": re.compile(r"`[^`\n]+`"),
    "url": re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`]+[^\s<>\"'`.,;:!?)\]]"),
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "quoted": re.compile(r"\"[^\"\n]{1,200}\"|“[^”\n]{1,200}”|«[^»\n]{1,200}»"),
    # snake_case, camelCase, dotted.names, CONSTANTS, ids mixing letters and digits (A1B2, #48213)
    "identifier": re.compile(
        r"#\w+|\b[A-Za-z_][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\b|\b[a-z]+(?:[A-Z][a-z0-9]+)+\b"
        r"|\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\(?\)?|\b(?=\w*\d)(?=\w*[A-Za-z])\w{2,}\b|\b[A-Z]{2,}[A-Z0-9_]*\b"
    ),
    # money, percentages, dates, times, versions, plain numbers with separators. The currency sign
    # takes the one space after it whatever that space is (NBSP, tab, thin space): "$\u00a0950" is
    # one span, kept byte for byte, never "$" and "950" with a space between to normalise. A sign
    # touching the amount before it is that amount's ("100,00€ 5,00€": "100,00€", not "€ 5,00€");
    # a spaced one is, unless an amount follows it ("12,00 € $ 7" but "$1 $ 2").
    "number": re.compile(
        r"(?:[$€£¥][^\S\n]?)?[-+]?\d(?:[\d,._:/-]*\d)?%?(?:[$€£¥](?!\d)|[^\S\n][$€£¥](?![^\S\n]?\d))?"
    ),
}
DEFAULT_PROTECTED_KINDS: tuple[str, ...] = ("code_block", "inline_code", "json", "url", "email", "quoted",
                                            "identifier", "number")


def _json_spans(text: str) -> Iterable[tuple[int, int]]:
    """Balanced {...} / [...] blocks that look like JSON (contain a quoted key or value)."""
    i, n = 0, len(text)
    while i < n:
        if text[i] in "{[":
            depth, j, in_string, escaped = 0, i, False, False
            while j < n:
                c = text[j]
                if in_string:
                    if escaped:
                        escaped = False
                    elif c == "\\":
                        escaped = True
                    elif c == '"':
                        in_string = False
                elif c == '"':
                    in_string = True
                elif c in "{[":
                    depth += 1
                elif c in "}]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            if depth == 0 and j < n and '"' in text[i:j] and (":" in text[i:j] or text[i] == "["):
                yield i, j + 1
                i = j + 1
                continue
        i += 1


def find_protected_spans(text: str, *, kinds: Sequence[str] = DEFAULT_PROTECTED_KINDS,
                         patterns: Sequence[str | re.Pattern[str]] = ()) -> list[ProtectedSpan]:
    """Non-overlapping protected spans of ``text``, sorted; overlapping matches are merged.

    ``patterns`` adds user regexes (kind ``"user"``). Unknown kinds raise ValueError.
    """
    from lean_core.errors import InvalidParameterError

    unknown = set(kinds) - set(DEFAULT_PROTECTED_KINDS)
    if unknown:
        raise InvalidParameterError("kinds", allowed=f"a subset of {list(DEFAULT_PROTECTED_KINDS)}",
                                    received=sorted(unknown))
    raw: list[tuple[int, int, str]] = []
    # Fenced blocks first, then everything else on a copy with those blocks blanked out: a
    # backtick pair spanning two fences must not read as inline code joining them.
    masked = text
    if "code_block" in kinds:
        for m in _PATTERNS["code_block"].finditer(text):
            raw.append((m.start(), m.end(), "code_block"))
            masked = masked[:m.start()] + " " * (m.end() - m.start()) + masked[m.end():]
    for kind in kinds:
        if kind == "code_block":
            continue
        if kind == "json":
            raw.extend((s, e, "json") for s, e in _json_spans(masked))
        else:
            raw.extend((m.start(), m.end(), kind) for m in _PATTERNS[kind].finditer(masked) if m.end() > m.start())
    for pattern in patterns:
        compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        raw.extend((m.start(), m.end(), "user") for m in compiled.finditer(text) if m.end() > m.start())
    raw.sort(key=lambda s: (s[0], -s[1]))
    merged: list[ProtectedSpan] = []
    for start, end, kind in raw:
        if merged and (start < merged[-1].end or _shared_sign(text, merged[-1], start, kind)):
            last = merged[-1]
            if end > last.end:
                merged[-1] = ProtectedSpan(last.start, end, last.kind)
            continue
        merged.append(ProtectedSpan(start, end, kind))
    return merged


_SPACED_SIGN = re.compile(r"[^\S\n]*[$€£¥][^\S\n]")


def _shared_sign(text: str, last: ProtectedSpan, start: int, kind: str) -> bool:
    """A spaced currency sign between two amounts ("100,00 € 5,00€") may be either one's when the
    first has no sign of its own: the pattern gives it to the amount after it, so keeping the first
    alone would drop its sign. Such a run is protected whole (one span). An amount with its own
    sign ("$1 $ 2") leaves the next sign to the next amount."""
    return (kind == "number" == last.kind and text[last.end - 1].isdigit() and text[last.start] not in "$€£¥"
            and _SPACED_SIGN.fullmatch(text, last.end, start + 2) is not None)
