"""Function calling through LeanCachedLLM / LeanBudgetLLM: the codec, the keys and the checks.

The tool-call payloads are the real ones llama-index's ``OpenAI`` class builds (its own parser
reads them back); a small fake function-calling model (tests/support/budget_fakes_llamaindex.py)
is used only where a budget must cut a tool call. The whole path, agent included, runs against a
loopback OpenAI server in tests/integration/test_llamaindex_function_agent.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms import MockLLM
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI
from openai.types.chat import ChatCompletionMessageToolCall
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall, ChoiceDeltaToolCallFunction

from lean_core import InvalidParameterError
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_index import LeanBudgetLLM, LeanCachedLLM
from lean_index import _cache_codec as codec
from lean_index._function_calling import InvalidToolCall, bound_tool_names, check_tool_calls
from tests.support.budget_fakes_llamaindex import ToolWordBudgetLLM

OPENAI = OpenAI(model="gpt-4o-mini", api_key="sk-test", api_base="http://127.0.0.1:9/v1")
TOOLS = {"tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]}


def get_weather(city: str) -> str:
    """Current weather in a city."""
    return f"{city}: sunny"


def openai_tool_message(arguments: str = '{"city": "Paris"}', name: str = "get_weather") -> ChatMessage:
    """An assistant message as llama-index's OpenAI class builds it from a non-streamed answer."""
    call = ChatCompletionMessageToolCall.model_validate(
        {"id": "call_abc", "type": "function", "function": {"name": name, "arguments": arguments}})
    return ChatMessage(role=MessageRole.ASSISTANT,
                       blocks=[ToolCallBlock(tool_call_id="call_abc", tool_name=name, tool_kwargs=arguments)],
                       additional_kwargs={"tool_calls": [call]})


def streamed_tool_message() -> ChatMessage:
    """The same as the last chunk of a streamed answer: text block, delta tool-call objects."""
    call = ChoiceDeltaToolCall(index=0, id="call_abc", type="function",
                               function=ChoiceDeltaToolCallFunction(name="get_weather", arguments='{"city": "Paris"}'))
    return ChatMessage(role=MessageRole.ASSISTANT,
                       blocks=[TextBlock(text=""), ToolCallBlock(tool_call_id="call_abc", tool_name="get_weather",
                                                                 tool_kwargs='{"city": "Paris"}')],
                       additional_kwargs={"tool_calls": [call]})


@pytest.mark.parametrize("make", [openai_tool_message, streamed_tool_message], ids=["chat", "stream"])
def test_tool_calls_round_trip_losslessly(make: Any) -> None:
    original = ChatResponse(message=make(), additional_kwargs={"prompt_tokens": 3})
    served = codec.load_chat(codec.dump_chat(original), "exact")
    assert served.message.blocks == original.message.blocks
    stored_calls = served.message.additional_kwargs["tool_calls"]
    assert stored_calls == original.message.additional_kwargs["tool_calls"]
    assert type(stored_calls[0]) is type(original.message.additional_kwargs["tool_calls"][0])
    assert (OPENAI.get_tool_calls_from_response(served) == OPENAI.get_tool_calls_from_response(original)
            != [])
    # The fallback parser (provider objects only, no blocks) reads the same calls too.
    bare = served.message.model_copy(update={"blocks": []})
    assert OPENAI.get_tool_calls_from_response(ChatResponse(message=bare))[0].tool_kwargs == {"city": "Paris"}


def test_a_stored_payload_cannot_name_other_code() -> None:
    payload = json.loads(codec.dump_chat(ChatResponse(message=openai_tool_message())))
    for tag in ("os:system", "openai._client:OpenAI", "openai.types.chat:os.system"):
        payload["message"]["additional_kwargs"]["tool_calls"][0]["__lean_sdk_type__"] = tag
        with pytest.raises(codec.Uncacheable):
            codec.load_chat(json.dumps(payload), "exact")


def test_tool_traffic_makes_a_conversation_exact_only() -> None:
    identity = codec.llm_identity(OPENAI)
    question = ChatMessage(role=MessageRole.USER, content="And in Rome?")
    plain = [ChatMessage(role=MessageRole.USER, content="Hi"), ChatMessage(role=MessageRole.ASSISTANT, content="Hello"),
             question]
    assert not codec.chat_key(identity, plain, TOOLS).exact_only
    result = ChatMessage(role=MessageRole.TOOL, content="Paris: sunny", additional_kwargs={"tool_call_id": "call_abc"})
    earlier = [ChatMessage(role=MessageRole.USER, content="Weather in Paris?"), openai_tool_message(), result,
               ChatMessage(role=MessageRole.ASSISTANT, content="Sunny."), question]
    assert codec.chat_key(identity, earlier, TOOLS).exact_only  # final turn is user text, but tools were used
    assert codec.chat_key(identity, earlier[:3], TOOLS).exact_only


