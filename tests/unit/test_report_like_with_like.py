"""A ledger report sets actual cost and savings against each other at the same prices."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from lean_core import CostLedger, SavingsEvent, TokenUsage, price_usage
from lean_core.report import LedgerSummary, cost_chart_data, render_table, summarize, write_chart

LOCAL = "smollm2-135m-instruct"
REFERENCE = "gpt-4o-mini"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _local_pipeline_ledger(calls: int = 6) -> CostLedger:
    """What the demo writes: local calls with no price, savings priced at the reference model."""
    ledger = CostLedger(":memory:")
    for i in range(calls):
        call = ledger.record_call(model=LOCAL, provider="local", tags=("lean-pipeline",),
                                  usage=TokenUsage(input_tokens=400 + i, output_tokens=60, source="tokenizer"))
        ledger.record(SavingsEvent(layer="compression", model=REFERENCE, input_tokens_before=1_200,
                                   input_tokens_after=420, call_id=call.id))
        ledger.record(SavingsEvent(layer="template", model=REFERENCE, input_tokens_before=440,
                                   input_tokens_after=400, call_id=call.id))
        ledger.record(SavingsEvent(layer="cache", model=REFERENCE, cache_hit=False, call_id=call.id))
    # A cache hit saves a whole call and belongs to none.
    ledger.record(SavingsEvent(layer="cache", model=REFERENCE, input_tokens_before=420, output_tokens_before=60,
                               cache_hit=True))
    return ledger


def _totals_percent(table: str) -> str | None:
    found = re.search(r"saved \$[\d,.]+ \(([\d.]+%)\)", table)
    return found.group(1) if found else None


def test_local_calls_are_priced_at_the_reference_of_their_savings() -> None:
    with _local_pipeline_ledger() as ledger:
        summary = ledger.summary()
        calls = ledger.calls()
    expected_actual = sum((price_usage(c.usage, REFERENCE).total_cost_usd or Decimal(0) for c in calls), Decimal(0))
    assert summary.unpriced_calls == 6  # the records themselves stay unpriced
    assert summary.comparison_basis == "reference_prices"
    assert summary.reference_priced_calls == 6 and summary.reference_models == (REFERENCE,)
    assert summary.actual_cost_usd == summary.reference_cost_usd == expected_actual > 0
    assert summary.recorded_cost_usd == 0 and summary.left_out_calls == 0 and summary.left_out_events == 0
    assert summary.baseline_cost_usd == summary.actual_cost_usd + summary.saved_cost_usd
    assert summary.cost_reduction is not None and 0 < summary.cost_reduction < 1
    (local,) = summary.by_model
    assert local.cost_usd is None and local.reference_cost_usd == expected_actual
    assert local.reference_priced_calls == 6 and local.reference_models == (REFERENCE,)


def test_report_never_reads_100_percent_saved_for_local_calls() -> None:
    with _local_pipeline_ledger() as ledger:
        summary = ledger.summary()
    table = render_table(summary)
    data = cost_chart_data(summary)
    assert "100.0%" not in table
    assert data.cost_reduction == summary.cost_reduction
    assert _totals_percent(table) == f"{data.cost_reduction:.1%}"
    assert data.actual_usd + sum(saved for _, saved in data.saved_by_layer) == data.baseline_usd
    assert "6 unpriced calls priced at gpt-4o-mini" in table
    assert "~$" in table and "6 unpriced (6 at gpt-4o-mini prices)" in table


def test_unlinked_savings_of_unpriced_calls_are_left_out_of_both_sides() -> None:
    # A framework chain over a local model: savings are priced at the target model and link to no call.
    with CostLedger(":memory:") as ledger:
        for _ in range(3):
            ledger.record_call(model="llama3", provider="ollama", usage=TokenUsage(input_tokens=500, output_tokens=50))
            ledger.record_savings(layer="compression", model="gpt-4o", input_tokens_before=1_500,
                                  input_tokens_after=500)
        summary = ledger.summary()
    assert summary.comparison_basis == "none"
    assert summary.actual_cost_usd == summary.saved_cost_usd == summary.baseline_cost_usd == 0
    assert summary.cost_reduction is None
    assert summary.left_out_calls == 3 and summary.left_out_events == 3 and summary.left_out_saved_usd > 0
    (compression,) = summary.by_layer
    assert compression.input_tokens_saved == 3_000  # tokens saved are kept; only the dollars are left out
    assert compression.cost_saved_usd == 0 and compression.left_out_events == 3
    table = render_table(summary)
    assert "no dollar totals" in table and "%" not in table


def test_linked_savings_without_one_reference_are_left_out_with_their_call() -> None:
    with CostLedger(":memory:") as ledger:
        api = ledger.record_call(model="gpt-4o", provider="openai",
                                 usage=TokenUsage(input_tokens=1_000, output_tokens=100))
        ledger.record(SavingsEvent(layer="compression", model="gpt-4o", provider="openai",
                                   input_tokens_before=3_000, input_tokens_after=1_000, call_id=api.id))
        local = ledger.record_call(model="in-house", usage=TokenUsage(input_tokens=800, output_tokens=80))
        for model in ("gpt-4o", "gpt-4o-mini"):  # two references: which one would be arbitrary
            ledger.record(SavingsEvent(layer="template", model=model, input_tokens_before=900,
                                       input_tokens_after=800, call_id=local.id))
        summary = ledger.summary()
    assert summary.comparison_basis == "partial"
    assert summary.left_out_calls == 1 and summary.left_out_events == 2 and summary.reference_priced_calls == 0
    assert summary.actual_cost_usd == summary.recorded_cost_usd == Decimal("0.0035")
    assert summary.saved_cost_usd == Decimal("0.005")  # only the priced call's compression
    by_layer = {layer.layer: layer for layer in summary.by_layer}
    assert by_layer["template"].cost_saved_usd == 0 and by_layer["template"].left_out_events == 2
    table = render_table(summary)
    assert "left out of both sides: 1 unpriced call with no reference price, and 2 savings events" in table
    template_row = next(line for line in table.splitlines() if line.startswith("│ template"))
    assert template_row.rstrip(" │").endswith("(2)")  # the layer table's "left out" column


def test_cache_hits_at_a_compared_model_stay_when_another_call_is_unpriced() -> None:
    with CostLedger(":memory:") as ledger:
        ledger.record_call(model="gpt-4o", provider="openai", usage=TokenUsage(input_tokens=1_000, output_tokens=100))
        ledger.record_call(model="in-house", usage=TokenUsage(input_tokens=10, source="estimate"))
        ledger.record_savings(layer="cache", model="gpt-4o", provider="openai", input_tokens_before=1_000,
                              output_tokens_before=100, cache_hit=True)
        summary = ledger.summary()
    assert summary.comparison_basis == "partial" and summary.left_out_calls == 1 and summary.left_out_events == 0
    assert summary.saved_cost_usd == summary.actual_cost_usd == Decimal("0.0035")
    assert summary.cost_reduction == pytest.approx(0.5)


def test_priced_calls_compare_at_their_own_prices() -> None:
    with CostLedger(":memory:") as ledger:
        call = ledger.record_call(model="gpt-4o", provider="openai",
                                  usage=TokenUsage(input_tokens=1_000, output_tokens=100))
        ledger.record(SavingsEvent(layer="compression", model="gpt-4o", provider="openai",
                                   input_tokens_before=3_000, input_tokens_after=1_000, call_id=call.id))
        summary = ledger.summary()
    assert summary.comparison_basis == "own_prices" and summary.reference_priced_calls == 0
    assert summary.actual_cost_usd == summary.recorded_cost_usd == Decimal("0.0035")
    assert "compared at each call's own model prices" in render_table(summary)


def test_summary_json_keeps_its_field_names() -> None:
    with _local_pipeline_ledger(2) as ledger:
        dumped = ledger.summary().model_dump(mode="json")
    old = {"calls", "input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "actual_cost_usd",
           "saved_cost_usd", "baseline_cost_usd", "unpriced_calls", "estimated_calls", "by_model", "by_layer"}
    assert old <= dumped.keys()
    assert dumped["comparison_basis"] == "reference_prices" and dumped["reference_models"] == [REFERENCE]
    assert LedgerSummary.model_validate(dumped).reference_priced_calls == 2


def test_summarize_takes_the_ledgers_pricer() -> None:
    with _local_pipeline_ledger(1) as ledger:
        calls, savings = ledger.calls(), ledger.savings()
    unknown = summarize(calls, savings, pricer=lambda usage, model, **_: price_usage(usage, "no-such-model"))
    # No reference price: the call, its three linked events and the cache hit (which may be its) are all out.
    assert unknown.comparison_basis == "none" and unknown.left_out_calls == 1 and unknown.left_out_events == 4
    assert unknown.saved_cost_usd == unknown.actual_cost_usd == 0


@pytest.mark.parametrize("kind", ["reference", "none"])
def test_chart_states_the_basis_and_draws(tmp_path: Path, kind: str) -> None:
    if kind == "reference":
        with _local_pipeline_ledger() as ledger:
            summary = ledger.summary()
    else:
        with CostLedger(":memory:") as ledger:
            ledger.record_call(model="llama3", usage=TokenUsage(input_tokens=500, output_tokens=50))
            ledger.record_savings(layer="compression", model="gpt-4o", input_tokens_before=900, input_tokens_after=500)
            summary = ledger.summary()
    png = write_chart(summary, tmp_path / f"{kind}.png")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
