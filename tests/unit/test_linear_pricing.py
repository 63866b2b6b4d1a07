"""Which genai-prices prices are flat per token, and that a flat price of a sum of usages is the
sum of their prices, exactly (what lets a ledger price many local calls at once)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lean_core._linear_pricing import linear_price_key
from lean_core.pricing import price_usage
from lean_core.usage import TokenUsage

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def _usages(seed: int, n: int = 40) -> list[TokenUsage]:
    rng = random.Random(seed)
    usages = []
    for _ in range(n):
        inp = rng.randint(0, 20_000)
        cached = rng.randint(0, inp // 2)
        write = rng.randint(0, (inp - cached) // 2)
        out = rng.randint(0, 2_000)
        usages.append(TokenUsage(input_tokens=inp, cached_input_tokens=cached, cache_write_tokens=write,
                                 cache_write_1h_tokens=rng.randint(0, write), output_tokens=out,
                                 reasoning_tokens=rng.randint(0, out)))
    return usages


def _sum(usages: list[TokenUsage]) -> TokenUsage:
    total = usages[0]
    for usage in usages[1:]:
        total = total + usage
    return total


@pytest.mark.parametrize(("model", "provider"), [("gpt-4o", "openai"), ("claude-3-5-haiku", "anthropic"),
                                                 ("deepseek-chat", "deepseek")])
def test_a_flat_price_of_the_sum_is_the_sum_of_the_prices(model: str, provider: str) -> None:
    key_at = linear_price_key(model, provider=provider)
    assert key_at is not None
    assert key_at(DAY) is not None
    usages = _usages(seed=len(model))
    each = sum((price_usage(u, model, provider=provider, at=DAY).total_cost_usd or Decimal(1) for u in usages),
               Decimal(0))
    assert price_usage(_sum(usages), model, provider=provider, at=DAY).total_cost_usd == each


def test_time_of_day_prices_get_different_keys_and_the_same_key_within_one_window() -> None:
    key_at = linear_price_key("deepseek-chat", provider="deepseek")
    assert key_at is not None
    peak, off_peak = DAY.replace(hour=8), DAY.replace(hour=20)
    assert key_at(peak) == key_at(DAY.replace(hour=9)) != key_at(off_peak)
    # And the prices do differ between the windows (else the test would prove nothing).
    usage = TokenUsage(input_tokens=10_000, output_tokens=1_000)
    assert price_usage(usage, "deepseek-chat", provider="deepseek", at=peak).total_cost_usd != \
        price_usage(usage, "deepseek-chat", provider="deepseek", at=off_peak).total_cost_usd


def test_prices_tiered_by_prompt_length_are_not_flat() -> None:
    key_at = linear_price_key("claude-sonnet-4-5", provider="anthropic")
    assert key_at is not None and key_at(DAY) is None
    # Why grouping would be wrong there: two short prompts cost less than one long one.
    short = TokenUsage(input_tokens=150_000)
    one = price_usage(short, "claude-sonnet-4-5", provider="anthropic", at=DAY).total_cost_usd
    both = price_usage(short + short, "claude-sonnet-4-5", provider="anthropic", at=DAY).total_cost_usd
    assert one is not None and both is not None and both != 2 * one


@pytest.mark.parametrize("model", ["", "no-such-model-xyz"])
def test_unknown_models_have_no_key(model: str) -> None:
    assert linear_price_key(model, provider="openai") is None
