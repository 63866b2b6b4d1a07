"""The unpriced calls' part of a database-summed ledger summary, priced in groups.

An unpriced call (a local model) is compared at the one reference model its linked savings were
priced at (``lean_core._comparison``, rule 2). Doing that a record at a time decoded every such
call and its savings and asked genai-prices for each: ~0.15 ms a call, seconds for a fleet whose
local calls number in the tens of thousands. Here the same numbers come from the rows' plain
columns, and calls whose reference price is flat per token (``lean_core._linear_pricing``) are
priced once per (model, reference model, applicable price), from their summed usage: exact in
decimal arithmetic, since a flat price of a sum is the sum of the prices.

Rows are checked for the columns a summary uses (the same checks the record decoder makes on
them); when any row fails, :func:`unpriced_summary` returns None and the caller decodes records,
which skips and counts damaged rows (or raises, as the caller chose).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from lean_core._comparison import Pricer
from lean_core._linear_pricing import LinearPriceKey, linear_price_key
from lean_core.ledger_records import CACHE_MISS_REASONS, LAYERS
from lean_core.ledger_store._summary import summary_of_rollups
from lean_core.ledger_store.base import LedgerFilter, LedgerStore
from lean_core.ledger_store.rollups import CallRollup, SavingsRollup
from lean_core.pricing import price_usage
from lean_core.report import LedgerSummary
from lean_core.usage import TokenUsage, UsageSource

__all__ = ["unpriced_summary"]

_CALL_COLUMNS = ("id", "ts", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens",
                 "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "usage_source", "cost_usd")
_SAVINGS_COLUMNS = ("call_id", "ts", "layer", "model", "provider", "input_tokens_before", "input_tokens_after",
                    "output_tokens_before", "output_tokens_after", "cache_hit", "cost_saved_usd", "miss_reason")
_SOURCES = frozenset(get_args(UsageSource))


class _BadRow(Exception):
    """A row the record decoder would refuse."""


@dataclass(slots=True)
class _Call:
    at: datetime
    model: str
    provider: str | None
    counts: tuple[int, int, int, int, int, int]
    """input, cached input, cache write, cache write 1h, output, reasoning."""
    source: UsageSource
    references: set[tuple[str, str | None]] = field(default_factory=set)
    """(model, provider) of its linked savings that were priced."""
    reference: str | None = None
    """The model it was priced at, once priced; None while unpriced or left out."""


def _stamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise _BadRow
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _BadRow from None
    if at.tzinfo is None:
        raise _BadRow
    return at


def _text(value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value):
        raise _BadRow
    return value


def _counts(values: Sequence[Any]) -> tuple[int, ...]:
    if not all(type(v) is int and v >= 0 for v in values):
        raise _BadRow
    return tuple(values)


def _call(row: Sequence[Any]) -> tuple[str, _Call]:
    call_id, stamp, model, provider, *counts, source, cost = row
    inp, cached, write, write_1h, out, reasoning = _counts(counts)
    # TokenUsage's cross-field rules, and CallRecord's: an unpriced call has no cost.
    if cached + write > inp or write_1h > write or reasoning > out or source not in _SOURCES or cost is not None:
        raise _BadRow
    return _text(call_id) or "", _Call(at=_stamp(stamp), model=_text(model) or "",
                                       provider=_text(provider, optional=True),
                                       counts=(inp, cached, write, write_1h, out, reasoning),
                                       source=source)


def _saving(row: Sequence[Any]) -> tuple[str, str, str, str | None, int, int, bool | None, Decimal | None, bool]:
    call_id, stamp, layer, model, provider, *counts, hit, cost, reason = row
    in_before, in_after, out_before, out_after = _counts(counts)
    _stamp(stamp)
    if layer not in LAYERS or hit not in (None, 0, 1) or isinstance(hit, float):
        raise _BadRow
    # SavingsEvent's rule: a reason only on a cache miss, and one it knows.
    if reason is not None and (reason not in CACHE_MISS_REASONS or layer != "cache" or hit != 0):
        raise _BadRow
    saved_cost = None
    if cost is not None:
        try:
            saved_cost = Decimal(_text(cost) or "")
        except InvalidOperation:
            raise _BadRow from None
        if not saved_cost.is_finite():
            raise _BadRow
    return (_text(call_id) or "", layer, _text(model) or "", _text(provider, optional=True),
            in_before - in_after, out_before - out_after, None if hit is None else bool(hit), saved_cost,
            reason == "exploration")


def _usage(counts: Sequence[int], source: UsageSource) -> TokenUsage:
    inp, cached, write, write_1h, out, reasoning = counts
    return TokenUsage(input_tokens=inp, cached_input_tokens=cached, cache_write_tokens=write,
                      cache_write_1h_tokens=write_1h, output_tokens=out, reasoning_tokens=reasoning, source=source)


def unpriced_summary(store: LedgerStore, flt: LedgerFilter, *, pricer: Pricer) -> LedgerSummary | None:
    """The summary of the unpriced calls in ``flt`` and their linked savings (the same as
    :func:`lean_core.report.summarize` over their records), or None when a row fails its checks."""
    if store.schema_version < 4:  # older (read-only) ledgers lack columns read here: decode records
        return None
    calls_where, calls_params = flt.where("calls", alias="c")
    and_calls = calls_where.replace(" WHERE", " AND", 1)
    columns = ", ".join(f"c.{name}" for name in _CALL_COLUMNS)
    call_rows = store.query(f"SELECT {columns} FROM calls c WHERE c.priced = 0{and_calls}", calls_params)
    s_where, s_params = flt.where("savings", alias="s")
    linked = f"s.call_id IN (SELECT c.id FROM calls c WHERE c.priced = 0{and_calls})"
    where = f"{s_where} AND {linked}" if s_where else f" WHERE {linked}"
    s_columns = ", ".join(f"s.{name}" for name in _SAVINGS_COLUMNS)
    saving_rows = store.query(f"SELECT {s_columns} FROM savings s{where}", [*s_params, *calls_params])
    try:
        calls = dict(_call(row) for row in call_rows)
        savings = [_saving(row) for row in saving_rows]
    except _BadRow:
        return None
    if len(calls) != len(call_rows):  # duplicate ids: leave it to the record path
        return None
    for call_id, _layer, model, provider, _i, _o, _hit, cost, _explored in savings:
        if cost is not None:
            calls[call_id].references.add((model, provider))
    costs = _reference_costs(list(calls.values()), pricer=pricer)
    return _summary(list(calls.values()), savings, calls, costs)


def _reference_costs(calls: Sequence[_Call], *, pricer: Pricer) -> dict[tuple[str, str], Decimal]:
    """Price the calls with one reference at it (grouped where the price is flat); returns the
    reference cost per served (model, provider) and sets each priced call's ``reference``."""
    keys: dict[tuple[str, str | None], LinearPriceKey | None] = {}
    groups: dict[tuple[Hashable, ...], list[_Call]] = {}
    costs: dict[tuple[str, str], Decimal] = {}  # per served (model, provider or '')
    for call in calls:
        if len(call.references) != 1:
            continue
        ((model, provider),) = call.references
        key = None
        if pricer is price_usage:
            if (model, provider) not in keys:
                keys[(model, provider)] = linear_price_key(model, provider=provider)
            key_at = keys[(model, provider)]
            key = key_at(call.at) if key_at is not None else None
        if key is None:
            groups[(id(call),)] = [call]
        else:
            groups.setdefault((call.model, call.provider, model, provider, key), []).append(call)
    for members in groups.values():
        ((model, provider),) = members[0].references
        summed = [sum(column) for column in zip(*(c.counts for c in members), strict=True)]
        # A group's sources may differ; a flat price does not depend on them (one call keeps its own).
        quote = pricer(_usage(summed, members[0].source), model, provider=provider, at=members[0].at)
        if not quote.priced or quote.total_cost_usd is None:
            continue
        served = (members[0].model, members[0].provider or "")
        costs[served] = costs.get(served, Decimal(0)) + quote.total_cost_usd
        for call in members:
            call.reference = model
    return costs


