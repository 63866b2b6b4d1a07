"""Clause selection by window: the best sentence first, then a contiguous run of its clauses.

At high ratios on a short context the budget holds a sentence or two, and the compressor keeps
clauses. Ranked on their own, clauses are noisy: a question restates part of the answer's
sentence, and the answer often sits in the clause *next to* the restated words ("As it
approaches the Dutch border, | the Rhine discharges 2,290 m3/s"), which shares no words with the
question. Sentence-level ranking is reliable, so the choice is made at that level: sentences are
taken best first; one that does not fit whole is entered at its best clause (the anchor, where
the question's words are) and grown clause by clause, rightwards first, so the answer next to
the anchor comes along and the kept text reads as one contiguous piece. Where the next clause
does not fit, the part of it next to the run fills the room left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from lean_core.compression.protect import ProtectedSpan
from lean_core.compression.segment import Unit, tail_points, trim_points

__all__ = ["Extension", "focus_window", "window_select"]


@dataclass(frozen=True, slots=True)
class Extension:
    """Part of one clause to add to a selection: as much of its ``side`` as the budget allows."""

    unit: int
    side: Literal["head", "tail", "focus"]
    """``head``/``tail``: the side next to the kept run; ``focus``: the stretch of the clause that
    holds most of the question's words (see :func:`focus_window`)."""


def window_select(units: Sequence[Unit], scores: Sequence[float], sentence_scores: dict[tuple[int, int], float],
                  costs: Sequence[int], target: int, *,
                  anchor: Callable[[list[int]], int] | None = None) -> tuple[set[int], Extension | None]:
    """The indices of the clause ``units`` kept within ``target`` tokens (by the sum of
    ``costs``), and the clause part that should fill the room left (None: none).

    ``sentence_scores`` maps (passage, sentence index) to the sentence's relevance; a unit whose
    ``sentence`` is negative (not a clause of a sentence) forms a sentence of its own. When a run
    stops inside its sentence because the clause next to it does not fit, selection stops there:
    the part of that clause next to the run (its head after the run, its tail before it) is worth
    more than an unrelated sentence, as the answer to a restated question sits next to the
    restatement; an anchor that opens with a parenthesis (an appositive) takes its left side first.
    An anchor too long for the room is cut around the question's words (``focus``).
    ``anchor`` (clause indices of one sentence -> the anchor's index) picks the anchor of the one
    sentence entered in part; without it, the clause of best ``scores``.
    """
    members: dict[tuple[int, int], list[int]] = {}
    for i, unit in enumerate(units):
        key = (unit.passage, unit.sentence) if unit.sentence >= 0 else (unit.passage, -1 - i)
        members.setdefault(key, []).append(i)

    def rank(key: tuple[int, int]) -> float:
        # A unit of its own (no sentence score) ranks by its own score.
        return sentence_scores.get(key, max(scores[i] for i in members[key]))

    chosen: set[int] = set()
    room = target
    for key in sorted(members, key=lambda k: -rank(k)):
        clauses = members[key]
        whole = sum(costs[i] for i in clauses)
        if whole <= room:
            chosen.update(clauses)
            room -= whole
            continue
        if anchor is None or len(clauses) == 1:
            low = high = max(range(len(clauses)), key=lambda k: scores[clauses[k]])
        else:  # the caller ranks this sentence's clauses (only the one sentence entered in part)
            low = high = clauses.index(anchor(clauses))
        if costs[clauses[low]] > room:
            return chosen, Extension(clauses[low], "focus")
        room -= costs[clauses[low]]
        while True:  # grow the run rightwards, then leftwards once at the sentence's end
            sides = [k for k in (low - 1, high + 1) if 0 <= k < len(clauses)]
            if not sides:
                break
            # Given before new: what follows the restated words is more often the answer than
            # what precedes them (on the SQuAD dev half, choosing the better-scoring neighbour
            # instead kept 60 of 78 answers at 5x, against 63 this way).
            step = sides[-1]
            if low == high and len(sides) == 2 and units[clauses[low]].text.startswith("("):
                # A parenthesis describes the words before it ("the site of the Chicago Pile-1 |
                # (the first self-sustained nuclear reaction, ..."): what the question restates
                # from it is named on its left, so that side is taken first (SQuAD dev answers
                # kept at 5x: 65 -> 66 of 78).
                step = sides[0]
            if costs[clauses[step]] > room:
                chosen.update(clauses[low:high + 1])
                return chosen, Extension(clauses[step], "head" if step > high else "tail")
            room -= costs[clauses[step]]
            low, high = min(low, step), max(high, step)
        chosen.update(clauses[low:high + 1])
    return chosen, None


def focus_window(text: str, unit: Unit, spans: Sequence[ProtectedSpan], terms: set[str],
                 fits: Callable[[int, int], bool], words: Callable[[str], list[str]]) -> tuple[int, int] | None:
    """The (start, end) slice of ``unit`` in ``text``, cut between words outside ``spans``, that
    ``fits`` and holds the most distinct question ``terms`` (as ``words`` splits text); on ties
    the one reaching furthest right, then the longest; None when no slice fits.

    A clause longer than the whole room is cut around the question's words rather than at its
    head: the answer sits next to the words the question restates, wherever they are, and more
    often after them than before, so of slices holding as many of them the one that ends latest
    wins (the longest first, as before, kept 62 of 78 SQuAD dev answers at 5x; this, 64).
    """
    starts = [unit.start, *reversed(tail_points(text, unit, spans))]
    ends = [*trim_points(text, unit, spans), unit.end]
    best: tuple[int, int, int, int] | None = None  # (terms, end, length, start)
    for start in starts:
        low, high, found = 0, len(ends) - 1, None
        while low <= high:  # the longest slice from ``start`` that fits
            mid = (low + high) // 2
            if ends[mid] > start and fits(start, ends[mid]):
                found, low = ends[mid], mid + 1
            elif ends[mid] <= start:
                low = mid + 1
            else:
                high = mid - 1
        if found is None:
            continue
        key = (len(terms & set(words(text[start:found]))), found, found - start, start)
        if best is None or key > best:
            best = key
    return (best[3], best[1]) if best else None
