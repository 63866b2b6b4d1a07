"""Protected spans through llmlingua: tag them ``compress=False``, check them afterwards.

llmlingua's structured input (``<llmlingua, compress=False>...</llmlingua>`` segments) keeps such
segments whole when their passage is kept. Its tag parser stops at the first ``<`` of a segment's
content, so ``<`` is swapped for a private-use character on the way in and back on the way out.
A span carries the whitespace and punctuation before it, so that when the free text between two
spans is dropped they do not fuse ("1,600 mm (5" never becomes "1,6005").
"""

from __future__ import annotations

from collections.abc import Sequence

from lean_core.compression.protect import ProtectedSpan

__all__ = ["ANGLE_STANDINS", "locate_spans", "pick_standin", "tag_passage"]

# Private-use code points: none is meaningful text, so one absent from the input stands in for "<".
ANGLE_STANDINS = tuple(chr(code) for code in range(0xE000, 0xE100))


def pick_standin(texts: Sequence[str]) -> str | None:
    """A stand-in for ``<`` that occurs in none of ``texts`` (None if all 256 do)."""
    return next((c for c in ANGLE_STANDINS if not any(c in t for t in texts)), None)


def tag_passage(text: str, spans: Sequence[ProtectedSpan], standin: str) -> str:
    """``text`` as llmlingua structured segments: free text compressible, spans kept verbatim."""
    def escaped(piece: str) -> str:
        return piece.replace("<", standin)

    parts: list[str] = []
    position = 0
    for span in spans:
        start = span.start
        while start > position and not text[start - 1].isalnum():
            start -= 1
        if start > position:
            parts.append(f"<llmlingua>{escaped(text[position:start])}</llmlingua>")
        parts.append(f"<llmlingua, compress=False>{escaped(text[start:span.end])}</llmlingua>")
        position = span.end
    if position < len(text):
        parts.append(f"<llmlingua>{escaped(text[position:])}</llmlingua>")
    return "".join(parts)


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
