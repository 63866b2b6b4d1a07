"""Ledger costs equal genai-prices' own figures, cache tiers and reasoning tokens included."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from lean_core import CostLedger, TokenUsage, price_usage

CASES = [
    # (model, provider, usage)
    ("gpt-4o", "openai", TokenUsage(input_tokens=12_000, cached_input_tokens=8_000, output_tokens=900)),
    ("gpt-4o-mini", "openai", TokenUsage(input_tokens=5_000, cached_input_tokens=1_024, output_tokens=300)),
    ("o3-mini", "openai", TokenUsage(input_tokens=2_000, output_tokens=4_000, reasoning_tokens=3_500)),
    ("claude-3-5-haiku-latest", "anthropic",
     TokenUsage(input_tokens=20_000, cached_input_tokens=15_000, cache_write_tokens=4_000, output_tokens=700)),
    ("claude-sonnet-4-5", "anthropic",
     TokenUsage(input_tokens=9_000, cached_input_tokens=6_000, cache_write_tokens=1_000, output_tokens=1_200)),
    ("gemini-2.0-flash", "google", TokenUsage(input_tokens=30_000, cached_input_tokens=10_000, output_tokens=2_000)),
    ("gemini-2.5-flash", "google", TokenUsage(input_tokens=4_000, output_tokens=1_000, reasoning_tokens=600)),
]


@pytest.mark.parametrize(("model", "provider", "usage"), CASES, ids=[c[0] for c in CASES])
def test_ledger_cost_equals_genai_prices(model: str, provider: str, usage: TokenUsage) -> None:
    expected = calc_price(
        Usage(input_tokens=usage.input_tokens, cache_read_tokens=usage.cached_input_tokens,
              cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens,
              output_reasoning_tokens=usage.reasoning_tokens),
        model, provider_id=provider,
    )
    with CostLedger(":memory:") as ledger:
        record = ledger.record_call(model=model, provider=provider, usage=usage)
        stored = ledger.calls()[0]
    assert record.priced and stored.priced
    assert record.cost_usd == expected.total_price == stored.cost_usd
    assert stored.input_cost_usd == expected.input_price
    assert stored.output_cost_usd == expected.output_price


def test_cached_input_is_cheaper_than_uncached() -> None:
    plain = price_usage(TokenUsage(input_tokens=10_000), "gpt-4o", provider="openai")
    cached = price_usage(TokenUsage(input_tokens=10_000, cached_input_tokens=10_000), "gpt-4o", provider="openai")
    assert plain.total_cost_usd is not None and cached.total_cost_usd is not None
    assert cached.total_cost_usd == plain.total_cost_usd / 2  # gpt-4o: cache reads at half price


@pytest.mark.parametrize(("model", "provider"), [("no-such-model-9000", None), ("gpt-4o", "no-such-provider"),
                                                  ("smollm2-135m-instruct", "local")])
def test_unknown_model_is_unpriced_never_zero(model: str, provider: str | None) -> None:
    quote = price_usage(TokenUsage(input_tokens=100, output_tokens=10), model, provider=provider)
    assert quote.priced is False
    assert quote.total_cost_usd is None
    assert quote.unpriced_reason
    with CostLedger(":memory:") as ledger:
        record = ledger.record_call(model=model, provider=provider, usage=TokenUsage(input_tokens=100))
        summary = ledger.summary()
    assert record.cost_usd is None and not record.priced
    assert summary.unpriced_calls == 1 and summary.actual_cost_usd == Decimal(0)
    assert summary.by_model[0].cost_usd is None


def test_savings_are_priced_at_the_model_prices() -> None:
    with CostLedger(":memory:") as ledger:
        event = ledger.record_savings(layer="compression", model="gpt-4o", provider="openai",
                                      input_tokens_before=3_000, input_tokens_after=1_000)
    # 2,000 input tokens at $2.50 / MTok
    assert event.cost_saved_usd == Decimal("0.005")
