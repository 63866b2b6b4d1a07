"""Lossless normalisation: whitespace outside protected spans, repeated and near-duplicate passages."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lean_core.compression.protect import find_protected_spans
from lean_core.compression.types import DroppedSegment

__all__ = ["dedupe_passages", "normalize_whitespace"]

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n(\s*\n)+")


def normalize_whitespace(text: str) -> str:
    """Collapse runs of spaces and blank lines, except inside protected spans (code stays as is)."""
    spans = find_protected_spans(text, kinds=("code_block", "inline_code", "json", "quoted"))
    out: list[str] = []
    position = 0
    for span in [*spans, None]:
        end = span.start if span is not None else len(text)
        chunk = _BLANK_LINES.sub("\n\n", _SPACES.sub(" ", text[position:end]))
        lines = chunk.split("\n")
        # Trailing spaces go only where a line really ends, not before a protected span.
        chunk = "\n".join([line.rstrip() for line in lines[:-1]] + lines[-1:])
        out.append(chunk)
        if span is not None:
            out.append(text[span.start:span.end])
            position = span.end
    return "".join(out).strip()


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
