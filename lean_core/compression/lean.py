"""LeanCompressor: the default compressor — keep the most relevant sentences under a budget.

Coarse to fine in one pass: duplicate passages go first, protected spans are found on the
*original* passages, sentences are cut as slices of them (never through a span) and ranked for
the question (see RelevanceScorer: each sentence carries its passage's strength), then kept
greedily until the budget, counted in the target model's tokens, is full. Whitespace clean-up
(``normalize``) only shortens whitespace runs between spans, so every protected span in the
output is a byte-identical slice of the input; a finer token-level stage (llmlingua) can be
chained after it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from lean_core.compression._checks import (
    check_bool,
    check_context,
    check_instance,
    check_protection,
    check_question,
    check_titles,
)
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.clause_window import Extension, focus_window, window_select
from lean_core.compression.normalize import compact_slice, dedupe_passages
from lean_core.compression.protect import (
    DEFAULT_PROTECTED_KINDS,
    ProtectedSpan,
    find_protected_spans,
)
from lean_core.compression.segment import (
    Unit,
    passage_heading,
    split_clauses,
    split_sentences,
    tail_points,
    trim_points,
)
from lean_core.compression.select import AutoPolicy, RelevanceScorer, passage_bm25, question_terms
from lean_core.compression.types import CompressionBudget, CompressionResult, DroppedSegment
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import SavingsEvent
from lean_core.tokens import TokenCounter

if TYPE_CHECKING:
    from lean_core.ledger import CostLedger

__all__ = ["AutoPolicy", "LeanCompressor", "MissingQuestionError"]

Order = Literal["original", "relevance", "edges"]
Granularity = Literal["auto", "clause", "sentence"]
ClauseSelection = Literal["window", "greedy"]
# "auto": whole sentences when the budget holds at least this many average sentences; clauses
# otherwise (short contexts at high ratios, where one sentence is a large share of the budget).
_AUTO_MIN_SENTENCES_IN_BUDGET = 6
# A fixed ratio is honoured within +-20 %: below this share of the target, whole units left the
# output too small and the next-best unit is added in part (cut between words, outside spans).
_BAND_FLOOR = 1 / 1.2


class MissingQuestionError(InvalidParameterError):
    """A query-aware compressor was called without a question."""

    def __init__(self) -> None:
        super().__init__("question", allowed="a non-empty question (require_question=True)", received=None)


class LeanCompressor(Compressor):
    """Query-aware sentence selection under a token budget.

    Args:
        order: ``original`` keeps document order; ``relevance`` puts the best first; ``edges``
            puts the best at both ends (against "lost in the middle").
        granularity: the smallest unit kept or dropped: ``sentence``, ``clause`` (sentences split
            at , ; : and dashes; reaches high ratios on short contexts) or ``auto`` (sentences when
            the budget holds at least six average sentences, clauses otherwise).
        require_question: raise :class:`MissingQuestionError` without a question (otherwise a
            question-free context falls back to centrality and says so in the result's note).
        normalize: shorten whitespace runs outside protected spans (to their first character, or
            a blank line) in the kept text; spans are always copied byte for byte.
        protect_kinds / protect_patterns: what counts as protected (kept byte for byte or not at
            all, never split): a subset of ``DEFAULT_PROTECTED_KINDS`` and extra regexes.
        ledger: when given, each compression is recorded as a "compression" savings event.
        clause_selection: how clauses of one passage are chosen under a fixed budget: ``window``
            (the best sentence first, a run of its clauses grown rightwards from its best clause;
            see :mod:`lean_core.compression.clause_window`) or ``greedy`` (best clauses first,
            wherever they are: the choice before the window).
    """

    name = "lean"
    supports_auto_budget = True
    """Understands ``CompressionBudget(ratio="auto")`` (see :class:`AutoPolicy`)."""

    def __init__(
        self,
        *,
        scorer: RelevanceScorer | None = None,
        token_counter: TokenCounter | None = None,
        order: Order = "original",
        granularity: Granularity = "auto",
        require_question: bool = False,
        normalize: bool = True,
        dedupe: bool = True,
        protect_kinds: Sequence[str] = DEFAULT_PROTECTED_KINDS,
        protect_patterns: Sequence[str] = (),
        ledger: CostLedger | None = None,
        auto_policy: AutoPolicy | None = None,
        clause_selection: ClauseSelection = "window",
    ) -> None:
        if order not in ("original", "relevance", "edges"):
            raise InvalidParameterError("order", allowed="'original', 'relevance' or 'edges'", received=order)
        if granularity not in ("auto", "clause", "sentence"):
            raise InvalidParameterError("granularity", allowed="'auto', 'clause' or 'sentence'",
                                        received=granularity)
        if clause_selection not in ("window", "greedy"):
            raise InvalidParameterError("clause_selection", allowed="'window' or 'greedy'", received=clause_selection)
        check_instance("scorer", scorer, RelevanceScorer, "a RelevanceScorer")
        check_instance("token_counter", token_counter, TokenCounter, "a TokenCounter")
        if ledger is not None and not callable(getattr(ledger, "record", None)):
            raise InvalidParameterError("ledger", allowed="a CostLedger or None", received=type(ledger).__name__)
        self.protect_kinds, self._patterns = check_protection(protect_kinds, protect_patterns)
        self.protect_patterns = tuple(protect_patterns)
        self.scorer = scorer or RelevanceScorer()
        self.counter = token_counter or TokenCounter()
        self.order: Order = order
        self.granularity: Granularity = granularity
        self.require_question = check_bool("require_question", require_question)
        self.normalize = check_bool("normalize", normalize)
        self.dedupe = check_bool("dedupe", dedupe)
        self.ledger = ledger
        self.auto_policy = auto_policy or AutoPolicy()
        self.clause_selection: ClauseSelection = clause_selection

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """``titles`` (one per passage, e.g. from document metadata) name each passage's subject
        for pronoun-led sentences; a passage without one falls back to the heading it opens with.
        ``budget``: a :class:`CompressionBudget`, or a float in (0, 1] read as its ``ratio``."""
        started = time.perf_counter()
        budget = CompressionBudget.of(budget)
        passages, given_titles = _passages(context, titles)
        question = check_question(question)
        if question is None and self.require_question:
            raise MissingQuestionError()
        model = budget.target_model
        original_text = "\n\n".join(passages)
        original = self.counter.count(original_text, model)
        target = budget.tokens_for(original.tokens) if original.tokens else 0
        base = dict(method=self.name, original_tokens=original.tokens, target_tokens=target,
                    tokenizer=original.tokenizer, estimated_counts=original.estimated)
        if original.tokens <= target and not budget.is_auto:
            return self._done(CompressionResult(text=original_text, compressed_tokens=original.tokens,
                                                budget_met=True, seconds=time.perf_counter() - started,
                                                note="input already within budget", **base), model)
        dropped: list[DroppedSegment] = []
        if self.dedupe and len(passages) > 1:
            keep, removed = dedupe_passages(passages)
            passages, dropped = [passages[i] for i in keep], removed
            given_titles = [given_titles[i] for i in keep]
        # Spans are found on the original passages, before any clean-up: units are slices of the
        # originals, and whitespace clean-up only ever touches the gaps between spans.
        spans_per_passage = [find_protected_spans(p, kinds=self.protect_kinds, patterns=self._patterns)
                             for p in passages]
        protected = sum(len(spans) for spans in spans_per_passage)
        units: list[Unit] = []
        for index, (passage, spans) in enumerate(zip(passages, spans_per_passage, strict=True)):
            units.extend(split_sentences(passage, spans, passage=index))
        granularity = self.granularity
        if budget.is_auto:  # whole sentences: the criterion judges evidence, not a size to hit
            granularity = "sentence"
        elif granularity == "auto" and units:
            mean_sentence = original.tokens / len(units)
            granularity = "sentence" if target >= _AUTO_MIN_SENTENCES_IN_BUDGET * mean_sentence else "clause"
        # Clauses of one passage under a fixed budget are chosen by window (see window_select): it
        # ranks sentences. Several passages keep the greedy choice, whose pieces callers map back
        # to their documents (the window was measured on single-passage SQuAD only).
        windowed = (granularity == "clause" and self.clause_selection == "window" and not budget.is_auto
                    and len(passages) == 1)
        sentences = units if windowed else []
        if granularity == "clause":
            units = [u for index, (passage, spans) in enumerate(zip(passages, spans_per_passage, strict=True))
                     for u in split_clauses(passage, spans, passage=index)]
        if self.normalize:
            units, sentences = ([replace(u, text=compact_slice(passages[u.passage], u.start, u.end,
                                                               spans_per_passage[u.passage])) for u in group]
                                for group in (units, sentences))
        headings = [title or passage_heading(p) for title, p in zip(given_titles, passages, strict=True)]
        # Separators mostly merge into the next token; the exact check below keeps the budget.
        costs = [self.counter.count(u.text, model).tokens for u in units]
        sentence_scores: dict[tuple[int, int], float] = {}
        if windowed:  # the window ranks sentences; clauses are scored only where it anchors
            ranked = self.scorer.score(sentences, question=question, headings=headings)
            sentence_scores = {(s.passage, s.index): v for s, v in zip(sentences, ranked, strict=True)}
            scores = [sentence_scores[(u.passage, u.sentence)] for u in units]
        else:
            scores = self.scorer.score(units, question=question, headings=headings)
        kept = self.auto_policy.keep(units, scores) if budget.is_auto else []
        extend: Extension | None = None
        if kept and sum(costs[i] for i in kept) <= target:
            chosen = set(kept)  # the criterion's choice; ``target`` (auto's ceiling) stays reported
        elif windowed:  # clauses: the best sentences first, each as a run around its best clause
            chosen, extend = window_select(units, scores, sentence_scores, costs, target,
                                           anchor=lambda clauses: self._anchor(units, clauses, question, sentences))
        else:  # a fixed budget, or an auto choice over its ceiling: best units first until full
            chosen = _greedy(scores, costs, target)
        text = self._assemble(passages, units, scores, chosen)
        compressed = self.counter.count(text, model).tokens
        while compressed > target and chosen:  # tokenizer joins can differ from the sum of parts
            chosen.discard(min(chosen, key=lambda i: scores[i]))
            text = self._assemble(passages, units, scores, chosen)
            compressed = self.counter.count(text, model).tokens
        if extend is not None and extend.side == "focus" and question:  # an anchor longer than the room
            units, chosen, text, compressed = self._focus(passages, spans_per_passage, units, scores, chosen,
                                                          (extend.unit,), question, target, model, text, compressed)
        elif extend is not None:  # the clause the run stopped at: its side next to the run
            units, scores, chosen, text, compressed = self._top_up(
                passages, spans_per_passage, units, scores, chosen, target, model, text, compressed,
                extension=replace(extend, side="head" if extend.side == "focus" else extend.side))
        if budget.ratio is not None and not budget.is_auto and compressed < _BAND_FLOOR * target:
            units, scores, chosen, text, compressed = self._top_up(
                passages, spans_per_passage, units, scores, chosen, target, model, text, compressed)
        note = None if question else "no question given: sentences ranked by centrality to the context"
        if not chosen:
            note = (f"no sentence fits in {target} tokens without cutting it (sentences are kept whole "
                    "so protected spans are never altered); returning an empty context")
        dropped.extend(DroppedSegment(kind="sentence", text=u.text, start=u.start)
                       for i, u in enumerate(units) if i not in chosen)
        result = CompressionResult(
            text=text, compressed_tokens=compressed, budget_met=compressed <= target, protected_spans=protected,
            dropped=tuple(dropped), seconds=time.perf_counter() - started, note=note, **base)
        return self._done(result, model)

    @staticmethod
    def _anchor(units: list[Unit], clauses: list[int], question: str | None, sentences: list[Unit]) -> int:
        """The clause of one sentence the window starts from: the one holding the question's
        rarest words (BM25 with idf over the passage's sentences; the first on ties). Ranked within
        its sentence only, a word the question shares with every sentence (the passage's topic,
        "HT does not engage ...") outweighed the one word that locates the answer ("... works to
        take power through ..."): SQuAD dev answers kept at 5x, 65 -> 66 of 78 (3x: 73 either way).
        Lexical only: the scorer's semantic part is one embedding per sentence, the same for all
        of its clauses, so this needs no model call."""
        if not question:
            return clauses[0]
        passage = units[clauses[0]].passage
        own = passage_bm25(question, [units[i].text for i in clauses],
                           [s.text for s in sentences if s.passage == passage])
        return clauses[max(range(len(clauses)), key=own.__getitem__)]

    def _top_up(self, passages: list[str], spans_per_passage: list[list[ProtectedSpan]], units: list[Unit],
                scores: list[float], chosen: set[int], target: int, model: str, text: str,
                compressed: int, *, extension: Extension | None = None,
                ) -> tuple[list[Unit], list[float], set[int], str, int]:
        """Whole units left the output below the band: add the head of the best unit left out (or
        the ``extension``'s side of its unit), cut between words (never inside a protected span),
        as much of it as the target allows."""
        left = ([(extension.unit, extension.side)] if extension else
                [(i, "head") for i in sorted((i for i in range(len(units)) if i not in chosen),
                                             key=lambda i: -scores[i])[:3]])
        for i, side in left:
            unit = units[i]
            passage = passages[unit.passage]
            cuts = (trim_points if side == "head" else tail_points)(passage, unit, spans_per_passage[unit.passage])
            best: tuple[Unit, str, int] | None = None
            low, high = 0, len(cuts) - 1
            while low <= high:  # the longest head (tail) that still fits
                mid = (low + high) // 2
                start, end = (unit.start, cuts[mid]) if side == "head" else (cuts[mid], unit.end)
                head = replace(unit, start=start, end=end, text=passage[start:end])
                if self.normalize:
                    head = replace(head, text=compact_slice(passages[unit.passage], head.start, head.end,
                                                            spans_per_passage[unit.passage]))
                trial = [*units[:i], head, *units[i + 1:]]
                candidate = self._assemble(passages, trial, scores, chosen | {i})
                tokens = self.counter.count(candidate, model).tokens
                if tokens <= target:
                    best, low = (head, candidate, tokens), mid + 1
                else:
                    high = mid - 1
            if best is not None and best[2] > compressed:
                head, text, compressed = best
                units = [*units[:i], head, *units[i + 1:]]
                chosen = chosen | {i}
            if compressed >= _BAND_FLOOR * target:
                break
        return units, scores, chosen, text, compressed

    def _focus(self, passages: list[str], spans_per_passage: list[list[ProtectedSpan]], units: list[Unit],
               scores: list[float], chosen: set[int], span: tuple[int, ...], question: str, target: int, model: str,
               text: str, compressed: int) -> tuple[list[Unit], set[int], str, int]:
        """Add the stretch of the consecutive ``units[span]`` (clauses of one sentence) that fits
        and holds the most question words; clauses it cuts are replaced by their covered part."""
        first, last = units[span[0]], units[span[-1]]
        passage, spans = passages[first.passage], spans_per_passage[first.passage]
        whole = replace(first, end=last.end, text=passage[first.start:last.end])

        def pieces(start: int, end: int) -> tuple[list[Unit], set[int]]:
            trial, covered = list(units), set()
            for k in span:
                a, b = max(units[k].start, start), min(units[k].end, end)
                if a < b:
                    piece = compact_slice(passage, a, b, spans) if self.normalize else passage[a:b]
                    trial[k] = replace(units[k], start=a, end=b, text=piece)
                    covered.add(k)
            return trial, covered

        def assembled(start: int, end: int) -> str:
            trial, covered = pieces(start, end)
            return self._assemble(passages, trial, scores, chosen | covered)

        window = focus_window(passage, whole, spans, set(question_terms(question)),
                              lambda a, b: self.counter.count(assembled(a, b), model).tokens <= target,
                              question_terms)
        if window is None:
            return units, chosen, text, compressed
        trial, covered = pieces(*window)
        candidate = self._assemble(passages, trial, scores, chosen | covered)
        return trial, chosen | covered, candidate, self.counter.count(candidate, model).tokens

    def _assemble(self, passages: list[str], units: list[Unit], scores: list[float], chosen: set[int]) -> str:
        by_passage: dict[int, list[int]] = {}
        for i in sorted(chosen):
            by_passage.setdefault(units[i].passage, []).append(i)

        def joined(indices: list[int]) -> str:
            parts = [units[indices[0]].text]
            for prev, cur in pairwise(indices):
                a, b = units[prev], units[cur]
                # Adjacent pieces of one sentence keep their own separator (", " or "; ").
                adjacent = cur == prev + 1 and a.sentence == b.sentence and a.sentence >= 0
                gap = passages[a.passage][a.end:b.start]
                parts.append((compact_slice(gap, 0, len(gap), ()) if self.normalize else gap) if adjacent else " ")
                parts.append(b.text)
            return "".join(parts)

        order = list(by_passage)
        if self.order != "original":
            order.sort(key=lambda p: -max(scores[i] for i in by_passage[p]))
            if self.order == "edges":  # best first and last, weakest in the middle
                order = order[::2] + order[1::2][::-1]
        return "\n\n".join(joined(by_passage[p]) for p in order)

    def _done(self, result: CompressionResult, model: str) -> CompressionResult:
        if self.ledger is not None:
            self.ledger.record(SavingsEvent(layer="compression", model=model,
                                            input_tokens_before=result.original_tokens,
                                            input_tokens_after=result.compressed_tokens))
        return result


def _passages(context: ContextInput, titles: Sequence[str | None] | None) -> tuple[list[str], list[str | None]]:
    """The non-empty passages and the title given for each (None where none was given)."""
    items = check_context(context)
    given = check_titles(titles, len(items))
    kept = [(p, t) for p, t in zip(items, given, strict=True) if p.strip()]
    return ([p for p, _ in kept], [t for _, t in kept]) if kept else ([""], [None])


def _greedy(scores: list[float], costs: list[int], target: int) -> set[int]:
    chosen: set[int] = set()
    total = 0
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if total + costs[i] <= target:
            chosen.add(i)
            total += costs[i]
    return chosen
