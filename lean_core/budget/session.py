"""One budgeted request, without I/O: the adapters' sync and async loops share every decision.

    session = BudgetSession(query, options, model=...)
    request = session.first_request()
    while request is not None:
        answer = call_the_model(request)        # the only line that differs per framework
        request = session.on_answer(answer)
    session.outcome, session.text

The session plans the budget, asks for one continuation when the policy says so, joins the
parts, and produces the ledger records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lean_core.budget.early_stop import EarlyStopReason, EarlyStopRule
from lean_core.budget.policy import BudgetOptions, BudgetOutcome, BudgetPlan, plan_budget
from lean_core.budget.truncation import (
    CONTINUE_INSTRUCTION,
    OutputTruncatedError,
    is_truncated,
    outcome_records,
)
from lean_core.ledger_records import OutputLengthRecord, SavingsEvent

if TYPE_CHECKING:
    from lean_core.ledger import CostLedger

__all__ = ["BudgetRequest", "BudgetSession", "ModelAnswer", "with_brevity"]


@dataclass(frozen=True, slots=True)
class BudgetRequest:
    """What to send: the budget, stops, brevity, and for a continuation the text so far."""

    max_tokens: int
    stop: tuple[str, ...]
    early_stop: EarlyStopRule | None
    brevity_instruction: str | None
    continue_from: str | None = None
    """None for the first request; else the partial answer to append as an assistant turn,
    followed by a user turn with ``continue_instruction``."""
    continue_instruction: str = CONTINUE_INSTRUCTION


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """What the model returned for one request."""

    text: str
    finish_reason: str | None
    output_tokens: int
    early_stop: EarlyStopReason | None = None
    raw: Any = None
    """The framework's own response object (kept for errors and metadata)."""


class BudgetSession:
    """Plans one request and decides, answer by answer, whether it is finished."""

    def __init__(self, query: str, options: BudgetOptions, *, model: str | None = None,
                 context_window: int | None = None, prompt_tokens: int | None = None) -> None:
        self.options = options
        self.plan: BudgetPlan = plan_budget(query, options, model=model, context_window=context_window,
                                            prompt_tokens=prompt_tokens)
        self.answers: list[ModelAnswer] = []

    def first_request(self) -> BudgetRequest:
        plan = self.plan
        return BudgetRequest(max_tokens=plan.max_tokens, stop=plan.stop, early_stop=plan.early_stop,
                             brevity_instruction=plan.brevity_instruction)

    def on_answer(self, answer: ModelAnswer) -> BudgetRequest | None:
        """Record ``answer``; returns the continuation request, or None when done."""
        self.answers.append(answer)
        if not is_truncated(answer.finish_reason):
            return None
        policy = self.options.on_truncation
        if policy == "raise":
            raise OutputTruncatedError(self.outcome, answer.raw)
        if policy == "continue" and len(self.answers) == 1:
            return BudgetRequest(max_tokens=self.plan.max_tokens, stop=self.plan.stop,
                                 early_stop=self.plan.early_stop,
                                 brevity_instruction=self.plan.brevity_instruction, continue_from=answer.text)
        return None

    @property
    def text(self) -> str:
        """The answer: the parts joined (a continuation starts where the first part stopped)."""
        return "".join(a.text for a in self.answers)

    @property
    def outcome(self) -> BudgetOutcome:
        last = self.answers[-1] if self.answers else None
        return BudgetOutcome(
            max_tokens=self.plan.max_tokens, expected_tokens=self.plan.expected_tokens,
            baseline_tokens=self.plan.baseline_tokens, output_tokens=sum(a.output_tokens for a in self.answers),
            finish_reason=None if last is None else last.finish_reason,
            truncated=last is not None and is_truncated(last.finish_reason), continued=len(self.answers) > 1,
            early_stop=None if last is None else last.early_stop,
            brevity=self.plan.brevity_instruction is not None)

    def records(self, *, model: str, provider: str | None = None,
                tenant: str | None = None) -> tuple[SavingsEvent, OutputLengthRecord]:
        """The "output" savings event and the length-history row."""
        return outcome_records(self.plan, self.outcome, model=model, provider=provider, tenant=tenant)

    def record_in(self, ledger: CostLedger | None, *, model: str, provider: str | None = None,
                  tenant: str | None = None) -> None:
        """Write :meth:`records` to ``ledger`` (nothing without a ledger or before any answer)."""
        if ledger is None or not self.answers:
            return
        savings, history = self.records(model=model, provider=provider, tenant=tenant)
        ledger.record(savings)
        ledger.record_output_length(history)

    async def arecord_in(self, ledger: CostLedger | None, *, model: str, provider: str | None = None,
                         tenant: str | None = None) -> None:
        """Async :meth:`record_in`."""
        if ledger is None or not self.answers:
            return
        savings, history = self.records(model=model, provider=provider, tenant=tenant)
        await ledger.arecord(savings)
        await ledger.arecord_output_length(history)


def with_brevity(text: str, instruction: str | None) -> str:
    """The last user message with the brevity instruction at its end (after the question)."""
    return text if not instruction else f"{text.rstrip()}\n\n{instruction}"
