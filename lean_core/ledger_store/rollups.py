"""Daily roll-ups: the totals of pruned records, per day x tenant x model (calls) and per day x
tenant x layer x model (savings), kept so that long-period summaries stay correct after pruning.

A roll-up row holds what :func:`lean_core.report.summarize` would have counted for those
records: calls are compared like with like (``lean_core._comparison``) within one UTC day, all
tenants together, when they are rolled up (a saving and its call recorded on either side of
midnight are compared as unlinked, and a one-tenant report of rolled-up days keeps the
all-tenant comparison). Days are UTC dates; a summary over ``[since, until)`` counts a rolled-up
day whole when the range touches it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from lean_core._comparison import Pricer, compare
from lean_core.ledger_records import CallRecord, SavingsEvent
from lean_core.ledger_store.base import LedgerFilter, LedgerStore, StatementRunner

__all__ = ["CallRollup", "SavingsRollup", "build_rollups", "read_rollups", "write_rollups"]


@dataclass(slots=True)
class CallRollup:
    """Compared totals of one day x tenant x (model, provider) of calls."""

    calls: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    priced_calls: int = 0
    """Calls with a price of their own (``cost_usd`` sums them)."""
    cost_usd: Decimal = Decimal(0)
    unpriced_calls: int = 0
    estimated_calls: int = 0
    reference_priced_calls: int = 0
    reference_cost_usd: Decimal = Decimal(0)
    reference_models: set[str] = field(default_factory=set)
    left_out_calls: int = 0

    def add(self, other: CallRollup) -> None:
        for f in fields(self):
            if f.name == "reference_models":
                self.reference_models |= other.reference_models
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(slots=True)
class SavingsRollup:
    """Compared totals of one day x tenant x layer x (model, provider) of savings events."""

    events: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    cache_explorations: int = 0
    """Cache misses that explored (``miss_reason == "exploration"``; stored since ledger schema 4)."""
    input_tokens_saved: int = 0
    output_tokens_saved: int = 0
    cost_saved_usd: Decimal = Decimal(0)
    """Over the kept events."""
    unpriced_events: int = 0
    left_out_events: int = 0
    left_out_cost_usd: Decimal = Decimal(0)

    def add(self, other: SavingsRollup) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


CallKey = tuple[str, str, str, str]  # day, tenant ('' for none), model, provider ('' for none)
SavingsKey = tuple[str, str, str, str, str, int]  # day, tenant, layer, model, provider, unlinked (0/1)
_CALL_FIELDS = [f.name for f in fields(CallRollup)]
_SAVINGS_FIELDS = [f.name for f in fields(SavingsRollup)]


def _day(stamp: datetime) -> str:
    return stamp.astimezone(UTC).date().isoformat()


def build_rollups(calls: Sequence[CallRecord], savings: Sequence[SavingsEvent], *, pricer: Pricer
                  ) -> tuple[dict[CallKey, CallRollup], dict[SavingsKey, SavingsRollup]]:
    """Roll-ups of ``calls`` and ``savings``, compared within each UTC day (all tenants together,
    as an unfiltered report compares them), then split by tenant."""
    groups: dict[str, tuple[list[CallRecord], list[SavingsEvent]]] = {}
    for call in calls:
        groups.setdefault(_day(call.timestamp), ([], []))[0].append(call)
    for event in savings:
        groups.setdefault(_day(event.timestamp), ([], []))[1].append(event)
    call_rollups: dict[CallKey, CallRollup] = {}
    savings_rollups: dict[SavingsKey, SavingsRollup] = {}
    for day, (group_calls, group_savings) in groups.items():
        comparison = compare(group_calls, group_savings, pricer=pricer)
        for compared in comparison.calls:
            r = compared.record
            u = r.usage
            part = CallRollup(
                calls=1, input_tokens=u.input_tokens, cached_input_tokens=u.cached_input_tokens,
                output_tokens=u.output_tokens, reasoning_tokens=u.reasoning_tokens, unpriced_calls=int(not r.priced),
                estimated_calls=int(u.estimated), left_out_calls=int(compared.cost_usd is None),
            )
            if compared.reference_model is not None and compared.cost_usd is not None:
                part.reference_priced_calls = 1
                part.reference_cost_usd = compared.cost_usd
                part.reference_models = {compared.reference_model}
            elif compared.cost_usd is not None:
                part.priced_calls = 1
                part.cost_usd = compared.cost_usd
            call_rollups.setdefault((day, r.tenant or "", r.model, r.provider or ""), CallRollup()).add(part)
        left_out_ids = {id(e) for e in comparison.left_out}
        call_ids = {c.id for c in group_calls}
        for event in group_savings:
            left = id(event) in left_out_ids
            cost = event.cost_saved_usd
            part_s = SavingsRollup(
                events=1, cache_hits=int(event.cache_hit is True), cache_misses=int(event.cache_hit is False),
                cache_explorations=int(event.miss_reason == "exploration"),
                input_tokens_saved=event.input_tokens_saved, output_tokens_saved=event.output_tokens_saved,
                cost_saved_usd=cost if cost is not None and not left else Decimal(0),
                unpriced_events=int(cost is None), left_out_events=int(left),
                left_out_cost_usd=cost if cost is not None and left else Decimal(0),
            )
            unlinked = int(event.call_id is None or event.call_id not in call_ids)
            key = (day, event.tenant or "", event.layer, event.model, event.provider or "", unlinked)
            savings_rollups.setdefault(key, SavingsRollup()).add(part_s)
    return call_rollups, savings_rollups


_Rollup = TypeVar("_Rollup", CallRollup, SavingsRollup)


def _cells(rollup: CallRollup | SavingsRollup) -> list[Any]:
    """A roll-up as its table's cells, in field order: amounts as exact text, a set as sorted JSON."""
    return [json.dumps(sorted(v)) if isinstance(v := getattr(rollup, f.name), set)
            else str(v) if isinstance(v, Decimal) else v for f in fields(rollup)]


