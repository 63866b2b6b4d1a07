"""On PostgreSQL, unpriced (local) calls are priced at their savings' reference model in groups
where the reference price is flat per token: the summary must still be summarize()'s, exactly,
whatever mix of usages, reference models (flat, tiered by prompt length, priced by time of day,
unknown), hours and filters the ledger holds; and a damaged row sends the summary back to the
record-by-record path, which skips and counts it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lean_core import CostLedger, TokenUsage
from lean_core.ledger_records import SavingsEvent
from lean_core.ledger_store.postgres import PostgresLedgerStore
from lean_core.report import summarize
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

START = datetime(2026, 3, 10, tzinfo=UTC)
# (model, provider): flat; flat; tiered above a prompt length; off-peak hours priced apart; unknown.
REFERENCES = [("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-sonnet-4-5", "anthropic"),
              ("deepseek-chat", "deepseek"), ("no-such-model-xyz", "openai")]


def _random_usage(rng: random.Random) -> TokenUsage:
    inp = rng.choice([rng.randint(0, 3_000), rng.randint(150_000, 260_000)])  # both sides of a tier
    cached = rng.randint(0, inp // 2)
    write = rng.randint(0, (inp - cached) // 2)
    out = rng.randint(0, 400)
    return TokenUsage(input_tokens=inp, cached_input_tokens=cached, cache_write_tokens=write,
                      cache_write_1h_tokens=rng.randint(0, write), output_tokens=out,
                      reasoning_tokens=rng.randint(0, out), source=rng.choice(["tokenizer", "estimate", "provider"]))


@pytest.fixture
def ledger(postgres_dsn: str) -> Iterator[CostLedger]:  # noqa: F811
    with CostLedger(PostgresLedgerStore(postgres_dsn, schema=f"unpriced_{uuid.uuid4().hex[:8]}")) as opened:
        _fill(opened, random.Random(27))
        yield opened


def _fill(ledger: CostLedger, rng: random.Random) -> None:
    for i in range(300):
        at = START + timedelta(minutes=37 * i)  # ~8 days, every hour of the day
        tenant = rng.choice(["acme", "beta", None])
        call = ledger.record_call(model=rng.choice(["smollm2-local", "qwen-local"]), provider=rng.choice([None, "vllm"]),
                                  usage=_random_usage(rng), tenant=tenant, timestamp=at)
        # 0, 1 or 2 linked savings: one reference, two (left out), none, or only unpriced ones.
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            model, provider = rng.choice(REFERENCES)
            layer = rng.choice(["compression", "cache", "output", "template"])
            # A cache miss that explored (the model was called although an entry was near) is linked.
            miss: dict[str, Any] = {"cache_hit": False, "miss_reason": rng.choice([None, "exploration", "no_entry"])
                                    } if layer == "cache" else {}
            ledger.record(SavingsEvent(layer=layer, model=model, **miss,
                                       provider=provider, input_tokens_before=rng.randint(500, 5_000),
                                       input_tokens_after=rng.randint(0, 500), output_tokens_before=rng.randint(0, 99),
                                       tenant=tenant, call_id=call.id, timestamp=at))
        if i % 5 == 0:  # priced calls and unlinked savings around them
            priced = ledger.record_call(model="gpt-4o", provider="openai", usage=_random_usage(rng), tenant=tenant,
                                        timestamp=at)
            ledger.record_savings(layer="cache", model="gpt-4o-mini", provider="openai", input_tokens_before=900,
                                  cache_hit=True, tenant=tenant, timestamp=at, call_id=None if i % 2 else priced.id)


@pytest.mark.parametrize("flt", [{}, {"tenant": "acme"}, {"since": START + timedelta(days=2), "until": START +
                                                           timedelta(days=5)}, {"layer": "compression"}])
def test_grouped_reference_pricing_equals_the_record_by_record_summary(ledger: CostLedger,
                                                                         flt: dict[str, Any]) -> None:
    record_flt = {k: v for k, v in flt.items() if k != "layer"}
    expected = summarize(ledger.calls(**record_flt), ledger.savings(**flt))
    summary = ledger.summary(**flt)
    assert summary == expected
    # The mix is what the test is about: referenced and left-out calls, at several reference models.
    assert summary.reference_priced_calls > 20 and summary.left_out_calls > 20
    if "layer" not in flt:
        assert sum(layer.cache_explorations for layer in summary.by_layer) > 5
    assert len(summary.reference_models) >= 3 if not flt else len(summary.reference_models) >= 2


def test_a_damaged_unpriced_row_is_skipped_and_counted_by_the_record_path(ledger: CostLedger) -> None:
    with ledger.store.transaction() as runner:  # an unpriced call with a cost: CallRecord refuses it
        runner.execute("UPDATE calls SET cost_usd = '1' WHERE id = "
                       "(SELECT id FROM calls WHERE priced = 0 ORDER BY ts LIMIT 1)")
    summary = ledger.summary()
    assert summary.skipped_rows == 1
    assert summary == summarize(ledger.calls(skip_bad_rows=True), ledger.savings()).model_copy(
        update={"skipped_rows": 1})
