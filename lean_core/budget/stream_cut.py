"""StreamCut: follow one streamed, budgeted request, and end it at the budget when needed.

A model class whose budget parameter is unknown gets the generic ``max_tokens`` keyword, which it
may ignore; its stream is then cut here, by counting the text in the model's tokenizer. Both
adapters' stream loops feed it the text deltas (and whatever finish reason, early-stop reason
and usage the chunks report) and stop when :attr:`StreamCut.done`:

    cut = StreamCut(max_tokens=request.max_tokens, model=model, enforce=not parameter_known)
    for chunk in stream:
        shown = cut.take(delta_of(chunk), finish_reason=..., early_stop=...)
        if cut.done:
            break
        ...                                  # pass ``shown`` on to the caller
    request = session.on_answer(cut.answer(reported_tokens=..., raw=...))
"""

from __future__ import annotations

from typing import Any

from lean_core.budget.early_stop import EarlyStopReason
from lean_core.budget.session import ModelAnswer
from lean_core.errors import InvalidParameterError
from lean_core.tokens import TokenCounter, count_tokens

__all__ = ["StreamCut"]


class StreamCut:
    """The text, finish reason and early-stop reason of one streamed request, cut at its budget.

    Args:
        max_tokens: the request's output budget in ``model``'s tokens (>= 1).
        model: the model whose tokenizer counts the text (see ``lean_core.tokens``).
        enforce: count tokens and end the stream at the budget (for a model class that may ignore
            the bound parameter); False only joins the deltas.
        counter: the token counter (default the shared one).
    """

    def __init__(self, *, max_tokens: int, model: str, enforce: bool, counter: TokenCounter | None = None) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise InvalidParameterError("max_tokens", allowed="an int >= 1", received=max_tokens)
        self.max_tokens = max_tokens
        self.model = model
        self.enforce = enforce
        self._counter = counter
        self.text = ""
        """The text shown so far (the delta that would pass the budget is not part of it)."""
        self.finish_reason: str | None = None
        """The last finish reason a chunk reported."""
        self.early_stop: EarlyStopReason | None = None
        """The last early-stop reason a chunk reported (the local vLLM model's)."""
        self.cut = False
        """True when this class ended the stream at the budget."""

    @property
    def done(self) -> bool:
        """True once the stream must end (it was cut at the budget)."""
        return self.cut

    def take(self, delta: str, *, finish_reason: str | None = None, early_stop: Any = None) -> str | None:
        """Follow one chunk: its text ``delta`` and what it reports. Returns the delta to show,
        or None when it is empty or would pass the budget (then :attr:`done` is True)."""
        self.finish_reason = finish_reason or self.finish_reason
        self.early_stop = early_stop or self.early_stop
        # Trailing whitespace joins the next word's token, so it is not counted yet.
        if self.enforce and delta and self._count((self.text + delta).rstrip()) > self.max_tokens:
            self.cut = True  # the chunk that would pass the budget is not shown
            return None
        self.text += delta
        return delta or None

    def output_tokens(self, reported: int | None = None) -> int:
        """The answer's tokens: what the provider ``reported``, unless the stream was cut (the
        provider then never reports) or nothing was reported; else the text, counted."""
        if reported is not None and not self.cut:
            return int(reported)
        return self._count(self.text)

    def answer(self, *, reported_tokens: int | None = None, raw: Any = None) -> ModelAnswer:
        """The request's answer for :meth:`BudgetSession.on_answer`: a cut stream finished for
        ``"length"``, so the session's truncation policy applies to it."""
        return ModelAnswer(text=self.text, finish_reason="length" if self.cut else self.finish_reason,
                           output_tokens=self.output_tokens(reported_tokens), early_stop=self.early_stop, raw=raw)

    def _count(self, text: str) -> int:
        counter = self._counter
        return counter.count(text, self.model).tokens if counter is not None else count_tokens(text, self.model).tokens
