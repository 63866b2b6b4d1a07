"""LeanCompressor: the default compressor — normalise, then keep the most relevant sentences.

Coarse to fine in one pass: whitespace and duplicate passages go first (lossless), then sentences
are ranked for the question (see RelevanceScorer: each sentence carries its passage's strength)
and kept greedily until the budget, counted in the target model's tokens, is full. Sentences are
kept verbatim, so protected spans are never altered; a finer token-level stage (llmlingua) can be
chained after it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.normalize import dedupe_passages, normalize_whitespace
from lean_core.compression.protect import DEFAULT_PROTECTED_KINDS, find_protected_spans
from lean_core.compression.segment import Unit, passage_heading, split_clauses, split_sentences
from lean_core.compression.select import RelevanceScorer
from lean_core.compression.types import CompressionBudget, CompressionResult, DroppedSegment
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import SavingsEvent
from lean_core.tokens import TokenCounter

if TYPE_CHECKING:
    from lean_core.ledger import CostLedger

__all__ = ["LeanCompressor", "MissingQuestionError"]

Order = Literal["original", "relevance", "edges"]
Granularity = Literal["auto", "clause", "sentence"]
# "auto": whole sentences when the budget holds at least this many average sentences; clauses
# otherwise (short contexts at high ratios, where one sentence is a large share of the budget).
_AUTO_MIN_SENTENCES_IN_BUDGET = 6


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
        protect_kinds / protect_patterns: what counts as protected (kept verbatim, never split).
        ledger: when given, each compression is recorded as a "compression" savings event.
    """

    name = "lean"

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
    ) -> None:
        if order not in ("original", "relevance", "edges"):
            raise InvalidParameterError("order", allowed="'original', 'relevance' or 'edges'", received=order)
        self.scorer = scorer or RelevanceScorer()
        self.counter = token_counter or TokenCounter()
        self.order: Order = order
        if granularity not in ("auto", "clause", "sentence"):
            raise InvalidParameterError("granularity", allowed="'auto', 'clause' or 'sentence'",
                                        received=granularity)
        self.granularity: Granularity = granularity
        self.require_question = require_question
        self.normalize = normalize
        self.dedupe = dedupe
        self.protect_kinds = tuple(protect_kinds)
        self.protect_patterns = tuple(protect_patterns)
        self.ledger = ledger

    def compress(self, context: ContextInput, *, budget: CompressionBudget,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """``titles`` (one per passage, e.g. from document metadata) name each passage's subject
        for pronoun-led sentences; a passage without one falls back to the heading it opens with."""
        started = time.perf_counter()
        passages, given_titles = _passages(context, titles)
        question = question.strip() if isinstance(question, str) and question.strip() else None
        if question is None and self.require_question:
            raise MissingQuestionError()
        model = budget.target_model
        original_text = "\n\n".join(passages)
        original = self.counter.count(original_text, model)
        target = budget.tokens_for(original.tokens) if original.tokens else 0
        base = dict(method=self.name, original_tokens=original.tokens, target_tokens=target,
                    tokenizer=original.tokenizer, estimated_counts=original.estimated)
        if original.tokens <= target:
            return self._done(CompressionResult(text=original_text, compressed_tokens=original.tokens,
                                                budget_met=True, seconds=time.perf_counter() - started,
                                                note="input already within budget", **base), model)
        dropped: list[DroppedSegment] = []
        if self.normalize:
            passages = [normalize_whitespace(p) for p in passages]
        if self.dedupe and len(passages) > 1:
            keep, removed = dedupe_passages(passages)
            passages, dropped = [passages[i] for i in keep], removed
            given_titles = [given_titles[i] for i in keep]
        spans_per_passage = [find_protected_spans(p, kinds=self.protect_kinds, patterns=self.protect_patterns)
                             for p in passages]
        protected = sum(len(spans) for spans in spans_per_passage)
        units: list[Unit] = []
        for index, (passage, spans) in enumerate(zip(passages, spans_per_passage, strict=True)):
            units.extend(split_sentences(passage, spans, passage=index))
        granularity = self.granularity
        if granularity == "auto" and units:
            mean_sentence = original.tokens / len(units)
            granularity = "sentence" if target >= _AUTO_MIN_SENTENCES_IN_BUDGET * mean_sentence else "clause"
        if granularity == "clause":
            units = [u for index, (passage, spans) in enumerate(zip(passages, spans_per_passage, strict=True))
                     for u in split_clauses(passage, spans, passage=index)]
        headings = [title or passage_heading(p) for title, p in zip(given_titles, passages, strict=True)]
        scores = self.scorer.score(units, question=question, headings=headings)
        # Separators mostly merge into the next token; the exact check below keeps the budget.
        costs = [self.counter.count(u.text, model).tokens for u in units]
        chosen = _greedy(scores, costs, target)
        text = self._assemble(passages, units, scores, chosen)
        compressed = self.counter.count(text, model).tokens
        while compressed > target and chosen:  # tokenizer joins can differ from the sum of parts
            chosen.discard(min(chosen, key=lambda i: scores[i]))
            text = self._assemble(passages, units, scores, chosen)
            compressed = self.counter.count(text, model).tokens
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
                parts.append(passages[a.passage][a.end:b.start] if adjacent else " ")
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
    if isinstance(context, bytes | bytearray):
        raise InvalidParameterError("context", allowed="text (str) or a list of str; decode bytes first",
                                    received=f"{type(context).__name__} of {len(context)} bytes")
    items = [context] if isinstance(context, str) else list(context)
    if titles is None:
        given: list[str | None] = [None] * len(items)
    else:
        if isinstance(titles, str) or len(titles) != len(items):
            raise InvalidParameterError(
                "titles", allowed=f"one title (str or None) per passage: {len(items)}",
                received=repr(titles) if isinstance(titles, str) else f"{len(titles)} titles")
        bad = [t for t in titles if t is not None and not isinstance(t, str)]
        if bad:
            raise InvalidParameterError("titles", allowed="str or None per passage", received=type(bad[0]).__name__)
        given = [(t.strip() or None) if isinstance(t, str) else None for t in titles]
    for item in items:
        if not isinstance(item, str):
            raise InvalidParameterError("context", allowed="str passages", received=type(item).__name__)
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidParameterError("context", allowed="valid Unicode text (no lone surrogates)",
                                        received=f"invalid character at {exc.start}") from exc
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
