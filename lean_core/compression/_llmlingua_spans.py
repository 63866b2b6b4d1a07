"""Protected spans through llmlingua: tag them ``compress=False``, put the originals back after.

llmlingua's structured input (``<llmlingua, compress=False>...</llmlingua>`` segments) keeps such
segments when their passage is kept, but not necessarily byte for byte: it re-decodes every
context through its tokenizer (which may respace, e.g. " ," -> ","), and its tag parser stops at
the first ``<`` of a segment (so ``<`` is swapped for a private-use stand-in on the way in).

So each span goes in between two private-use markers, and what comes out between them is only a
witness: :func:`restore_spans` replaces it with the original span, byte for byte, when it is that
span up to whitespace, and removes it otherwise. A marker left without its partner (a token cut
at a segment edge) takes the free text on its span's side with it, so an altered span never
survives unmarked.
A span carries the whitespace and punctuation before it, so that when the free text between two
spans is dropped they do not fuse ("1,600 mm (5" never becomes "1,6005").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lean_core.compression.protect import ProtectedSpan

__all__ = ["ANGLE_STANDINS", "MARKER_CHARACTERS", "Markers", "locate_spans", "pick_ascii_markers", "pick_markers", "pick_standin", "restore_spans",
           "tag_passage"]

# Private-use code points: none is meaningful text, so one absent from the input stands in for "<".
ANGLE_STANDINS = tuple(chr(code) for code in range(0xE000, 0xE100))
# Span markers are ASCII control characters (not whitespace, not in ordinary text): one byte, so
# one byte-level token that decodes to exactly that character. llmlingua aligns segments by the
# decoded length of 3-token windows; a multi-byte marker split over byte tokens breaks that
# alignment (IndexError in token_segment, seen with private-use markers).
MARKER_CHARACTERS = tuple(chr(code) for code in [*range(0x01, 0x09), *range(0x0E, 0x1C)])
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Markers:
    """Characters absent from the input: ``angle`` stands in for ``<``; ``open``/``close`` (ASCII
    control characters) wrap a span."""

    angle: str
    open: str
    close: str


def pick_standin(texts: Sequence[str]) -> str | None:
    """A stand-in for ``<`` that occurs in none of ``texts`` (None if all 256 do)."""
    return next((c for c in ANGLE_STANDINS if not any(c in t for t in texts)), None)


def pick_markers(texts: Sequence[str]) -> Markers | None:
    """Three distinct private-use characters that occur in none of ``texts`` (None if fewer remain)."""
    free = [c for c in ANGLE_STANDINS if not any(c in t for t in texts)][:3]
    return Markers(*free) if len(free) == 3 else None


def pick_ascii_markers(texts: Sequence[str]) -> Markers | None:
    """For byte-level tokenizers (LongLLMLingua's causal scorers): a private-use stand-in for
    ``<`` and two ASCII control characters as span markers, none in ``texts`` (None if none free)."""
    angle = pick_standin(texts)
    free = [c for c in MARKER_CHARACTERS if not any(c in t for t in texts)][:2]
    return Markers(angle, *free) if angle is not None and len(free) == 2 else None


def tag_passage(text: str, spans: Sequence[ProtectedSpan], markers: Markers) -> str:
    """``text`` as llmlingua structured segments: free text compressible, spans kept and marked."""
    def escaped(piece: str) -> str:
        return piece.replace("<", markers.angle)

    parts: list[str] = []
    position = 0
    for span in spans:
        start = span.start
        while start > position and not text[start - 1].isalnum():
            start -= 1
        if start > position:
            parts.append(f"<llmlingua>{escaped(text[position:start])}</llmlingua>")
        parts.append(f"<llmlingua, compress=False>{escaped(text[start:span.start])}{markers.open}"
                     f"{escaped(text[span.start:span.end])}{markers.close}</llmlingua>")
        position = span.end
    if position < len(text):
        parts.append(f"<llmlingua>{escaped(text[position:])}</llmlingua>")
    return "".join(parts)


def _without_stray_markers(piece: str, markers: Markers) -> str:
    """Free text (between restored spans) with every unpaired marker removed together with the
    text on its span's side: an opening marker takes the rest of the piece, a closing one all
    before it. Drastic, but a span whose witness cannot be delimited must not survive altered
    (a code block runs over lines, so no shorter cut is safe); llmlingua keeps ``compress=False``
    segments whole, so this is the rare path."""
    closed = piece.rfind(markers.close)
    if closed >= 0:
        piece = piece[closed + 1:]
    opened = piece.find(markers.open)
    return piece[:opened] if opened >= 0 else piece


def restore_spans(text: str, span_texts: Sequence[str], markers: Markers) -> tuple[str, list[tuple[int, int]]]:
    """llmlingua's output with every marked span replaced by its original (``span_texts``, in
    input order) or removed, the markers gone and ``<`` restored in the free text.

    Returns the text, stripped without cutting into a span, and where the restored spans sit.
    Passages may come back reordered or dropped: a witness is matched to the first unused span,
    searching onwards from the last match and then from the start.
    """
    pair = re.compile(f"{re.escape(markers.open)}([^{re.escape(markers.open + markers.close)}]*)"
                      f"{re.escape(markers.close)}")
    keys = [_SPACE.sub("", s) for s in span_texts]
    used = [False] * len(span_texts)
    cursor = 0
    pieces: list[tuple[str, bool]] = []  # (text, is a restored span)
    position = 0
    for match in pair.finditer(text):
        pieces.append((_without_stray_markers(text[position:match.start()], markers), False))
        witness = _SPACE.sub("", match.group(1).replace(markers.angle, "<"))
        order = [*range(cursor, len(keys)), *range(cursor)]
        found = next((i for i in order if not used[i] and keys[i] == witness), None)
        if found is not None:  # the original, byte for byte; an altered span is left out
            used[found] = True
            cursor = found + 1
            pieces.append((span_texts[found], True))
        position = match.end()
    pieces.append((_without_stray_markers(text[position:], markers), False))
    pieces = [(p if is_span else p.replace(markers.angle, "<"), is_span) for p, is_span in pieces]
    # Strip the ends, but never into a span (an unterminated code block may end in whitespace).
    spans_at = [i for i, (p, is_span) in enumerate(pieces) if is_span and p]
    first_span, last_span = (spans_at[0], spans_at[-1]) if spans_at else (len(pieces), -1)
    for i in range(len(pieces)):
        if i >= first_span or pieces[i][0].strip():
            if i < first_span:
                pieces[i] = (pieces[i][0].lstrip(), False)
            break
        pieces[i] = ("", False)
    for i in range(len(pieces) - 1, -1, -1):
        if i <= last_span or pieces[i][0].strip():
            if i > last_span:
                pieces[i] = (pieces[i][0].rstrip(), False)
            break
        pieces[i] = ("", False)
    out: list[str] = []
    located: list[tuple[int, int]] = []
    length = 0
    for piece, is_span in pieces:
        if is_span:
            located.append((length, length + len(piece)))
        out.append(piece)
        length += len(piece)
    return "".join(out), located


def locate_spans(text: str, span_texts: Sequence[str]) -> list[tuple[int, int]]:
    """Where the surviving spans sit in ``text``, searched in order (spans of passages llmlingua
    dropped are absent); a trim must not cut inside one."""
    found: list[tuple[int, int]] = []
    position = 0
    for span in span_texts:
        at = text.find(span, position)
        if at < 0:
            continue
        found.append((at, at + len(span)))
        position = at + len(span)
    return found
