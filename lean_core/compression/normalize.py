"""Whitespace clean-up that never touches a protected span, and duplicate passages.

Spans are found on the *original* text first; clean-up then only deletes surplus whitespace in the
gaps between them. The output is therefore made of slices of the input (a whitespace run is cut
to its first character, or to a blank line), and every span in it is a byte-identical slice:
"$\u00a0950" stays "$\u00a0950", a code block keeps its indentation and trailing spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lean_core.compression.protect import ProtectedSpan, find_protected_spans
from lean_core.compression.types import DroppedSegment

__all__ = ["compact_slice", "dedupe_passages", "normalize_whitespace", "strip_outside"]

_SURPLUS = re.compile(r"\s{2,}")


def _shorter(match: re.Match[str]) -> str:
    run = match.group()
    newlines = run.count("\n")
    if newlines >= 2:
        return "\n\n"
    return "\n" if newlines else run[0]


def compact_slice(text: str, start: int, end: int, spans: Sequence[ProtectedSpan]) -> str:
    """``text[start:end]`` with each whitespace run outside ``spans`` (found on ``text``) cut to
    its first character (two newlines where it holds a blank line); spans are copied as slices."""
    out: list[str] = []
    position = start
    for span in spans:
        if span.end <= position:
            continue
        if span.start >= end:
            break
        if span.start > position:
            out.append(_SURPLUS.sub(_shorter, text[position:span.start]))
        out.append(text[max(span.start, position):min(span.end, end)])
        position = min(span.end, end)
    if position < end:
        out.append(_SURPLUS.sub(_shorter, text[position:end]))
    return "".join(out)


def strip_outside(text: str, spans: Sequence[ProtectedSpan]) -> tuple[int, int]:
    """The (start, end) of ``text`` without leading and trailing whitespace, never cutting into a
    span (an unterminated code block ends with the whitespace that closes the text)."""
    start, end = len(text) - len(text.lstrip()), len(text.rstrip())
    if spans:
        start, end = min(start, spans[0].start), max(end, spans[-1].end)
    return start, max(start, end)


def normalize_whitespace(text: str, spans: Sequence[ProtectedSpan] | None = None) -> str:
    """``text`` stripped, its whitespace runs outside protected spans shortened (see
    :func:`compact_slice`). ``spans``: found on ``text``; None finds every default kind."""
    spans = find_protected_spans(text) if spans is None else spans
    start, end = strip_outside(text, spans)
    return compact_slice(text, start, end, spans)


def _shingles(text: str, size: int = 5) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    if len(words) < size:
        return {tuple(words)} if words else set()
    return {tuple(words[i:i + size]) for i in range(len(words) - size + 1)}


def dedupe_passages(passages: Sequence[str], *, near_duplicate_jaccard: float = 0.85
                    ) -> tuple[list[int], list[DroppedSegment]]:
    """Indices of passages to keep (first occurrence wins) and what was dropped.

    A passage is a near duplicate when the Jaccard similarity of its 5-word shingles with an
    earlier kept passage is at least ``near_duplicate_jaccard`` (0..1).
    """
    kept: list[int] = []
    kept_shingles: list[set[tuple[str, ...]]] = []
    seen_exact: set[str] = set()
    dropped: list[DroppedSegment] = []
    for index, passage in enumerate(passages):
        key = " ".join(passage.split()).lower()
        if not key:
            continue
        if key in seen_exact:
            dropped.append(DroppedSegment(kind="duplicate", text=passage, start=-1))
            continue
        shingles = _shingles(passage)
        if shingles and any(
            len(shingles & other) / len(shingles | other) >= near_duplicate_jaccard for other in kept_shingles
        ):
            dropped.append(DroppedSegment(kind="duplicate", text=passage, start=-1))
            continue
        seen_exact.add(key)
        kept.append(index)
        kept_shingles.append(shingles)
    return kept, dropped
