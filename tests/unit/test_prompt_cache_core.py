"""Provider prompt caching, framework-free: provider detection, the marker plan, the 4-breakpoint
limit, the OpenAI key, usage parsing of cache reads/writes and their prices against genai-prices."""

from __future__ import annotations

from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from lean_core._usage_parsing import usage_from_payload
from lean_core.errors import InvalidParameterError
from lean_core.pricing import price_usage
from lean_core.prompt_cache import (
    PROVIDER_CACHING,
    PromptCacheSettings,
    RequestShape,
    check_cache_provider,
    detect_cache_provider,
    plan_prompt_cache,
    prefix_identity,
    prompt_cache_key,
)
from lean_core.usage import TokenUsage


@pytest.mark.parametrize(("class_name", "model_name", "ls_provider", "expected"), [
    ("ChatAnthropic", "claude-sonnet-4-5", "anthropic", "anthropic"),
    ("ChatOpenAI", "gpt-4o", "openai", "openai"),
    ("ChatOpenAI", "o3-mini", None, "openai"),
    ("ChatOpenAI", "deepseek-chat", "openai", "deepseek"),  # OpenAI-compatible client, DeepSeek model
    ("ChatOpenAI", "grok-3", "openai", "xai"),
    ("AzureChatOpenAI", "gpt-4o", "azure", "azure"),
    ("ChatDeepSeek", "deepseek-chat", "deepseek", "deepseek"),
    ("ChatGoogleGenerativeAI", "gemini-2.5-flash", "google_genai", "google"),
    ("ChatXAI", "grok-4", "xai", "xai"),
    ("ChatLeanVLLM", "SmolLM2-135M-Instruct", None, "vllm"),
    ("ChatAnthropic", "some-model", None, "anthropic"),  # a vendor-only client decides
    ("ChatAnthropicVertex", "claude-sonnet-4-5@20250929", "google_vertexai", "anthropic"),
    (None, "anthropic/claude-3-5-haiku", None, "anthropic"),
    ("MyChat", "llama-3-8b", None, "unknown"),
])
def test_provider_detection(class_name: str | None, model_name: str, ls_provider: str | None, expected: str) -> None:
    assert detect_cache_provider(class_name=class_name, model_name=model_name, ls_provider=ls_provider) == expected


def test_every_provider_is_documented_and_bad_names_are_refused() -> None:
    assert PROVIDER_CACHING["anthropic"].style == "breakpoints"
    assert PROVIDER_CACHING["openai"].style == "cache_key"
    assert {PROVIDER_CACHING[p].style for p in ("deepseek", "google", "xai", "vllm")} == {"automatic"}
    with pytest.raises(InvalidParameterError) as info:
        check_cache_provider("antropic")
    assert info.value.parameter == "provider" and "anthropic" in info.value.allowed
    assert info.value.received == "antropic"


def test_settings_refuse_more_than_four_breakpoints_and_bad_ttl() -> None:
    with pytest.raises(InvalidParameterError) as info:
        PromptCacheSettings(turn_breakpoints=3)  # + tools + system = 5
    assert info.value.parameter == "turn_breakpoints" and "4" in info.value.allowed and info.value.received == 5
    assert PromptCacheSettings(turn_breakpoints=2).requested_breakpoints == 4
    assert PromptCacheSettings(cache_tools=False, cache_system=False, turn_breakpoints=4).requested_breakpoints == 4
    with pytest.raises(InvalidParameterError) as ttl:
        PromptCacheSettings(ttl="2h")  # type: ignore[arg-type]
    assert ttl.value.parameter == "ttl" and ttl.value.received == "2h"
    with pytest.raises(InvalidParameterError):
        PromptCacheSettings(turn_breakpoints=-1)
    assert PromptCacheSettings(ttl="1h").cache_control == {"type": "ephemeral", "ttl": "1h"}


def _plan(shape: RequestShape, provider: str = "anthropic", **options: object):  # type: ignore[no-untyped-def]
    return plan_prompt_cache(PromptCacheSettings(**options), shape, provider=provider)  # type: ignore[arg-type]


