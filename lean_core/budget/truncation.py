"""Truncation: recognise an answer cut by its budget, continue it once, and account for it.

Providers name the cut differently: OpenAI and vLLM ``finish_reason == "length"``, Anthropic
``stop_reason == "max_tokens"``, Gemini ``MAX_TOKENS``, the OpenAI Responses API
``incomplete_details.reason == "max_output_tokens"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lean_core.budget.features import FEATURE_VERSION
from lean_core.budget.policy import BudgetOutcome, BudgetPlan
from lean_core.errors import LeanInferenceError
from lean_core.ledger_records import OutputLengthRecord, SavingsEvent

__all__ = ["CONTINUE_INSTRUCTION", "OutputTruncatedError", "finish_reason_of", "is_truncated",
           "outcome_records"]

_CUT = frozenset({"length", "max_tokens", "max_output_tokens", "model_length"})
CONTINUE_INSTRUCTION = "Continue exactly where your answer stopped. Do not repeat anything."


class OutputTruncatedError(LeanInferenceError):
    """An answer reached its output budget and the policy is ``on_truncation="raise"``."""

    def __init__(self, outcome: BudgetOutcome, partial: Any) -> None:
        super().__init__(f"the answer was cut at its budget of {outcome.max_tokens} tokens "
                         f"(finish_reason={outcome.finish_reason!r}); raise the budget or use "
                         "on_truncation='continue'")
        self.outcome = outcome
        self.partial = partial
        """The truncated answer as the framework returned it."""


def is_truncated(finish_reason: str | None) -> bool:
    """True when ``finish_reason`` (any provider's spelling) means the budget cut the answer."""
    return finish_reason is not None and finish_reason.lower() in _CUT


def finish_reason_of(metadata: Mapping[str, Any]) -> str | None:
    """The finish reason in a response's metadata, whichever key the provider used."""
    for key in ("finish_reason", "stop_reason", "done_reason"):
        value = metadata.get(key)
        if value:
            return str(value)
    details = metadata.get("incomplete_details")
    if isinstance(details, Mapping) and details.get("reason"):
        return str(details["reason"])
    return None


def outcome_records(plan: BudgetPlan, outcome: BudgetOutcome, *, model: str, provider: str | None,
                    tenant: str | None) -> tuple[SavingsEvent, OutputLengthRecord]:
    """The ledger's "output" savings event and length-history row.

    "Before" is the predicted natural length without brevity (the median of the model's answers
    to such queries); "after" is what was generated. The predictor learned from early-stopped
    answers, so "before" understates what an unbudgeted call produces: savings are conservative.
    """
    savings = SavingsEvent(layer="output", model=model, provider=provider, tenant=tenant,
                           output_tokens_before=max(plan.baseline_tokens, 0),
                           output_tokens_after=outcome.output_tokens)
    history = OutputLengthRecord(model=model, feature_version=FEATURE_VERSION, features=plan.features,
                                 output_tokens=outcome.output_tokens, max_tokens=plan.max_tokens,
                                 finish_reason="length" if outcome.truncated else outcome.finish_reason,
                                 tenant=tenant)
    return savings, history
