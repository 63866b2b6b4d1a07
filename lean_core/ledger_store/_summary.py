"""Ledger summaries from a store: merging partial summaries (live records + roll-ups) and the
aggregate path that lets the database sum a large ledger instead of decoding every row.

The aggregate path gives the same numbers as :func:`lean_core.report.summarize` over every
record: priced calls and the savings that are not linked to an unpriced call are summed in SQL,
grouped by (model, provider) and (layer, model); unpriced calls and their linked savings, the
only ones whose comparison needs per-record pricing, are decoded and summarized as records.

Whether a saving linked to no call is compared depends on the whole summary (rule 4 of
``lean_core._comparison``: is any call left out, and is any compared call priced at the saving's
model?), so each part carries its unlinked savings and :func:`combine` decides them again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lean_core._comparison import ComparisonBasis, Pricer
from lean_core.ledger_records import LAYERS, CallRecord, Layer, SavingsEvent
from lean_core.ledger_store.base import LedgerFilter, LedgerStore
from lean_core.ledger_store.rollups import CallRollup, SavingsRollup, read_rollups
from lean_core.report import LayerSavings, LedgerSummary, ModelTotals, summarize

__all__ = ["SummaryPart", "UnlinkedSavings", "aggregate_part", "basis_of", "combine", "layers_of", "record_part",
           "rollup_part", "summary_of_rollups"]


@dataclass(frozen=True, slots=True)
class UnlinkedSavings:
    """Priced savings of one layer and model linked to no call of their part."""

    layer: Layer
    model: str
    priced_events: int
    cost_usd: Decimal
    left_out: bool
    """How the part decided them (on its own calls)."""


@dataclass(frozen=True, slots=True)
class SummaryPart:
    """The summary of a disjoint set of records, with what :func:`combine` needs to decide again."""

    summary: LedgerSummary
    unlinked: tuple[UnlinkedSavings, ...] = ()
    price_keys: frozenset[str] = field(default_factory=frozenset)
    """Models (compared keys) that some compared call of the part is priced at."""


def _key(model: str) -> str:
    return model.strip().lower()


def _price_keys(summary: LedgerSummary) -> frozenset[str]:
    own = {_key(m.model) for m in summary.by_model if m.cost_usd is not None}
    return frozenset(own | {_key(m) for m in summary.reference_models})


def _opt_add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    return a if b is None else a + b


def basis_of(calls: int, left_out_calls: int, reference_priced: int, layers: Sequence[LayerSavings]) -> ComparisonBasis:
    """The comparison basis from totals (the same decision as ``lean_core._comparison``)."""
    events = sum(layer.events for layer in layers)
    left_out_events = sum(layer.left_out_events for layer in layers)
    kept_priced = sum(layer.events - layer.unpriced_events - layer.left_out_events for layer in layers)
    if not calls and not events:
        return "own_prices"
    if left_out_calls == calls and kept_priced == 0:
        return "none"
    if left_out_events or left_out_calls:
        return "partial"
    return "reference_prices" if reference_priced else "own_prices"


def _merge_models(a: ModelTotals, b: ModelTotals) -> ModelTotals:
    return ModelTotals(
        model=a.model, provider=a.provider, calls=a.calls + b.calls, input_tokens=a.input_tokens + b.input_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        output_tokens=a.output_tokens + b.output_tokens, reasoning_tokens=a.reasoning_tokens + b.reasoning_tokens,
        cost_usd=_opt_add(a.cost_usd, b.cost_usd), unpriced_calls=a.unpriced_calls + b.unpriced_calls,
        estimated_calls=a.estimated_calls + b.estimated_calls,
        reference_priced_calls=a.reference_priced_calls + b.reference_priced_calls,
        reference_cost_usd=_opt_add(a.reference_cost_usd, b.reference_cost_usd),
        reference_models=tuple(sorted(set(a.reference_models) | set(b.reference_models))),
    )


def _layer_totals(layer: LayerSavings) -> dict[str, Any]:
    return {name: getattr(layer, name) for name in LayerSavings.model_fields if name != "layer"}


def combine(parts: Sequence[SummaryPart]) -> LedgerSummary:
    """One summary of disjoint sets of records (e.g. live records and roll-ups)."""
    summaries = [p.summary for p in parts]
    models: dict[tuple[str, str | None], ModelTotals] = {}
    layers: dict[Layer, dict[str, Any]] = {}
    for summary in summaries:
        for m in summary.by_model:
            key = (m.model, m.provider)
            models[key] = _merge_models(models[key], m) if key in models else m
        for layer in summary.by_layer:
            totals = layers.setdefault(layer.layer, dict.fromkeys(_layer_totals(layer), 0))
            for name, value in _layer_totals(layer).items():
                totals[name] += value

    def total(name: str) -> Any:
        return sum((getattr(s, name) for s in summaries), Decimal(0) if name.endswith("usd") else 0)

    calls, left_out_calls, referenced = total("calls"), total("left_out_calls"), total("reference_priced_calls")
    # Rule 4 over the whole summary: an unlinked saving is left out when some call is left out and
    # no compared call is priced at its model.
    price_keys = frozenset().union(*(p.price_keys for p in parts)) if parts else frozenset()
    for part in parts:
        for group in part.unlinked:
            left_out = left_out_calls > 0 and _key(group.model) not in price_keys
            if left_out == group.left_out:
                continue
            sign = 1 if left_out else -1
            totals = layers[group.layer]
            totals["cost_saved_usd"] -= sign * group.cost_usd
            totals["left_out_events"] += sign * group.priced_events
            totals["left_out_cost_usd"] += sign * group.cost_usd
    by_layer = tuple(LayerSavings(layer=name, **layers[name]) for name in LAYERS if name in layers)
    actual = total("actual_cost_usd")
    saved = sum((layer.cost_saved_usd for layer in by_layer), Decimal(0))
    return LedgerSummary(
        calls=calls, input_tokens=total("input_tokens"), cached_input_tokens=total("cached_input_tokens"),
        output_tokens=total("output_tokens"), reasoning_tokens=total("reasoning_tokens"),
        actual_cost_usd=actual, saved_cost_usd=saved, baseline_cost_usd=actual + saved,
        unpriced_calls=total("unpriced_calls"), estimated_calls=total("estimated_calls"),
        by_model=tuple(models[k] for k in sorted(models, key=lambda k: (k[0], k[1] or ""))), by_layer=by_layer,
        comparison_basis=basis_of(calls, left_out_calls, referenced, by_layer),
        recorded_cost_usd=total("recorded_cost_usd"), reference_priced_calls=referenced,
        reference_cost_usd=total("reference_cost_usd"),
        reference_models=tuple(sorted({m for s in summaries for m in s.reference_models})),
        left_out_calls=left_out_calls, left_out_events=sum(layer.left_out_events for layer in by_layer),
        left_out_saved_usd=sum((layer.left_out_cost_usd for layer in by_layer), Decimal(0)),
        skipped_rows=total("skipped_rows"),
    )


def layers_of(per_layer: dict[str, SavingsRollup]) -> tuple[LayerSavings, ...]:
    return tuple(
        LayerSavings(layer=name, events=r.events, cache_hits=r.cache_hits, cache_misses=r.cache_misses,
                     cache_explorations=r.cache_explorations, input_tokens_saved=r.input_tokens_saved,
                     output_tokens_saved=r.output_tokens_saved,
                     cost_saved_usd=r.cost_saved_usd, unpriced_events=r.unpriced_events,
                     left_out_events=r.left_out_events, left_out_cost_usd=r.left_out_cost_usd)
        for name in LAYERS if (r := per_layer.get(name)) is not None)


def _unlinked_of(layer: str, model: str, rollup: SavingsRollup, *, left_out: bool) -> UnlinkedSavings:
    return UnlinkedSavings(layer=layer, model=model, priced_events=rollup.events - rollup.unpriced_events,  # type: ignore[arg-type]
                           cost_usd=rollup.cost_saved_usd + rollup.left_out_cost_usd, left_out=left_out)


def record_part(calls: Sequence[CallRecord], savings: Sequence[SavingsEvent], *, pricer: Pricer,
                skipped_rows: int = 0) -> SummaryPart:
    """:func:`summarize` over records, as a part."""
    summary = summarize(calls, savings, pricer=pricer, skipped_rows=skipped_rows)
    keys = _price_keys(summary)
    ids = {c.id for c in calls}
    groups: dict[tuple[str, str], SavingsRollup] = {}
    for e in savings:
        if e.cost_saved_usd is not None and (e.call_id is None or e.call_id not in ids):
            groups.setdefault((e.layer, e.model), SavingsRollup()).add(
                SavingsRollup(events=1, cost_saved_usd=e.cost_saved_usd))
    left = summary.left_out_calls > 0
    unlinked = tuple(_unlinked_of(layer, model, r, left_out=left and _key(model) not in keys)
                     for (layer, model), r in groups.items())
    return SummaryPart(summary, unlinked, keys)


def summary_of_rollups(calls: Mapping[tuple[str, str], CallRollup],
                       per_layer: Mapping[str, SavingsRollup]) -> LedgerSummary:
    """The summary of compared totals per served (model, provider) and per layer ('': no
    provider), linked savings decided already (stored roll-ups, or a part summed from rows)."""
    by_model = []
    whole = CallRollup()
    for (model, provider), r in sorted(calls.items(), key=lambda kv: kv[0]):
        whole.add(r)
        by_model.append(ModelTotals(
            model=model, provider=provider or None, calls=r.calls, input_tokens=r.input_tokens,
            cached_input_tokens=r.cached_input_tokens, output_tokens=r.output_tokens,
            reasoning_tokens=r.reasoning_tokens, cost_usd=r.cost_usd if r.priced_calls else None,
            unpriced_calls=r.unpriced_calls, estimated_calls=r.estimated_calls,
            reference_priced_calls=r.reference_priced_calls,
            reference_cost_usd=r.reference_cost_usd if r.reference_priced_calls else None,
            reference_models=tuple(sorted(r.reference_models)),
        ))
    by_layer = layers_of(dict(per_layer))
    actual = whole.cost_usd + whole.reference_cost_usd
    saved = sum((layer.cost_saved_usd for layer in by_layer), Decimal(0))
    return LedgerSummary(
        calls=whole.calls, input_tokens=whole.input_tokens, cached_input_tokens=whole.cached_input_tokens,
        output_tokens=whole.output_tokens, reasoning_tokens=whole.reasoning_tokens, actual_cost_usd=actual,
        saved_cost_usd=saved, baseline_cost_usd=actual + saved, unpriced_calls=whole.unpriced_calls,
        estimated_calls=whole.estimated_calls, by_model=tuple(by_model), by_layer=by_layer,
        comparison_basis=basis_of(whole.calls, whole.left_out_calls, whole.reference_priced_calls, by_layer),
        recorded_cost_usd=whole.cost_usd, reference_priced_calls=whole.reference_priced_calls,
        reference_cost_usd=whole.reference_cost_usd, reference_models=tuple(sorted(whole.reference_models)),
        left_out_calls=whole.left_out_calls, left_out_events=sum(layer.left_out_events for layer in by_layer),
        left_out_saved_usd=sum((layer.left_out_cost_usd for layer in by_layer), Decimal(0)),
    )


def rollup_part(store: LedgerStore, flt: LedgerFilter) -> SummaryPart | None:
    """The stored roll-ups in ``flt`` as a part; None when there are none."""
    calls, savings = read_rollups(store, flt)
    if not calls and not savings:
        return None
    per_layer: dict[str, SavingsRollup] = {}
    unlinked = []
    for (layer, model, _provider, kind), s in savings.items():
        per_layer.setdefault(layer, SavingsRollup()).add(s)
        if kind and s.events > s.unpriced_events:
            unlinked.append(_unlinked_of(layer, model, s, left_out=kind < 0))
    summary = summary_of_rollups(calls, per_layer)
    return SummaryPart(summary, tuple(unlinked), _price_keys(summary))


def aggregate_part(store: LedgerStore, flt: LedgerFilter, *, pricer: Pricer,
                   read_calls: Callable[[str, Sequence[Any]], list[Any]],
                   read_savings: Callable[[str, Sequence[Any]], list[Any]], skipped_rows: Callable[[], int]
                   ) -> SummaryPart:
    """The live records' part, summed by the database (see the module docstring).

    ``read_calls(condition, params)`` / ``read_savings(...)`` decode the records matching ``flt``
    and one more SQL condition (how bad rows are handled is the caller's choice, and
    ``skipped_rows()`` says how many it skipped)."""
    from lean_core.ledger_store._unpriced import unpriced_summary  # it builds on this module

    # PostgreSQL sums the exact decimal text as NUMERIC; SQLite would sum it as floating point.
    money = "sum(CAST({} AS NUMERIC))" if store.dialect == "postgresql" else "decimal_sum_text({})"
    calls_where, calls_params = flt.where("calls", alias="c")
    and_calls = calls_where.replace(" WHERE", " AND", 1)
    unpriced_ids = f"SELECT c.id FROM calls c WHERE c.priced = 0{and_calls}"
    part_unpriced = unpriced_summary(store, flt, pricer=pricer)
    if part_unpriced is None:  # a row failed its checks: decode records (they skip and count it)
        unpriced_calls = read_calls("priced = 0", ())
        linked = read_savings(f"call_id IN ({unpriced_ids})", calls_params)
        part_unpriced = summarize(unpriced_calls, linked, pricer=pricer)

    rows = store.query(
        f"SELECT model, provider, count(*), sum(input_tokens), sum(cached_input_tokens), sum(output_tokens), "
        f"sum(reasoning_tokens), {money.format('cost_usd')}, "
        f"sum(CASE WHEN usage_source = 'provider' THEN 0 ELSE 1 END) FROM calls c WHERE c.priced = 1{and_calls} "
        "GROUP BY model, provider", calls_params)
    by_model = [ModelTotals(model=m, provider=p, calls=int(n), input_tokens=int(i), cached_input_tokens=int(ci),
                            output_tokens=int(o), reasoning_tokens=int(r), cost_usd=Decimal(cost),
                            unpriced_calls=0, estimated_calls=int(est))
                for m, p, n, i, ci, o, r, cost, est in rows]
    recorded = sum((m.cost_usd for m in by_model if m.cost_usd is not None), Decimal(0))
    price_keys = frozenset({_key(m.model) for m in by_model}) | _price_keys(part_unpriced)
    calls_left_out = part_unpriced.left_out_calls > 0

    # Savings not linked to an unpriced call: summed per (layer, model, linked to a priced call),
    # with one outer join (the calls in ``flt`` on the savings' call ids).
    s_where, s_params = flt.where("savings", alias="s")
    not_unpriced = "(c.id IS NULL OR c.priced = 1)"
    where = f"{s_where} AND {not_unpriced}" if s_where else f" WHERE {not_unpriced}"
    # A ledger older than schema 4 (read only) recorded no miss reasons.
    explored = "sum(CASE WHEN s.miss_reason = 'exploration' THEN 1 ELSE 0 END)" if store.schema_version >= 4 else "0"
    savings_rows = store.query(
        "SELECT s.layer, s.model, CASE WHEN c.id IS NULL THEN 0 ELSE 1 END AS linked, count(*), "
        "sum(CASE WHEN s.cache_hit = 1 THEN 1 ELSE 0 END), sum(CASE WHEN s.cache_hit = 0 THEN 1 ELSE 0 END), "
        "sum(s.input_tokens_before - s.input_tokens_after), sum(s.output_tokens_before - s.output_tokens_after), "
        f"{money.format('s.cost_saved_usd')}, sum(CASE WHEN s.cost_saved_usd IS NULL THEN 1 ELSE 0 END), "
        f"{explored} FROM savings s LEFT JOIN calls c ON c.id = s.call_id{and_calls}{where} "
        "GROUP BY s.layer, s.model, linked", [*calls_params, *s_params])
    per_layer: dict[str, SavingsRollup] = {}
    unlinked = []
    for layer, model, linked_flag, n, hits, misses, saved_in, saved_out, cost, unpriced, explorations in savings_rows:
        cost_sum = Decimal(cost) if cost is not None else Decimal(0)
        left = calls_left_out and not linked_flag and _key(model) not in price_keys
        group = SavingsRollup(
            events=int(n), cache_hits=int(hits), cache_misses=int(misses), cache_explorations=int(explorations),
            input_tokens_saved=int(saved_in),
            output_tokens_saved=int(saved_out), cost_saved_usd=Decimal(0) if left else cost_sum,
            unpriced_events=int(unpriced), left_out_events=int(n) - int(unpriced) if left else 0,
            left_out_cost_usd=cost_sum if left else Decimal(0))
        per_layer.setdefault(layer, SavingsRollup()).add(group)
        if not linked_flag and group.events > group.unpriced_events:
            unlinked.append(_unlinked_of(layer, model, group, left_out=left))
    by_layer = layers_of(per_layer)
    saved = sum((layer.cost_saved_usd for layer in by_layer), Decimal(0))
    part_priced = LedgerSummary(
        calls=sum(m.calls for m in by_model), input_tokens=sum(m.input_tokens for m in by_model),
        cached_input_tokens=sum(m.cached_input_tokens for m in by_model),
        output_tokens=sum(m.output_tokens for m in by_model),
        reasoning_tokens=sum(m.reasoning_tokens for m in by_model), actual_cost_usd=recorded,
        saved_cost_usd=saved, baseline_cost_usd=recorded + saved, unpriced_calls=0,
        estimated_calls=sum(m.estimated_calls for m in by_model), by_model=tuple(by_model), by_layer=by_layer,
        recorded_cost_usd=recorded,
    )
    # The unpriced part links its savings to its calls; only this part has unlinked ones.
    summary = combine([SummaryPart(part_unpriced), SummaryPart(part_priced)])
    return SummaryPart(summary.model_copy(update={"skipped_rows": skipped_rows()}), tuple(unlinked), price_keys)