def _rollup_from(kind: type[_Rollup], cells: Sequence[Any]) -> _Rollup:
    """A roll-up of ``kind`` read back from its ``_cells``: each as the type of its field's default."""
    blank = kind()
    values: dict[str, Any] = {}
    for f, cell in zip(fields(kind), cells, strict=True):
        default = getattr(blank, f.name)
        values[f.name] = (Decimal(cell) if isinstance(default, Decimal)
                          else set(json.loads(cell)) if isinstance(default, set) else cell)
    return kind(**values)


def write_rollups(runner: StatementRunner, call_rollups: dict[CallKey, CallRollup],
                  savings_rollups: dict[SavingsKey, SavingsRollup]) -> None:
    """Add the roll-ups to the stored ones (inside the caller's transaction)."""
    _add_to_stored(runner, "rollup_calls", ("day", "tenant", "model", "provider"), CallRollup, call_rollups)
    _add_to_stored(runner, "rollup_savings", ("day", "tenant", "layer", "model", "provider", "unlinked"),
                   SavingsRollup, savings_rollups)


def _add_to_stored(runner: StatementRunner, table: str, keys: Sequence[str], kind: type[_Rollup],
                   rollups: Mapping[Any, _Rollup]) -> None:
    names: list[str] = [f.name for f in fields(kind)]
    where = " AND ".join(f"{k} = ?" for k in keys)
    columns = [*keys, *names]
    key: tuple[Any, ...]  # declared: mypy cannot infer it in each constrained pass
    for key, rollup in rollups.items():
        stored = runner.execute(f"SELECT {', '.join(names)} FROM {table} WHERE {where}", key)
        total: _Rollup = _rollup_from(kind, stored[0]) if stored else kind()
        total.add(rollup)
        if stored:
            runner.execute(f"DELETE FROM {table} WHERE {where}", key)
        runner.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                       [*key, *_cells(total)])


def read_rollups(store: LedgerStore, flt: LedgerFilter
                 ) -> tuple[dict[tuple[str, str], CallRollup], dict[tuple[str, str, str, int], SavingsRollup]]:
    """Stored roll-ups in ``flt``, merged over days and tenants: by (model, provider) and by
    (layer, model, provider, unlinked) ('' for no provider). Empty for a ledger older than roll-ups.

    Unlinked savings rows of days that decided differently (left out on one day, kept on another)
    stay apart: ``left_out_events`` of such a row is all or none of its priced events."""
    if store.schema_version < 3:
        return {}, {}
    clauses: list[str] = []
    params: list[Any] = []
    if flt.tenant is not None:
        clauses.append("tenant = ?")
        params.append(flt.tenant)
    if flt.since is not None:
        clauses.append("day >= ?")
        params.append(_day(flt.since if flt.since.tzinfo else flt.since.replace(tzinfo=UTC)))
    if flt.until is not None:
        until = flt.until if flt.until.tzinfo else flt.until.replace(tzinfo=UTC)
        clauses.append("day <= ?")
        params.append(_day(until - timedelta(microseconds=1)))
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    calls: dict[tuple[str, str], CallRollup] = {}
    for row in store.query(f"SELECT model, provider, {', '.join(_CALL_FIELDS)} FROM rollup_calls{where}", params):
        calls.setdefault((row[0], row[1]), CallRollup()).add(_rollup_from(CallRollup, row[2:]))
    layer_where = where
    layer_params = list(params)
    if flt.layer is not None:
        layer_where = (where + " AND " if where else " WHERE ") + "layer = ?"
        layer_params.append(flt.layer)
    savings: dict[tuple[str, str, str, int], SavingsRollup] = {}
    # A read-only ledger older than schema 4 has no exploration count: its roll-ups counted none.
    names = [f"0 AS {n}" if n == "cache_explorations" and store.schema_version < 4 else n for n in _SAVINGS_FIELDS]
    for row in store.query(f"SELECT layer, model, provider, unlinked, {', '.join(names)} "
                           f"FROM rollup_savings{layer_where}", layer_params):
        part = _rollup_from(SavingsRollup, row[4:])
        # An unlinked row is all kept or all left out; days that decided differently stay apart (-1 / 1).
        key = (row[0], row[1], row[2], (-1 if part.left_out_events else 1) if row[3] else 0)
        savings.setdefault(key, SavingsRollup()).add(part)
    return calls, savings
