"""CoarseToFineCompressor: sentence selection first, token-level compression of what is left.

Token-level scoring (llmlingua) costs a forward pass of its scorer over every input token and
runs at a few hundred tokens/s on a CPU; selection (LeanCompressor) runs at thousands. Selecting
down to a few times the target first means the slow stage sees only the promising text, which is
how LongLLMLingua itself is meant to be used (coarse, then fine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any, Literal

from lean_core.compression._checks import (
    check_context,
    check_instance,
    check_protection,
    check_question,
    check_titles,
)
from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter

__all__ = ["METHODS", "CoarseToFineCompressor", "CompressionMethod", "compressor_for"]

CompressionMethod = Literal["lean", "llmlingua", "lean+llmlingua", "llmlingua2"]
METHODS: tuple[CompressionMethod, ...] = ("lean", "llmlingua", "lean+llmlingua", "llmlingua2")
"""Every :data:`CompressionMethod`, for validation messages."""


class CoarseToFineCompressor(Compressor):
    """``coarse`` keeps ``coarse_factor`` x the target, then ``fine`` compresses that to the target.

    Args:
        coarse: the selection stage (default :class:`LeanCompressor`).
        fine: the token-level stage (default :class:`LLMLinguaCompressor` with the bundled scorer).
        coarse_factor: how much more than the final target the coarse stage keeps, in [1, 10];
            1 makes the fine stage a no-op, larger leaves it more to choose from (and more to do).
        token_counter: counts the budget in ``budget.target_model``'s tokenizer.

    Protected spans survive both stages: the coarse one keeps sentences whole, the fine one
    passes spans to llmlingua as uncompressible segments.
    """

    def __init__(self, coarse: Compressor | None = None, fine: Compressor | None = None, *,
                 coarse_factor: float = 2.0, token_counter: TokenCounter | None = None) -> None:
        if isinstance(coarse_factor, bool) or not isinstance(coarse_factor, int | float) \
                or not 1.0 <= coarse_factor <= 10.0:
            raise InvalidParameterError("coarse_factor", allowed="a number in [1, 10]", received=coarse_factor)
        check_instance("coarse", coarse, Compressor, "a Compressor")
        check_instance("fine", fine, Compressor, "a Compressor")
        check_instance("token_counter", token_counter, TokenCounter, "a TokenCounter")
        if coarse is None:
            from lean_core.compression.lean import LeanCompressor

            coarse = LeanCompressor()
        if fine is None:
            from lean_core.compression.llmlingua_backend import LLMLinguaCompressor

            fine = LLMLinguaCompressor()
        self.coarse, self.fine, self.coarse_factor = coarse, fine, float(coarse_factor)
        self.counter = token_counter or TokenCounter()
        self.name = f"{coarse.name}+{fine.name}"

    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """The titles guide the coarse stage; the fine stage sees its output as one text."""
        started = time.perf_counter()
        budget = CompressionBudget.of(budget)
        passages = check_context(context)
        check_titles(titles, len(passages))
        question = check_question(question)
        original = self.counter.count("\n\n".join(p for p in passages if p.strip()), budget.target_model).tokens
        target = budget.tokens_for(original) if original else 0
        wide = min(original, max(target, round(target * self.coarse_factor)))
        if original <= target or not original:  # the coarse stage passes it through and says so
            return self.coarse.compress(context, budget=budget, question=question, titles=titles).model_copy(
                update={"method": self.name})
        first = self.coarse.compress(
            context, budget=CompressionBudget(target_tokens=wide, target_model=budget.target_model), question=question,
            titles=titles)
        second = self.fine.compress(
            first.text, budget=CompressionBudget(target_tokens=target, target_model=budget.target_model),
            question=question)
        notes = [f"{stage.method}: {stage.note}" for stage in (first, second) if stage.note]
        return CompressionResult(
            text=second.text, method=self.name, original_tokens=original,
            compressed_tokens=second.compressed_tokens, target_tokens=target, tokenizer=second.tokenizer,
            estimated_counts=second.estimated_counts, budget_met=second.compressed_tokens <= target,
            protected_spans=max(first.protected_spans, second.protected_spans),
            dropped=first.dropped + second.dropped, seconds=time.perf_counter() - started,
            note="; ".join(notes) or None)


def compressor_for(method: CompressionMethod, *, protect_kinds: Sequence[str] | None = None,
                   protect_patterns: Sequence[str] = (), model_path: str | os.PathLike[str] | None = None,
                   ) -> Compressor:
    """The default compressor of a method name: ``lean`` (sentence selection, fast),
    ``llmlingua`` (token level, slow on CPU), ``lean+llmlingua`` (coarse then fine) or
    ``llmlingua2`` (sentence selection, then LLMLingua-2 token classification from the local
    checkpoint ``model_path``, which that method requires).

    ``protect_kinds`` / ``protect_patterns`` configure protected spans in every stage (see
    :func:`~lean_core.compression.protect.find_protected_spans`; None: all default kinds). No
    I/O: the models load on the compressor's first call."""
    if method not in METHODS:
        raise InvalidParameterError("method", allowed=" | ".join(repr(m) for m in METHODS), received=method)
    from lean_core.compression.protect import DEFAULT_PROTECTED_KINDS

    kinds = DEFAULT_PROTECTED_KINDS if protect_kinds is None else protect_kinds
    check_protection(kinds, protect_patterns)  # named errors here, before any compressor is built
    protect: dict[str, Any] = {"protect_kinds": tuple(kinds), "protect_patterns": tuple(protect_patterns)}
    from lean_core.compression.lean import LeanCompressor
    from lean_core.compression.llmlingua_backend import LLMLinguaCompressor

    if method == "llmlingua2":
        if model_path is None:
            raise InvalidParameterError("model_path", allowed="an LLMLingua-2 checkpoint directory "
                                        "(method='llmlingua2' has no bundled model)", received=None)
        from lean_core.compression.llmlingua2_backend import LLMLingua2Compressor

        return LLMLingua2Compressor(model_path, **protect)
    if method == "lean":
        return LeanCompressor(**protect)
    if method == "llmlingua":
        return LLMLinguaCompressor(**protect)
    return CoarseToFineCompressor(LeanCompressor(**protect), LLMLinguaCompressor(**protect))
