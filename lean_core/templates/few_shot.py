"""Few-shot examples chosen by relevance to the request, under a token budget.

Behaviour when the pool is larger than the budget (documented, not an error): examples are ranked
by relevance to the request (ties keep pool order), then taken greedily, most relevant first;
an example that does not fit the remaining budget is skipped and smaller, less relevant ones may
still fit. What is left out is counted in :attr:`ExampleSelection.dropped`. Only an invalid budget
(not an integer >= 1) is an error.

Relevance is lexical (BM25 over the example inputs, no model, microseconds) by default, or MiniLM
cosine similarity (``relevance="embedding"``, loads the bundled model on first use; paraphrases
rank better, costs ~7 ms per request on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.templates.spec import FewShotExample
from lean_core.tokens import TokenCounter

if TYPE_CHECKING:
    from lean_core.embeddings import Embedder

__all__ = ["ExampleSelection", "Relevance", "format_examples", "select_examples"]

Relevance = Literal["lexical", "embedding"]
_RELEVANCE = ("lexical", "embedding")
_SEPARATOR = "\n\n"


class ExampleSelection(BaseModel):
    """The pool examples chosen for one request."""

    model_config = ConfigDict(frozen=True)

    selected: tuple[FewShotExample, ...]
    """In prompt order: the most relevant last, nearest the request."""
    dropped: int
    """Pool examples left out (they did not fit the budget or ``max_examples``)."""
    tokens: int
    """Tokens of the selected examples as rendered (:func:`format_examples`)."""
    budget_tokens: int | None
    relevance: Relevance


def format_examples(examples: Sequence[FewShotExample]) -> str:
    """Examples as compact ``Input:``/``Output:`` pairs separated by a blank line."""
    return _SEPARATOR.join(f"Input: {e.input}\nOutput: {e.output}" for e in examples)


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidParameterError(name, allowed="an integer >= 1 or None", received=value)


def _scores(pool: Sequence[FewShotExample], query: str, relevance: Relevance,
            embedder: Embedder | None) -> list[float]:
    if not query.strip():
        return [0.0] * len(pool)
    if relevance == "lexical":
        # The compression layer's BM25: one definition of lexical relevance in the project.
        from lean_core.compression.select import _bm25, _terms

        return _bm25(_terms(query), [_terms(e.input) for e in pool])
    from lean_core.embeddings import default_embedder

    vectors = (embedder or default_embedder()).encode([query, *(e.input for e in pool)])
    return [float(v) for v in vectors[1:] @ vectors[0]]


def select_examples(pool: Sequence[FewShotExample], query: str, *, model: str,
                    budget_tokens: int | None = None, max_examples: int | None = None,
                    relevance: Relevance = "lexical", counter: TokenCounter | None = None,
                    embedder: Embedder | None = None) -> ExampleSelection:
    """The most relevant examples of ``pool`` for ``query`` that fit ``budget_tokens``.

    ``budget_tokens`` counts in ``model``'s tokenizer (None: no cap); ``max_examples`` caps the
    number (None: no cap). See the module docstring for what happens when the pool does not fit.
    """
    _check_limit("budget_tokens", budget_tokens)
    _check_limit("max_examples", max_examples)
    if relevance not in _RELEVANCE:
        raise InvalidParameterError("relevance", allowed=" | ".join(_RELEVANCE), received=relevance)
    counter = counter or TokenCounter()
    scores = _scores(pool, query, relevance, embedder) if pool else []
    ranked = sorted(range(len(pool)), key=lambda i: (-scores[i], i))
    separator = counter.count(_SEPARATOR, model).tokens
    chosen: list[int] = []
    used = 0
    for i in ranked:
        if max_examples is not None and len(chosen) >= max_examples:
            break
        cost = counter.count(format_examples([pool[i]]), model).tokens + (separator if chosen else 0)
        if budget_tokens is not None and used + cost > budget_tokens:
            continue  # a smaller, less relevant example may still fit
        chosen.append(i)
        used += cost
    # Tokens can merge across the separator, so the joined text is counted once more; the least
    # relevant example goes until it fits (rarely needed, and it keeps the budget a hard cap).
    text_tokens = counter.count(format_examples([pool[i] for i in chosen]), model).tokens if chosen else 0
    while budget_tokens is not None and chosen and text_tokens > budget_tokens:
        chosen.pop()
        text_tokens = counter.count(format_examples([pool[i] for i in chosen]), model).tokens if chosen else 0
    selected = tuple(pool[i] for i in reversed(chosen))  # most relevant last
    return ExampleSelection(selected=selected, dropped=len(pool) - len(selected), tokens=text_tokens,
                            budget_tokens=budget_tokens, relevance=relevance)
