"""ChatLeanVLLM and LeanVLLM tool calling without an engine: what reaches the backend, what comes out.

The backend here is a recording fake; the same paths run against the real engine and a real
``vllm serve`` in tests/integration/test_tool_calling_vllm.py and test_remote_vllm.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.tools import FunctionTool

from lean_backends.tool_calling import (
    ToolCall,
    ToolCallDelta,
    ToolCallingChoice,
    ToolCallingChunk,
    ToolRequest,
)
from lean_chain import ChatLeanVLLM
from lean_core import InvalidParameterError, TokenUsage
from lean_core.generation import GenerationChunk, GenerationResult, SamplingOptions
from lean_index import LeanVLLM

USAGE = TokenUsage(input_tokens=30, output_tokens=6)
CALL = ToolCall(id="call_abc", name="magic_function", arguments={"input": 3})


@tool
def magic_function(input: int) -> int:
    """Applies a magic function to an input."""
    return input + 2


@tool
def get_weather(location: str) -> str:
    """Get the weather at a location."""
    return "sunny"


class ToolFake:
    """Records (prompt, options, tools) and answers with CALL when tools are given."""

    def __init__(self) -> None:
        self.requests: list[tuple[Any, SamplingOptions, ToolRequest | None]] = []

    def _result(self, prompt: Any, options: SamplingOptions, tools: ToolRequest | None) -> GenerationResult:
        self.requests.append((prompt, options, tools))
        calls = (CALL,) if tools is not None and tools.mode != "none" else ()
        return GenerationResult(model="fake", usage=USAGE, choices=(
            ToolCallingChoice(text="" if calls else "Hi", finish_reason="stop", completion_tokens=6, tool_calls=calls),))

    def _chunks(self, prompt: Any, options: SamplingOptions, tools: ToolRequest | None) -> list[GenerationChunk]:
        self.requests.append((prompt, options, tools))
        return [ToolCallingChunk(text="", tool_call_deltas=(ToolCallDelta(index=0, id=CALL.id, name=CALL.name),)),
                ToolCallingChunk(text="", tool_call_deltas=(ToolCallDelta(index=0, arguments='{"inp'),)),
                ToolCallingChunk(text="", finish_reason="stop",
                                 tool_call_deltas=(ToolCallDelta(index=0, arguments='ut": 3}'),)),
                GenerationChunk(text="", model="fake", usage=USAGE)]

    def generate(self, prompt: Any, options: SamplingOptions, *, cache_salt: str | None = None,
                 tools: ToolRequest | None = None) -> GenerationResult:
        return self._result(prompt, options, tools)

    async def agenerate(self, prompt: Any, options: SamplingOptions, *, cache_salt: str | None = None,
                        tools: ToolRequest | None = None) -> GenerationResult:
        return self._result(prompt, options, tools)

    def stream(self, prompt: Any, options: SamplingOptions, *, cache_salt: str | None = None,
               tools: ToolRequest | None = None) -> Iterator[GenerationChunk]:
        yield from self._chunks(prompt, options, tools)

    async def astream(self, prompt: Any, options: SamplingOptions, *, cache_salt: str | None = None,
                      tools: ToolRequest | None = None) -> AsyncIterator[GenerationChunk]:
        for chunk in self._chunks(prompt, options, tools):
            yield chunk


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> ToolFake:
    backend = ToolFake()
    monkeypatch.setattr(ChatLeanVLLM, "backend", lambda self: backend)
    monkeypatch.setattr(LeanVLLM, "backend", lambda self: backend)
    model = tmp_path / "fake-model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    (model / "model.safetensors").write_bytes(b"")
    monkeypatch.setenv("LEAN_INFERENCE_SMOLLM2_DIR", str(model))
    return backend


def test_bind_tools_rejects_an_unbound_tool_choice_at_bind_time() -> None:
    with pytest.raises(InvalidParameterError) as info:
        ChatLeanVLLM(model="/nonexistent").bind_tools([magic_function], tool_choice="get_weather")
    assert info.value.parameter == "tool_choice" and "magic_function" in info.value.allowed
    with pytest.raises(InvalidParameterError, match="tool_choice"):
        ChatLeanVLLM(model="/nonexistent").invoke("hi", tool_choice="any")  # no tools bound


def test_langchain_calls_come_back_with_ids_and_the_request_carries_the_tools(fake: ToolFake) -> None:
    llm = ChatLeanVLLM(tool_parser="hermes").bind_tools([magic_function, get_weather], tool_choice="any")
    message = llm.invoke("magic_function(3)?")
    assert message.tool_calls == [{"name": "magic_function", "args": {"input": 3}, "id": "call_abc",
                                   "type": "tool_call"}]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    _, options, tools = fake.requests[-1]
    assert tools is not None and tools.mode == "required" and tools.names == ("magic_function", "get_weather")
    assert tools.parser == "hermes" and options.json_schema is None  # the backend adds the guided schema
    assert asyncio.run(llm.ainvoke("again")).tool_calls[0]["id"] == "call_abc"


def test_langchain_stream_yields_tool_call_chunks(fake: ToolFake) -> None:
    llm = ChatLeanVLLM().bind_tools([magic_function], tool_choice="magic_function")
    full: Any = None
    for chunk in llm.stream("magic_function(3)?"):
        assert isinstance(chunk, AIMessageChunk)
        full = chunk if full is None else full + chunk
    assert full.tool_calls == [{"name": "magic_function", "args": {"input": 3}, "id": "call_abc",
                                "type": "tool_call"}]
    assert fake.requests[-1][2].mode == "named"  # type: ignore[union-attr]


def test_langchain_tool_history_reaches_the_backend_as_tool_turns(fake: ToolFake) -> None:
    history = [HumanMessage("magic_function(3)?"),
               AIMessage(content=[{"type": "text", "text": "Calling."},
                                  {"type": "tool_use", "id": "call_abc", "name": "magic_function", "input": {"input": 3}}],
                         tool_calls=[{"name": "magic_function", "args": {"input": 3}, "id": "call_abc"}]),
               ToolMessage("5", tool_call_id="call_abc", name="magic_function")]
    ChatLeanVLLM().bind_tools([magic_function], tool_choice="none").invoke(history)
    chat = fake.requests[-1][0]
    assert chat[1] == {"role": "assistant", "content": "Calling.",
                       "tool_calls": [{"id": "call_abc", "name": "magic_function", "arguments": {"input": 3}}]}
    assert chat[2] == {"role": "tool", "content": "5", "tool_call_id": "call_abc", "name": "magic_function"}


def test_llamaindex_is_a_function_calling_llm(fake: ToolFake) -> None:
    llm = LeanVLLM()
    assert llm.metadata.is_function_calling_model
    tools = [FunctionTool.from_defaults(fn=lambda input: input + 2, name="magic_function",
                                        description="Applies a magic function to an input.")]
    response = llm.chat_with_tools(tools, user_msg="magic_function(3)?", tool_required=True)
    (selection,) = llm.get_tool_calls_from_response(response)
    assert (selection.tool_id, selection.tool_name, selection.tool_kwargs) == ("call_abc", "magic_function", {"input": 3})
    assert response.message.additional_kwargs["tool_calls"][0]["function"]["name"] == "magic_function"
    assert fake.requests[-1][2].mode == "required"  # type: ignore[union-attr]
    asyncio.run(llm.achat_with_tools(tools, user_msg="again", tool_choice="magic_function"))
    assert fake.requests[-1][2].mode == "named"  # type: ignore[union-attr]
    *_, last = llm.stream_chat_with_tools(tools, user_msg="stream it", tool_required=True)
    assert llm.get_tool_calls_from_response(last)[0].tool_kwargs == {"input": 3}
    with pytest.raises(InvalidParameterError, match="tool_choice"):
        llm.chat_with_tools(tools, user_msg="x", tool_choice="unbound")


def test_llamaindex_without_calls_and_tool_results(fake: ToolFake) -> None:
    llm = LeanVLLM()
    response = llm.chat([ChatMessage(role="user", content="hi")])
    assert llm.get_tool_calls_from_response(response, error_on_no_tool_call=False) == []
    with pytest.raises(ValueError, match="tool call"):
        llm.get_tool_calls_from_response(response)
    history = [ChatMessage(role="user", content="magic_function(3)?"),
               ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="magic_function",
                                                                   tool_kwargs={"input": 3})]),
               ChatMessage(role="tool", content="5", additional_kwargs={"tool_call_id": "c1"})]
    llm.chat(history)
    chat = fake.requests[-1][0]
    assert chat[1]["tool_calls"] == [{"id": "c1", "name": "magic_function", "arguments": {"input": 3}}]
    assert chat[2] == {"role": "tool", "content": "5", "tool_call_id": "c1", "name": None}