def test_anthropic_single_turn_marks_tools_and_system_only() -> None:
    plan = _plan(RequestShape(roles=["user"], has_system=True, tool_count=3))
    assert plan.tool_index == 2 and plan.mark_system and plan.message_indices == ()
    assert plan.breakpoints == 2 and plan.prompt_cache_key is None
    assert plan.cache_control == {"type": "ephemeral", "ttl": "5m"}


def test_anthropic_marks_the_last_stable_turn_not_the_newest_input() -> None:
    # user, assistant(tool call), tool result, assistant(text), user: the newest input is the
    # last user message; the stable turn is the assistant message before it.
    roles = ["user", "assistant", "tool", "assistant", "user"]
    assert _plan(RequestShape(roles=roles)).message_indices == (3,)
    assert _plan(RequestShape(roles=roles), turn_breakpoints=2).message_indices == (1, 3)
    # several tool results in a row are one input run
    assert _plan(RequestShape(roles=["user", "assistant", "tool", "tool"])).message_indices == (1,)
    # an assistant turn of tool calls only cannot carry a marker: the message before gets it
    unmarkable = RequestShape(roles=["user", "assistant", "tool"], markable=[True, False, True])
    assert _plan(unmarkable).message_indices == (0,)
    # consecutive user messages are one input (Anthropic merges them): nothing stable yet
    assert _plan(RequestShape(roles=["user", "user"])).message_indices == ()
    assert _plan(RequestShape(roles=["user"]), turn_breakpoints=0).message_indices == ()


def test_anthropic_counts_markers_already_in_the_request() -> None:
    shape = RequestShape(roles=["user", "assistant", "user"], has_system=True, tool_count=1, existing_breakpoints=2)
    with pytest.raises(InvalidParameterError) as info:
        _plan(shape)
    assert info.value.parameter == "breakpoints" and info.value.received == 5
    assert "at most 4" in info.value.allowed
    assert _plan(shape, cache_tools=False).breakpoints == 2  # 2 + 2 = 4 is allowed


def test_min_messages_and_automatic_providers_get_nothing() -> None:
    shape = RequestShape(roles=["user"], has_system=True, tool_count=1)
    assert _plan(shape, min_messages=3).empty
    for provider in ("deepseek", "google", "xai", "vllm", "groq", "azure", "mistral", "unknown"):
        plan = _plan(shape, provider=provider)
        assert plan.empty and plan.cache_control is None, provider


def test_openai_key_is_stable_per_tenant_and_prefix_and_hides_the_tenant() -> None:
    prefix = prefix_identity(["You are Acme's support agent.", '{"name": "lookup"}'])
    shape = RequestShape(roles=["user"], has_system=True, prefix=prefix)
    settings = PromptCacheSettings()
    acme = plan_prompt_cache(settings, shape, provider="openai", tenant="acme-corp")
    again = plan_prompt_cache(settings, shape, provider="openai", tenant="acme-corp")
    other = plan_prompt_cache(settings, shape, provider="openai", tenant="globex")
    assert acme.prompt_cache_key == again.prompt_cache_key != other.prompt_cache_key
    key = acme.prompt_cache_key
    assert key is not None and key.startswith("lean-") and len(key) == 37 and "acme" not in key
    assert acme.breakpoints == 0 and acme.cache_control is None
    changed_prefix = RequestShape(roles=["user"], prefix=prefix_identity(["another system prompt"]))
    assert plan_prompt_cache(settings, changed_prefix, provider="openai", tenant="acme-corp").prompt_cache_key != key
    assert prompt_cache_key(prefix=prefix, tenant="acme-corp", namespace="app-2") != key
    # the settings' tenant is the default; no tenant at all is a key of its own
    assert plan_prompt_cache(PromptCacheSettings(tenant="acme-corp"), shape, provider="openai").prompt_cache_key == key
    assert prompt_cache_key(prefix=prefix, tenant=None) != key
    # length-prefixed parts: ("ab", "c") and ("a", "bc") are different prefixes
    assert prefix_identity(["ab", "c"]) != prefix_identity(["a", "bc"])


