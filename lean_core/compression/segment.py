"""Split a context into passages and sentences without ever cutting through a protected span."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lean_core.compression.protect import ProtectedSpan

__all__ = ["Unit", "passage_heading", "split_clauses", "split_sentences", "tail_points", "trim_points"]

# A sentence ends at . ! ? (optionally closed by quotes/brackets) followed by whitespace and an
# opening character, or at a line break. Candidates inside protected spans are discarded.
_BOUNDARY = re.compile(r"(?<=[.!?。！？])[\"'”’)\]]*\s+(?=[\"'“‘(\[A-Z0-9À-ÖØ-Þ]|[^\x00-\x7F])|\n+")


# "Title: text" or a first line of its own: how RAG passages usually carry their document's title.
_HEADING = re.compile(r"([^.:!?\n]{1,100}?)(?::[ \t]+|[ \t]*\n)")
_MAX_HEADING_WORDS = 12


def passage_heading(text: str) -> str | None:
    """The title a passage opens with ("Title: ..." or a short first line), or None."""
    match = _HEADING.match(text.lstrip())
    if match is None:
        return None
    heading = match.group(1).strip()
    return heading if heading and len(heading.split()) <= _MAX_HEADING_WORDS else None


_ABBREVIATIONS = frozenset({
    "dr", "mr", "mrs", "ms", "prof", "st", "sr", "jr", "vs", "etc", "e.g", "i.e", "no", "inc", "ltd",
    "co", "corp", "fig", "al", "approx", "dept", "est", "gen", "gov", "mt", "ft", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "u.s", "u.k", "vol", "op", "cf",
})
_LAST_WORD = re.compile(r"([\w.]+)\.[\"'”’)\]]*$")


def _after_abbreviation(text: str, end: int) -> bool:
    match = _LAST_WORD.search(text, max(0, end - 20), end)
    if match is None:
        return False
    word = match.group(1).lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())  # initials: "J. K."


@dataclass(frozen=True, slots=True)
class Unit:
    """A sentence (or protected block) of one passage: ``start``/``end`` locate it in that passage;
    ``text`` is that slice (a compressor may shorten whitespace outside protected spans in it)."""

    passage: int
    index: int
    start: int
    end: int
    text: str
    sentence: int = -1
    """Index of the sentence this clause belongs to (clause units only)."""


def split_sentences(text: str, spans: Sequence[ProtectedSpan], *, passage: int = 0) -> list[Unit]:
    """Sentences of ``text`` as verbatim slices; a protected span always lies inside one unit."""
    cuts: list[tuple[int, int]] = []  # (end of unit, start of next)
    span_iter = iter(spans)
    current = next(span_iter, None)
    for match in _BOUNDARY.finditer(text):
        while current is not None and current.end <= match.start():
            current = next(span_iter, None)
        if current is not None and current.start < match.end() and match.start() < current.end:
            continue  # the boundary falls inside a protected span
        if "\n" not in match.group() and _after_abbreviation(text, match.start()):
            continue
        cuts.append((match.start(), match.end()))
    units: list[Unit] = []
    start, first_span = 0, 0
    for end, next_start in [*cuts, (len(text), len(text))]:
        piece = text[start:end]
        while first_span < len(spans) and spans[first_span].end <= start:
            first_span += 1
        if piece.strip():
            inside = []
            k = first_span
            while k < len(spans) and spans[k].start < end:
                inside.append(spans[k])
                k += 1
            # Surrounding whitespace goes, except where a span owns it (an unterminated code block
            # ends with the text's trailing whitespace): a unit never cuts into a span.
            first = start + len(piece) - len(piece.lstrip())
            last = start + len(piece.rstrip())
            if inside:
                first, last = min(first, inside[0].start), max(last, inside[-1].end)
            units.append(Unit(passage, len(units), first, last, text[first:last]))
        start = next_start
    return units


_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+[—–-]\s+|\s+(?=\((?!\d))")
_MIN_CLAUSE_WORDS = 4


def split_clauses(text: str, spans: Sequence[ProtectedSpan], *, passage: int = 0) -> list[Unit]:
    """Sentences further split into clauses (at , ; : and dashes) of at least four words each,
    never inside a protected span; each clause remembers its sentence."""
    units: list[Unit] = []
    for sentence_index, sentence in enumerate(split_sentences(text, spans, passage=passage)):
        cuts = [m for m in _CLAUSE.finditer(text, sentence.start, sentence.end)
                if not any(s.start < m.end() and m.start() < s.end for s in spans)]
        start = sentence.start
        pieces: list[tuple[int, int]] = []
        for match in cuts:
            if len(text[start:match.start()].split()) >= _MIN_CLAUSE_WORDS and \
                    len(text[match.end():sentence.end].split()) >= _MIN_CLAUSE_WORDS:
                pieces.append((start, match.start()))
                start = match.end()
        pieces.append((start, sentence.end))
        for piece_start, piece_end in pieces:
            units.append(Unit(passage, len(units), piece_start, piece_end, text[piece_start:piece_end],
                              sentence=sentence_index))
    return units


_WORD_GAP = re.compile(r"(?<=\S)\s+")


def trim_points(text: str, unit: Unit, spans: Sequence[ProtectedSpan]) -> list[int]:
    """Where ``unit`` (a slice of ``text``) may be cut to keep its head: after each word but the
    last, never inside a protected span; ascending."""
    return [m.start() for m in _WORD_GAP.finditer(text, unit.start, unit.end)
            if unit.start < m.start() and not any(s.start < m.start() < s.end for s in spans)]


def tail_points(text: str, unit: Unit, spans: Sequence[ProtectedSpan]) -> list[int]:
    """Where ``unit`` may be cut to keep its tail: before each word but the first, never inside a
    protected span; descending (the shortest tail first, as ``trim_points`` gives the shortest
    head first)."""
    return [m.end() for m in reversed(list(_WORD_GAP.finditer(text, unit.start, unit.end)))
            if m.end() < unit.end and not any(s.start < m.end() < s.end for s in spans)]
