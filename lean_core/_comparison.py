"""Which calls and savings a ledger summary sets against each other, and at which prices.

A saving is priced at the model its layer names (``SavingsEvent.model``: for the pipeline, the
reference API model of ``PipelineSettings.price_model``), while a call is priced at the model
that served it. A local model has no price, so before this step its calls added $0 to the actual
cost while their savings added dollars to the baseline, and every report read "100 % saved".
The summary compares like with like instead:

1. A call with its own price is compared at that price, with all its savings.
2. An unpriced call whose savings events link to it (``SavingsEvent.call_id == CallRecord.id``)
   and were priced at one reference model is priced at that model, from its own token usage.
   Those counts are in the served model's tokenizer, so the reference cost is an approximation;
   the savings were counted in the reference model's tokenizer.
3. Any other unpriced call is left out of both sides: its linked savings leave the saved total.
4. A saving linked to no call in the ledger (a cache hit saves a whole call, framework layers
   record before the call exists) is kept unless it may belong to a call left out in 3: that is,
   unless some call was left out and no compared call is priced at the saving's model.

Token counts are never left out: tokens saved are real whatever a call costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from lean_core.ledger_records import CallRecord, SavingsEvent
from lean_core.pricing import PriceQuote, price_usage

__all__ = ["ComparedCall", "Comparison", "ComparisonBasis", "compare"]

ComparisonBasis = Literal["own_prices", "reference_prices", "partial", "none"]
"""How a summary's actual cost and savings were made comparable:

* ``"own_prices"``: every call at its own model's price; nothing left out.
* ``"reference_prices"``: some unpriced calls priced at the reference model their savings were
  priced at; nothing left out.
* ``"partial"``: some unpriced calls (and the savings that are, or may be, theirs) left out of both
  sides; the rest compared as above.
* ``"none"``: the ledger has records but no dollar figure could be compared (no call priced on
  any basis, no saving kept).
"""

Pricer = Callable[..., PriceQuote]


@dataclass(frozen=True, slots=True)
class ComparedCall:
    """One call and the cost it is compared at."""

    record: CallRecord
    cost_usd: Decimal | None
    """Its own cost, its cost at ``reference_model``, or None when it is left out of both sides."""
    reference_model: str | None = None
    """The model its cost was priced at when that is not its own model."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """The calls and savings events a summary compares."""

    calls: tuple[ComparedCall, ...]
    kept: tuple[SavingsEvent, ...]
    """Events whose ``cost_saved_usd`` counts towards the saved total (unpriced events included)."""
    left_out: tuple[SavingsEvent, ...]
    """Priced events left out of the saved total, because their call is left out."""
    basis: ComparisonBasis


def compare(calls: Sequence[CallRecord], savings: Sequence[SavingsEvent], *,
            pricer: Pricer = price_usage) -> Comparison:
    """Decide what a summary compares (see the module docstring for the rules)."""
    ids = {c.id for c in calls}
    linked: dict[str, list[SavingsEvent]] = {}
    unlinked: list[SavingsEvent] = []
    for event in savings:
        if event.call_id is not None and event.call_id in ids:
            linked.setdefault(event.call_id, []).append(event)
        else:
            unlinked.append(event)

    compared: list[ComparedCall] = []
    kept: list[SavingsEvent] = []
    left_out: list[SavingsEvent] = []
    for call in calls:
        events = linked.get(call.id, [])
        if call.priced:
            compared.append(ComparedCall(call, call.cost_usd))
            kept.extend(events)
            continue
        reference = _reference_cost(call, events, pricer)
        if reference is None:
            compared.append(ComparedCall(call, None))
            kept.extend(e for e in events if e.cost_saved_usd is None)
            left_out.extend(e for e in events if e.cost_saved_usd is not None)
        else:
            model, cost = reference
            compared.append(ComparedCall(call, cost, model))
            kept.extend(events)

    calls_left_out = any(c.cost_usd is None for c in compared)
    price_keys = {_key(c.reference_model or c.record.model) for c in compared if c.cost_usd is not None}
    for event in unlinked:
        if event.cost_saved_usd is not None and calls_left_out and _key(event.model) not in price_keys:
            left_out.append(event)
        else:
            kept.append(event)
    return Comparison(calls=tuple(compared), kept=tuple(kept), left_out=tuple(left_out),
                      basis=_basis(compared, kept, left_out))


def _reference_cost(call: CallRecord, events: Sequence[SavingsEvent],
                    pricer: Pricer) -> tuple[str, Decimal] | None:
    """The call's usage priced at the one model its priced savings were priced at, if there is one."""
    references = {(e.model, e.provider) for e in events if e.cost_saved_usd is not None}
    if len(references) != 1:
        return None
    ((model, provider),) = references
    quote = pricer(call.usage, model, provider=provider, at=call.timestamp)
    if not quote.priced or quote.total_cost_usd is None:
        return None
    return model, quote.total_cost_usd


def _key(model: str) -> str:
    return model.strip().lower()


def _basis(compared: Sequence[ComparedCall], kept: Sequence[SavingsEvent],
           left_out: Sequence[SavingsEvent]) -> ComparisonBasis:
    if not compared and not kept and not left_out:
        return "own_prices"
    if all(c.cost_usd is None for c in compared) and all(e.cost_saved_usd is None for e in kept):
        return "none"
    if left_out or any(c.cost_usd is None for c in compared):
        return "partial"
    if any(c.reference_model is not None for c in compared):
        return "reference_prices"
    return "own_prices"