def test_usage_parsing_reads_cache_writes_in_every_shape() -> None:
    # ChatAnthropic's usage_metadata when Anthropic splits writes by TTL: cache_creation is 0
    langchain_split = {"input_tokens": 3112, "output_tokens": 12, "input_token_details": {
        "cache_read": 2048, "cache_creation": 0, "ephemeral_5m_input_tokens": 24, "ephemeral_1h_input_tokens": 1000}}
    assert usage_from_payload(langchain_split) == TokenUsage(
        input_tokens=3112, cached_input_tokens=2048, cache_write_tokens=1024, cache_write_1h_tokens=1000,
        output_tokens=12)
    raw_anthropic = {"input_tokens": 40, "cache_read_input_tokens": 2048, "cache_creation_input_tokens": 1024,
                     "cache_creation": {"ephemeral_5m_input_tokens": 24, "ephemeral_1h_input_tokens": 1000},
                     "output_tokens": 12}
    assert usage_from_payload(raw_anthropic) == usage_from_payload(langchain_split)
    openai_chat = {"prompt_tokens": 2000, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 1536}}
    assert usage_from_payload(openai_chat) == TokenUsage(input_tokens=2000, cached_input_tokens=1536, output_tokens=10)
    openai_responses = {"input_tokens": 2000, "output_tokens": 10, "input_tokens_details": {"cached_tokens": 1536},
                        "output_tokens_details": {"reasoning_tokens": 4}}
    assert usage_from_payload(openai_responses) == TokenUsage(
        input_tokens=2000, cached_input_tokens=1536, output_tokens=10, reasoning_tokens=4)
    with pytest.raises(InvalidParameterError) as info:
        TokenUsage(input_tokens=10, cache_write_tokens=2, cache_write_1h_tokens=3)
    assert info.value.parameter == "cache_write_1h_tokens"


@pytest.mark.parametrize(("model", "provider", "usage", "genai_usage"), [
    ("gpt-4o-2024-08-06", "openai",
     TokenUsage(input_tokens=2000, cached_input_tokens=1536, output_tokens=300),
     Usage(input_tokens=2000, cache_read_tokens=1536, output_tokens=300)),
    ("claude-sonnet-4-5", "anthropic",
     TokenUsage(input_tokens=3112, cached_input_tokens=2048, cache_write_tokens=1024, output_tokens=12),
     Usage(input_tokens=3112, cache_read_tokens=2048, cache_write_tokens=1024, output_tokens=12)),
    ("claude-sonnet-4-5", "anthropic",
     TokenUsage(input_tokens=3112, cached_input_tokens=2048, cache_write_tokens=1024, cache_write_1h_tokens=1000,
                output_tokens=12),
     Usage(input_tokens=3112, cache_read_tokens=2048, cache_write_tokens=1024, cache_write_1h_tokens=1000,
           output_tokens=12)),
])
def test_cache_tokens_are_priced_as_genai_prices_prices_them(model: str, provider: str, usage: TokenUsage,
                                                            genai_usage: Usage) -> None:
    quote = price_usage(usage, model, provider=provider)
    expected = calc_price(genai_usage, model, provider_id=provider)
    assert quote.priced and quote.total_cost_usd == expected.total_price
    assert quote.input_cost_usd == expected.input_price


def test_genai_prices_distinguishes_one_hour_writes_and_cache_reads_are_cheaper() -> None:
    five_minutes = TokenUsage(input_tokens=1100, cache_write_tokens=1000, output_tokens=0)
    one_hour = five_minutes.model_copy(update={"cache_write_1h_tokens": 1000})
    reads = TokenUsage(input_tokens=1100, cached_input_tokens=1000, output_tokens=0)
    plain = TokenUsage(input_tokens=1100, output_tokens=0)
    cost = {name: price_usage(u, "claude-sonnet-4-5", provider="anthropic").total_cost_usd
            for name, u in (("5m", five_minutes), ("1h", one_hour), ("read", reads), ("plain", plain))}
    assert all(isinstance(c, Decimal) for c in cost.values())
    assert cost["read"] < cost["plain"] < cost["5m"] < cost["1h"]  # type: ignore[operator]
    # Sonnet 4.5: $3/M input, writes $3.75/M (5m) and $6/M (1h), reads $0.30/M
    assert cost["1h"] - cost["5m"] == Decimal("0.00225")  # type: ignore[operator]
