"""Provider prompt caching through the real ChatAnthropic and ChatOpenAI clients against loopback
servers speaking each provider's wire format: the request bodies carry the markers (and only
where expected), and the ledger records and prices the cache reads and writes the provider reports."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from genai_prices import Usage, calc_price
from langchain.agents import create_agent
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from lean_chain import LeanCostCallback, LeanTemplate, lean_pipeline
from lean_chain.middleware.prompt_cache import LeanPromptCacheMiddleware
from lean_chain.prompt_cache import LeanPromptCache
from lean_core import CostLedger
from lean_core._usage_parsing import usage_from_payload
from lean_core.errors import InvalidParameterError
from lean_core.pipeline import PipelineSettings
from lean_core.prompt_cache import PromptCacheSettings, prefix_identity, prompt_cache_key
from lean_core.usage import TokenUsage
from tests.support.anthropic_stub import AnthropicStub, AnthropicStubUsage, ToolCallReply
from tests.support.openai_stub import OpenAIStub, StubToolCall

pytestmark = pytest.mark.integration

SYSTEM = "You are Acme's weather desk. Answer in one sentence from the tool's report."
MODES = ["sync", "async"]


@tool
def get_weather(city: str) -> str:
    """The current weather report of a city."""
    return f"{city}: sunny, 21 C"


@tool
def get_forecast(city: str, days: int) -> str:
    """The forecast of a city for the next days."""
    return f"{city}: sunny for {days} days"


@pytest.fixture
def ledger() -> Iterator[CostLedger]:
    with CostLedger(":memory:") as led:
        yield led


def _anthropic(stub: AnthropicStub) -> ChatAnthropic:
    return ChatAnthropic(model="claude-sonnet-4-5", anthropic_api_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                         max_retries=0)


def _openai(stub: OpenAIStub, model: str = "gpt-4o") -> ChatOpenAI:
    return ChatOpenAI(model=model, base_url=stub.base_url, api_key="test-key", max_retries=0)  # type: ignore[arg-type]


def _markers(node: Any, path: str = "") -> list[tuple[str, dict[str, str]]]:
    """Every cache_control in a request body, with where it is."""
    found: list[tuple[str, dict[str, str]]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "cache_control":
                found.append((path, value))
            else:
                found.extend(_markers(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_markers(value, f"{path}[{index}]"))
    return found


def _unmarked(node: Any) -> Any:
    """The body without cache_control (what the provider caches is the content, not the marker)."""
    if isinstance(node, dict):
        return {k: _unmarked(v) for k, v in node.items() if k != "cache_control"}
    if isinstance(node, list):
        return [_unmarked(v) for v in node]
    return node


def _text_blocks(content: str | list[Any]) -> list[Any]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


async def _call(runnable: Any, value: Any, mode: str, config: dict[str, Any] | None = None) -> Any:
    return runnable.invoke(value, config) if mode == "sync" else await runnable.ainvoke(value, config)


def _anthropic_cost(usage: AnthropicStubUsage, model: str) -> object:
    return calc_price(Usage(
        input_tokens=usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_5m_tokens
        + usage.cache_write_1h_tokens, cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_write_5m_tokens + usage.cache_write_1h_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens, output_tokens=usage.output_tokens),
        model, provider_id="anthropic").total_price


CONVERSATION: list[BaseMessage] = [
    SystemMessage(SYSTEM),
    HumanMessage("What's the weather in Paris?"),
    AIMessage("Paris is sunny, 21 C."),
    HumanMessage("And is that warm for December?"),
]


# -- Anthropic: LCEL ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [*MODES, "stream", "astream"])
async def test_anthropic_lcel_marks_last_tool_system_and_stable_turn(ledger: CostLedger, mode: str) -> None:
    usage = AnthropicStubUsage(cache_write_5m_tokens=0, cache_write_1h_tokens=1500)
    with AnthropicStub(usage=usage) as stub:
        llm = LeanPromptCache.wrap(_anthropic(stub).bind_tools([get_weather, get_forecast]), ttl="1h")
        callback = LeanCostCallback(ledger)
        config = {"callbacks": [callback]}
        if mode == "stream":
            chunks = list(llm.stream(CONVERSATION, config))
            assert len(chunks) > 2
        elif mode == "astream":
            chunks = [c async for c in llm.astream(CONVERSATION, config)]
            assert len(chunks) > 2
        else:
            await _call(llm, CONVERSATION, mode, config)
    (body,) = stub.requests
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    assert _markers(body) == [(".messages[1].content[0]", one_hour), (".system[0]", one_hour),
                              (".tools[1]", one_hour)]
    assert body["tools"][1]["name"] == "get_forecast" and "cache_control" not in body["tools"][0]
    assert body["messages"][1]["role"] == "assistant"  # the stable turn, not the newest question
    assert body["messages"][2]["content"] == "And is that warm for December?"
    (record,) = callback.records
    assert record.usage == usage.as_token_usage()
    assert record.usage.cache_write_1h_tokens == 1500 and record.usage.cached_input_tokens == 2048
    assert record.cost_usd == _anthropic_cost(usage, "claude-sonnet-4-5-20250929")
    # The ledger row keeps the price of the 1-hour writes (the split itself is not a column).
    (stored,) = ledger.calls()
    assert stored.cost_usd == record.cost_usd and stored.usage.cache_write_tokens == 1500


@pytest.mark.parametrize("mode", MODES)
async def test_anthropic_five_minute_writes_are_priced_as_genai_prices_does(ledger: CostLedger, mode: str) -> None:
    usage = AnthropicStubUsage(cache_write_5m_tokens=1024, cache_write_1h_tokens=0)
    with AnthropicStub(usage=usage) as stub:
        llm = LeanPromptCache.wrap(_anthropic(stub))
        await _call(llm, [SystemMessage(SYSTEM), HumanMessage("Hi")], mode, {"callbacks": [LeanCostCallback(ledger)]})
    (body,) = stub.requests
    assert _markers(body) == [(".system[0]", {"type": "ephemeral", "ttl": "5m"})]  # no tools, no stable turn
    (record,) = ledger.calls()
    assert record.usage == TokenUsage(input_tokens=40 + 2048 + 1024, cached_input_tokens=2048,
                                      cache_write_tokens=1024, output_tokens=12)
    assert record.cost_usd == _anthropic_cost(usage, "claude-sonnet-4-5-20250929")


@pytest.mark.parametrize("mode", MODES)
async def test_more_than_four_anthropic_breakpoints_are_refused_before_sending(mode: str) -> None:
    marked = {"type": "ephemeral"}
    messages = [SystemMessage(SYSTEM),
                HumanMessage([{"type": "text", "text": "doc one", "cache_control": marked},
                              {"type": "text", "text": "doc two", "cache_control": marked}]),
                AIMessage("Read them."), HumanMessage("Summarise.")]
    with AnthropicStub() as stub:
        llm = LeanPromptCache.wrap(_anthropic(stub).bind_tools([get_weather]))
        with pytest.raises(InvalidParameterError) as info:
            await _call(llm, messages, mode)
        assert info.value.parameter == "breakpoints" and info.value.received == 5
        assert stub.requests == []
        # without the tool breakpoint the request fits: 2 + system + stable turn = 4
        await _call(LeanPromptCache.wrap(_anthropic(stub).bind_tools([get_weather]), cache_tools=False), messages, mode)
    assert len(_markers(stub.requests[0])) == 4


# -- OpenAI: LCEL ------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
async def test_openai_lcel_sends_a_hashed_per_tenant_prompt_cache_key(stub: OpenAIStub, ledger: CostLedger,
                                                                      mode: str) -> None:
    llm = LeanPromptCache.wrap(_openai(stub), namespace="weather-app")
    messages = [SystemMessage(SYSTEM), HumanMessage("Weather in Paris?")]
    for tenant in ("acme", "acme", "globex"):
        await _call(llm, messages, mode, {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": tenant}})
    keys = [body["prompt_cache_key"] for body in stub.requests]
    expected = prompt_cache_key(prefix=prefix_identity([SYSTEM]), tenant="acme", namespace="weather-app")
    assert keys[0] == keys[1] == expected != keys[2]
    assert all("acme" not in key and "globex" not in key for key in keys)
    assert all(_markers(body) == [] for body in stub.requests)
    records = ledger.calls()
    assert [r.tenant for r in records] == ["acme", "acme", "globex"]
    cost = calc_price(Usage(input_tokens=120, cache_read_tokens=64, output_tokens=15, output_reasoning_tokens=5),
                      "gpt-4o-2024-08-06", provider_id="openai").total_price
    assert all(r.usage.cached_input_tokens == 64 and r.cost_usd == cost for r in records)


@pytest.mark.parametrize("mode", MODES)
async def test_automatic_caching_provider_request_is_unchanged(stub: OpenAIStub, mode: str) -> None:
    # DeepSeek through the OpenAI-compatible client: it caches prefixes itself, nothing is added.
    messages = [SystemMessage(SYSTEM), HumanMessage("Weather in Paris?")]
    await _call(_openai(stub, "deepseek-chat").bind_tools([get_weather]), messages, mode)
    await _call(LeanPromptCache.wrap(_openai(stub, "deepseek-chat").bind_tools([get_weather])), messages, mode)
    plain, wrapped = stub.requests
    assert wrapped == plain and "prompt_cache_key" not in wrapped and _markers(wrapped) == []


# -- create_agent ------------------------------------------------------------------------------
async def _run_agent(agent: Any, mode: str, config: dict[str, Any]) -> dict[str, Any]:
    question = {"messages": [HumanMessage("What's the weather in Paris?")]}
    result: dict[str, Any] = await _call(agent, question, mode, config)
    return result


@pytest.mark.parametrize("assistant_text", ["", "Let me look that up."])
@pytest.mark.parametrize("mode", MODES)
async def test_agent_step_two_marks_a_prefix_covering_step_one(ledger: CostLedger, mode: str,
                                                              assistant_text: str) -> None:
    script: list[str | ToolCallReply] = [ToolCallReply("get_weather", {"city": "Paris"}, text=assistant_text),
                                         "Paris is sunny, 21 C."]
    with AnthropicStub(script=script) as stub:
        middleware = LeanPromptCacheMiddleware(ttl="1h")
        agent = create_agent(_anthropic(stub), [get_forecast, get_weather], system_prompt=SYSTEM,
                             middleware=[middleware])
        result = await _run_agent(agent, mode, {"callbacks": [LeanCostCallback(ledger)]})
    assert result["messages"][-1].text == "Paris is sunny, 21 C."
    step_one, step_two = stub.requests
    one_hour = {"type": "ephemeral", "ttl": "1h"}
    assert _markers(step_one) == [(".system[0]", one_hour), (".tools[1]", one_hour)]
    marks = _markers(step_two)
    assert len(marks) == 3 and marks[1:] == [(".system[0]", one_hour), (".tools[1]", one_hour)]
    # The conversation breakpoint of step 2 ends a prefix that contains all of step 1's request.
    message_index = int(marks[0][0].split("]")[0].removeprefix(".messages["))
    marked_prefix = _unmarked(step_two["messages"][: message_index + 1])
    step_one_messages = _unmarked(step_one["messages"])
    assert [dict(m, content=_text_blocks(m["content"])) for m in marked_prefix[: len(step_one_messages)]] == \
        [dict(m, content=_text_blocks(m["content"])) for m in step_one_messages]
    assert _unmarked(step_two["system"]) == _unmarked(step_one["system"])
    assert _unmarked(step_two["tools"]) == _unmarked(step_one["tools"])
    if assistant_text:
        # The assistant turn has text: its text block carries the marker (the tool_use block
        # after it is rebuilt by langchain-anthropic without extra keys).
        assert marks[0][0] == ".messages[1].content[0]"
        assert step_two["messages"][1]["content"][0]["text"] == assistant_text
    else:
        # A tool-call-only assistant turn cannot carry a marker: the question before it does.
        assert marks[0][0] == ".messages[0].content[0]"
    # the newest input (the tool result) is not marked
    assert step_two["messages"][-1]["content"][0]["type"] == "tool_result"
    assert "cache_control" not in step_two["messages"][-1]["content"][0]
    assert middleware.last_plan is not None and middleware.last_plan.breakpoints == 3
    records = ledger.calls()
    assert len(records) == 2
    assert all(r.usage.cache_write_tokens == 1024 and r.usage.cached_input_tokens == 2048 for r in records)
    assert all(r.cost_usd == _anthropic_cost(AnthropicStubUsage(), "claude-sonnet-4-5-20250929") for r in records)


@pytest.mark.parametrize("mode", MODES)
async def test_agent_openai_every_step_has_the_same_tenant_key(stub: OpenAIStub, ledger: CostLedger,
                                                               mode: str) -> None:
    stub.script = [StubToolCall("get_weather", {"city": "Paris"}), "Paris is sunny."]
    agent = create_agent(_openai(stub), [get_weather], system_prompt=SYSTEM,
                         middleware=[LeanPromptCacheMiddleware()])
    result = await _run_agent(agent, mode, {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": "acme"}})
    assert result["messages"][-1].text == "Paris is sunny."
    step_one, step_two = stub.requests
    assert step_one["prompt_cache_key"] == step_two["prompt_cache_key"]
    assert step_one["prompt_cache_key"].startswith("lean-") and "acme" not in step_one["prompt_cache_key"]
    assert _markers(step_one) == _markers(step_two) == []
    assert [r.usage.cached_input_tokens for r in ledger.calls()] == [64, 64]


@pytest.mark.parametrize("mode", MODES)
async def test_agent_on_an_automatic_provider_is_passed_through(stub: OpenAIStub, mode: str) -> None:
    stub.script = ["Sunny."]
    agent = create_agent(_openai(stub, "deepseek-chat"), [get_weather], system_prompt=SYSTEM,
                         middleware=[LeanPromptCacheMiddleware()])
    await _run_agent(agent, mode, {})
    (body,) = stub.requests
    assert "prompt_cache_key" not in body and _markers(body) == []


# -- LeanTemplate and lean_pipeline ------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
async def test_lean_template_marks_its_stable_system_prompt(mode: str) -> None:
    template = LeanTemplate(role="You are Acme's support agent.", task="Answer from the policy.",
                            context="Policy:\n{policy}", question="Question: {question}", model="claude-sonnet-4-5",
                            prompt_cache=PromptCacheSettings(ttl="1h"))
    values = {"policy": "Returns within 30 days.", "question": "Can I return shoes?"}
    with AnthropicStub() as stub:
        await _call(template | _anthropic(stub), values, mode)
        plain = copy.deepcopy(template)
        plain.prompt_cache = None
        await _call(plain | _anthropic(stub), values, mode)
    marked, unmarked = stub.requests
    assert _markers(marked) == [(".system[0]", {"type": "ephemeral", "ttl": "1h"})]
    assert _markers(unmarked) == [] and _unmarked(marked)["system"][0]["text"] == unmarked["system"]


@pytest.mark.parametrize("mode", MODES)
async def test_lean_pipeline_keys_openai_calls_by_tenant(stub: OpenAIStub, ledger: CostLedger, mode: str) -> None:
    settings = PipelineSettings(prompt_cache={"namespace": "rag"}, cache={"enabled": False},
                                compression={"enabled": False}, budget={"enabled": False})
    chain = lean_pipeline(_openai(stub), settings=settings, ledger=ledger)
    for value in ({"question": "Can I return shoes?", "context": "Returns within 30 days.", "tenant": "acme"},
                  {"question": "Can I return a hat?", "context": "Returns within 30 days.", "tenant": "acme"},
                  {"question": "Can I return shoes?", "context": "Returns within 30 days."},
                  {"question": "Can I return shoes?", "context": "Returns within 30 days."}):
        await _call(chain, value, mode)
    acme_1, acme_2, anon_1, anon_2 = (body["prompt_cache_key"] for body in stub.requests)
    system = stub.requests[0]["messages"][0]
    assert system["role"] == "system"
    assert acme_1 == acme_2 == prompt_cache_key(prefix=prefix_identity([system["content"]]), tenant="acme",
                                                namespace="rag")
    # requests without a tenant share no prefix with anyone (not even each other)
    assert len({acme_1, anon_1, anon_2}) == 3
    plain = lean_pipeline(_openai(stub), settings=settings.model_copy(update={"prompt_cache": None}))
    await _call(plain, {"question": "Can I return shoes?", "context": "x", "tenant": "acme"}, mode)
    assert "prompt_cache_key" not in stub.requests[-1]


@pytest.mark.parametrize("mode", MODES)
async def test_explicit_provider_overrides_detection(stub: OpenAIStub, mode: str) -> None:
    messages = [SystemMessage(SYSTEM), HumanMessage("Weather in Paris?")]
    # gpt-4o served by a vLLM server behind the OpenAI client: vLLM caches prefixes itself
    await _call(LeanPromptCache.wrap(_openai(stub), provider="vllm"), messages, mode)
    # an unrecognised model name behind the OpenAI client, declared OpenAI
    await _call(LeanPromptCache.wrap(_openai(stub, "acme-finetune"), provider="openai"), messages, mode)
    vllm_body, forced_body = stub.requests
    assert "prompt_cache_key" not in vllm_body
    assert forced_body["prompt_cache_key"] == prompt_cache_key(prefix=prefix_identity([SYSTEM]), tenant=None)


def test_bad_options_are_refused_at_construction(stub: OpenAIStub) -> None:
    with pytest.raises(InvalidParameterError) as provider:
        LeanPromptCache.wrap(_openai(stub), provider="openia")
    assert provider.value.parameter == "provider" and provider.value.received == "openia"
    with pytest.raises(InvalidParameterError) as ttl:
        LeanPromptCacheMiddleware(ttl="10m")  # type: ignore[arg-type]
    assert ttl.value.parameter == "ttl"
    with pytest.raises(InvalidParameterError) as count:
        LeanPromptCacheMiddleware(turn_breakpoints=3)
    assert count.value.parameter == "turn_breakpoints" and count.value.received == 5


@pytest.mark.parametrize("mode", MODES)
async def test_lean_pipeline_marks_anthropic_calls_and_keeps_cache_usage(ledger: CostLedger, mode: str) -> None:
    usage = AnthropicStubUsage(cache_write_5m_tokens=100, cache_write_1h_tokens=900)
    settings = PipelineSettings(prompt_cache={"ttl": "1h"}, cache={"enabled": False},
                                compression={"enabled": False}, budget={"enabled": False})
    with AnthropicStub(usage=usage) as stub:
        chain = lean_pipeline(_anthropic(stub), settings=settings, ledger=ledger)
        message = await _call(chain, {"question": "Can I return shoes?", "context": "Returns within 30 days.",
                                      "tenant": "acme"}, mode)
    (body,) = stub.requests
    assert _markers(body) == [(".system[0]", {"type": "ephemeral", "ttl": "1h"})]
    assert usage_from_payload(message.usage_metadata) == usage.as_token_usage()
    paid = [r for r in ledger.calls() if r.usage.cache_write_tokens]
    assert paid and paid[0].usage.cache_write_tokens == 1000 and paid[0].usage.cached_input_tokens == 2048
    assert paid[0].cost_usd == _anthropic_cost(usage, "claude-sonnet-4-5-20250929")
