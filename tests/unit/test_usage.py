from __future__ import annotations

import pytest

from lean_core import TokenUsage
from lean_core._usage_parsing import usage_from_payload
from lean_core.errors import InvalidParameterError


@pytest.mark.parametrize(
    ("field", "value"),
    [("input_tokens", -1), ("output_tokens", -5), ("input_tokens", 1.5), ("output_tokens", "3"),
     ("input_tokens", True), ("reasoning_tokens", -2), ("cached_input_tokens", 2.0)],
)
def test_bad_counts_are_rejected_with_the_field_named(field: str, value: object) -> None:
    with pytest.raises(InvalidParameterError) as info:
        TokenUsage(**{field: value})
    assert info.value.parameter == field and field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parts_cannot_exceed_totals() -> None:
    with pytest.raises(ValueError, match="cached_input_tokens"):
        TokenUsage(input_tokens=10, cached_input_tokens=11)
    with pytest.raises(ValueError, match="reasoning_tokens"):
        TokenUsage(output_tokens=1, reasoning_tokens=2)


def test_sum_keeps_the_least_exact_source() -> None:
    total = TokenUsage(input_tokens=3, source="provider") + TokenUsage(output_tokens=2, source="estimate")
    assert (total.input_tokens, total.output_tokens, total.source) == (3, 2, "estimate")
    assert total.estimated


def test_langchain_openai_and_anthropic_payloads() -> None:
    lc = usage_from_payload({"input_tokens": 100, "output_tokens": 20,
                             "input_token_details": {"cache_read": 40, "cache_creation": 10},
                             "output_token_details": {"reasoning": 7}})
    assert lc == TokenUsage(input_tokens=100, cached_input_tokens=40, cache_write_tokens=10,
                            output_tokens=20, reasoning_tokens=7)
    oa = usage_from_payload({"usage": {"prompt_tokens": 50, "completion_tokens": 9,
                                       "prompt_tokens_details": {"cached_tokens": 32},
                                       "completion_tokens_details": {"reasoning_tokens": 4}}})
    assert oa == TokenUsage(input_tokens=50, cached_input_tokens=32, output_tokens=9, reasoning_tokens=4)
    # Anthropic's input_tokens exclude cache reads and writes.
    an = usage_from_payload({"input_tokens": 10, "cache_read_input_tokens": 200,
                             "cache_creation_input_tokens": 30, "output_tokens": 5})
    assert an == TokenUsage(input_tokens=240, cached_input_tokens=200, cache_write_tokens=30, output_tokens=5)
    assert usage_from_payload({"something": 1}) is None
    assert usage_from_payload(None) is None


def test_payload_with_fractional_counts_is_rejected() -> None:
    with pytest.raises(ValueError, match="whole number"):
        usage_from_payload({"prompt_tokens": 1.5, "completion_tokens": 1})