def test_bound_tools_and_tool_choice_shape_the_key() -> None:
    identity = codec.llm_identity(OPENAI)
    messages = [ChatMessage(role=MessageRole.USER, content="Weather in Paris?")]
    prepared = OPENAI._prepare_chat_with_tools([FunctionTool.from_defaults(fn=get_weather)], user_msg="x")
    prepared.pop("messages")
    keys = {codec.chat_key(identity, messages, prepared).llm,
            codec.chat_key(identity, messages, {**prepared, "tool_choice": "required"}).llm,
            codec.chat_key(identity, messages, {}).llm}
    assert len(keys) == 3

    def other(city: str, unit: str) -> str:
        """Current weather in a city."""
        return city + unit

    # Tool objects passed on as they are (models that take them so) key on what the model is told.
    same = [FunctionTool.from_defaults(fn=get_weather), FunctionTool.from_defaults(fn=get_weather)]
    schema = FunctionTool.from_defaults(fn=other, name="get_weather")
    key = codec.chat_key(identity, messages, {"tools": [same[0]]}).llm
    assert key == codec.chat_key(identity, messages, {"tools": [same[1]]}).llm
    assert key != codec.chat_key(identity, messages, {"tools": [schema]}).llm


def test_invalid_tool_calls_are_refused() -> None:
    names = bound_tool_names(TOOLS)
    assert names == {"get_weather"} and bound_tool_names({}) == frozenset()
    assert bound_tool_names({"tools": [{"type": "function"}]}) is None
    check_tool_calls(ChatResponse(message=openai_tool_message()), names, OPENAI)
    check_tool_calls(ChatResponse(message=ChatMessage(content="no call")), frozenset(), OPENAI)
    for message, bound in ((openai_tool_message(arguments="{city: Paris"), names),
                           (openai_tool_message(arguments='["Paris"]'), names),
                           (openai_tool_message(name="drop_tables"), names),
                           (openai_tool_message(), None),
                           (openai_tool_message(), frozenset())):
        with pytest.raises(InvalidToolCall):
            check_tool_calls(ChatResponse(message=message), bound, OPENAI)


def test_function_calling_follows_the_wrapped_model() -> None:
    assert LeanCachedLLM(OPENAI, tenant="t").metadata.is_function_calling_model
    assert LeanBudgetLLM(OPENAI).metadata.is_function_calling_model
    for wrapper in (LeanCachedLLM(MockLLM(), tenant="t"), LeanBudgetLLM(MockLLM())):
        assert not wrapper.metadata.is_function_calling_model
        with pytest.raises(InvalidParameterError, match="FunctionCallingLLM"):
            wrapper.chat_with_tools([FunctionTool.from_defaults(fn=get_weather)], user_msg="Weather in Paris?")


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
async def test_budget_never_continues_a_tool_call(use_async: bool) -> None:
    inner = ToolWordBudgetLLM(arguments='{"city": "Paris", "unit": "C", "days": 3}')
    llm = LeanBudgetLLM(inner, max_tokens=3, parameter="max_tokens", on_truncation="continue")
    tools = [FunctionTool.from_defaults(fn=get_weather)]
    if use_async:
        response = await llm.achat_with_tools(tools, user_msg="Weather in Paris?")
        streamed = [r async for r in await llm.astream_chat_with_tools(tools, user_msg="Weather in Paris?")]
    else:
        response = llm.chat_with_tools(tools, user_msg="Weather in Paris?")
        streamed = list(llm.stream_chat_with_tools(tools, user_msg="Weather in Paris?"))
    assert len(inner.calls) == 2 and all(call["max_tokens"] == 3 for call in inner.calls)  # no continuation
    for answer in (response, streamed[-1]):
        (block,) = [b for b in answer.message.blocks if isinstance(b, ToolCallBlock)]
        assert block.tool_name == "get_weather" and block.tool_kwargs == '{"city": "Paris", "unit":'
        assert answer.additional_kwargs["lean_budget"]["truncated"] is True
    whole = LeanBudgetLLM(ToolWordBudgetLLM(), max_tokens=50, parameter="max_tokens")
    (selection,) = whole.get_tool_calls_from_response(whole.chat_with_tools(tools, user_msg="Weather in Paris?"))
    assert (selection.tool_name, selection.tool_kwargs) == ("get_weather", {"city": "Paris"})


def test_cache_does_not_store_a_cut_tool_call(tmp_path: Path) -> None:
    store = SQLiteCacheStore(tmp_path / "c.sqlite3")
    inner = ToolWordBudgetLLM(arguments='{"city": "Paris", "unit": "C"}', max_tokens=2)
    llm = LeanCachedLLM(inner, cache=ResponseCache(store, mode="exact"), tenant="t")
    tools = [FunctionTool.from_defaults(fn=get_weather)]
    for _ in range(2):
        llm.chat_with_tools(tools, user_msg="Weather in Paris?")
    assert len(inner.calls) == 2 and store.count() == 0
    inner.max_tokens = None
    first = llm.chat_with_tools(tools, user_msg="Weather in Paris?")
    second = llm.chat_with_tools(tools, user_msg="Weather in Paris?")
    assert len(inner.calls) == 3 and second.additional_kwargs["lean_cache"] == "exact"
    assert llm.get_tool_calls_from_response(second) == llm.get_tool_calls_from_response(first)
    store.close()