def _summary(calls: Sequence[_Call], savings: Sequence[tuple[Any, ...]], by_id: dict[str, _Call],
             costs: dict[tuple[str, str], Decimal]) -> LedgerSummary:
    models: dict[tuple[str, str], CallRollup] = {}  # as the roll-ups key them: '' for no provider
    for call in calls:
        r = models.setdefault((call.model, call.provider or ""), CallRollup())
        inp, cached, _write, _write_1h, out, reasoning = call.counts
        r.calls += 1
        r.input_tokens += inp
        r.cached_input_tokens += cached
        r.output_tokens += out
        r.reasoning_tokens += reasoning
        r.unpriced_calls += 1
        r.estimated_calls += call.source != "provider"
        if call.reference is None:
            r.left_out_calls += 1
        else:
            r.reference_priced_calls += 1
            r.reference_models.add(call.reference)
    for served, cost in costs.items():
        models[served].reference_cost_usd += cost
    per_layer: dict[str, SavingsRollup] = {}
    for call_id, layer, _model, _provider, saved_in, saved_out, hit, cost, explored in savings:
        compared = cost is None or by_id[call_id].reference is not None
        per_layer.setdefault(layer, SavingsRollup()).add(SavingsRollup(
            events=1, cache_hits=int(hit is True), cache_misses=int(hit is False), cache_explorations=int(explored),
            input_tokens_saved=saved_in, output_tokens_saved=saved_out,
            cost_saved_usd=cost if compared and cost is not None else Decimal(0),
            unpriced_events=int(cost is None), left_out_events=int(not compared),
            left_out_cost_usd=Decimal(0) if compared or cost is None else cost))
    return summary_of_rollups(models, per_layer)
