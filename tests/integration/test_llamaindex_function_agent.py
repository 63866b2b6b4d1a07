"""A LlamaIndex FunctionAgent through LeanCachedLLM and LeanBudgetLLM, on the real OpenAI class.

The model is llama-index's ``OpenAI`` talking to a loopback server that speaks the chat-completions
wire format with tool calls (tests/support/openai_tool_server.py); the cache is a real SQLite
store. The last test runs examples/llamaindex_function_agent.py on the bundled SmolLM2 (vLLM).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai import OpenAI

from lean_core.cache import ResponseCache, SQLiteCacheStore, tenant_scope
from lean_index import LeanBudgetLLM, LeanCachedLLM
from tests.support.openai_tool_server import ToolCallServer

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
QUESTION = "What is the weather in Paris?"
streaming = pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])


class Weather:
    """The agent's tools; counts how often each really ran."""

    def __init__(self) -> None:
        self.ran: list[dict[str, Any]] = []

    def get_weather(self, city: str) -> str:
        """Current weather in a city."""
        self.ran.append({"city": city})
        return f"{city}: 21 C, sunny"

    def get_time(self, city: str) -> str:
        """Current local time in a city."""
        self.ran.append({"time": city})
        return f"{city}: 14:00"

    def tools(self, *names: str) -> list[FunctionTool]:
        return [FunctionTool.from_defaults(fn=getattr(self, name)) for name in names]


@pytest.fixture
def server() -> Iterator[ToolCallServer]:
    with ToolCallServer(arguments={"get_weather": {"city": "Paris"}, "get_time": {"city": "Paris"}}) as s:
        yield s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteCacheStore]:
    s = SQLiteCacheStore(tmp_path / "cache.sqlite3")
    yield s
    s.close()


def openai(server: ToolCallServer) -> OpenAI:
    return OpenAI(model="gpt-4o-mini", api_key="sk-test", api_base=server.base_url, max_retries=0)


async def run(llm: Any, tools: list[FunctionTool], stream: bool) -> tuple[str, list[ToolCallResult]]:
    agent = FunctionAgent(tools=tools, llm=llm, streaming=stream, system_prompt="Use the tools.")
    handler = agent.run(user_msg=QUESTION)
    results = [event async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
    output: object = await handler
    assert isinstance(output, AgentOutput)
    return str(output.response.content), results


def calls(results: list[ToolCallResult]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.tool_id, r.tool_name, r.tool_kwargs) for r in results]


@streaming
async def test_agent_second_run_is_served_with_the_same_tool_calls(server: ToolCallServer,
                                                                  store: SQLiteCacheStore, stream: bool) -> None:
    weather = Weather()
    llm = LeanCachedLLM(openai(server), cache=ResponseCache(store, mode="exact"), tenant="acme")
    assert llm.metadata.is_function_calling_model

    first, first_calls = await run(llm, weather.tools("get_weather"), stream)
    assert len(server.requests) == 2  # the tool step and the answer step
    assert calls(first_calls) == [("call_1", "get_weather", {"city": "Paris"})]
    assert first == "The tool said: Paris: 21 C, sunny"

    second, second_calls = await run(llm, weather.tools("get_weather"), stream)
    assert len(server.requests) == 2  # both steps served from the cache
    assert calls(second_calls) == calls(first_calls)  # the same call id, name and arguments
    assert second == first
    assert weather.ran == [{"city": "Paris"}, {"city": "Paris"}]  # the tool still ran each time
    assert llm.cache.stats.exact_hits == 2 and llm.cache.stats.writes == 2

    with tenant_scope("globex"):  # another tenant: its own steps, from the server
        _, other_calls = await run(llm, weather.tools("get_weather"), stream)
    assert len(server.requests) == 4 and calls(other_calls)[0][0] == "call_3"

    # Another tool set (one more tool, or the same name with another schema): never served.
    _, more_calls = await run(llm, weather.tools("get_weather", "get_time"), stream)
    assert len(server.requests) == 6 and calls(more_calls)[0][0] == "call_5"

    def get_weather(city: str, unit: str = "C") -> str:
        """Current weather in a city."""
        return f"{city}: 21 {unit}"

    await run(llm, [FunctionTool.from_defaults(fn=get_weather)], stream)
    assert len(server.requests) == 8


def test_sync_tool_calls_are_served_the_same(server: ToolCallServer, store: SQLiteCacheStore) -> None:
    weather = Weather()
    llm = LeanCachedLLM(openai(server), cache=ResponseCache(store, mode="exact"), tenant="acme")
    tools = weather.tools("get_weather")
    fresh = llm.chat_with_tools(tools, user_msg=QUESTION)
    served = llm.chat_with_tools(tools, user_msg=QUESTION)
    streamed = list(llm.stream_chat_with_tools(tools, user_msg=QUESTION))
    assert len(server.requests) == 1 and served.additional_kwargs["lean_cache"] == "exact"
    assert (llm.get_tool_calls_from_response(served) == llm.get_tool_calls_from_response(streamed[-1])
            == llm.get_tool_calls_from_response(fresh) != [])
    # A streamed miss is stored too, and served to the non-streamed call.
    stream_fresh = list(llm.stream_chat_with_tools(tools, user_msg="What is the weather in Rome?"))
    again = llm.chat_with_tools(tools, user_msg="What is the weather in Rome?")
    assert len(server.requests) == 2
    assert llm.get_tool_calls_from_response(again) == llm.get_tool_calls_from_response(stream_fresh[-1])
    # predict_and_call runs the tool on the served call.
    output = llm.predict_and_call(tools, user_msg=QUESTION)
    assert output.response == "Paris: 21 C, sunny" and len(server.requests) == 2 and len(weather.ran) == 1


@streaming
async def test_forced_tool_choice_is_part_of_the_key(server: ToolCallServer, store: SQLiteCacheStore,
                                                   stream: bool) -> None:
    weather = Weather()
    llm = LeanCachedLLM(openai(server), cache=ResponseCache(store, mode="exact"), tenant="acme")
    tools = weather.tools("get_weather", "get_time")

    async def forced(choice: str | None) -> list[tuple[str, str, dict[str, Any]]]:
        agent = FunctionAgent(tools=tools, llm=llm, streaming=stream, initial_tool_choice=choice)
        handler = agent.run(user_msg=QUESTION)
        results = [e async for e in handler.stream_events() if isinstance(e, ToolCallResult)]
        await handler
        return calls(results)

    assert (await forced("get_time"))[0][1] == "get_time"
    assert (await forced(None))[0][1] == "get_weather"  # same question and tools, no forced choice
    assert (await forced("get_time"))[0][:2] == ("call_1", "get_time")  # served
    assert len(server.requests) == 4
    assert server.requests[0]["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


@streaming
async def test_invalid_tool_calls_are_not_stored(store: SQLiteCacheStore, stream: bool) -> None:
    cache = ResponseCache(store, mode="exact")
    for bad in ({"raw_arguments": "{city: Paris"}, {"tool_name": "drop_tables"}):
        with ToolCallServer(arguments={"get_weather": {"city": "Paris"}}, **bad) as server:  # type: ignore[arg-type]
            llm = LeanCachedLLM(openai(server), cache=cache, tenant="acme")
            tools = Weather().tools("get_weather")
            for _ in range(2):
                await llm.achat_with_tools(tools, user_msg=QUESTION) if not stream else [
                    r async for r in await llm.astream_chat_with_tools(tools, user_msg=QUESTION)]
            assert len(server.requests) == 2, bad  # nothing was served: nothing was stored
    assert store.count() == 0


@streaming
async def test_budget_applies_to_every_agent_step(server: ToolCallServer, store: SQLiteCacheStore,
                                                  stream: bool) -> None:
    weather = Weather()
    budgeted = LeanBudgetLLM(openai(server))
    assert budgeted.metadata.is_function_calling_model
    answer, results = await run(budgeted, weather.tools("get_weather"), stream)
    assert calls(results) == [("call_1", "get_weather", {"city": "Paris"})]
    assert answer == "The tool said: Paris: 21 C, sunny" and weather.ran == [{"city": "Paris"}]
    budgets = [body.get("max_tokens") for body in server.requests]
    assert len(budgets) == 2 and all(isinstance(b, int) and b > 0 for b in budgets), budgets

    # The cache in front of the budget: the second run is served, the budget still shapes misses.
    llm = LeanCachedLLM(budgeted, cache=ResponseCache(store, mode="exact"), tenant="acme")
    first, first_calls = await run(llm, weather.tools("get_weather"), stream)
    second, second_calls = await run(llm, weather.tools("get_weather"), stream)
    assert len(server.requests) == 4 and all(isinstance(b.get("max_tokens"), int) for b in server.requests)
    assert calls(second_calls) == calls(first_calls) and second == first
    assert len(weather.ran) == 3


def test_function_agent_example_runs_offline(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run([sys.executable, str(EXAMPLES / "llamaindex_function_agent.py"),
                          "--cache", str(tmp_path / "cache.sqlite3")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    (call,) = json.loads(lines["run 1 tool calls"])  # the forced tool, called by the model itself
    assert call["name"] == "get_weather" and isinstance(call["arguments"].get("city"), str)
    assert lines["run 2 tool calls"] == lines["run 1 tool calls"]  # same id, name and arguments
    assert (lines["run 1 served from cache"], lines["run 2 served from cache"]) == ("no", "yes")
    assert lines["run 2 answer"] == lines["run 1 answer"]
    assert int(lines["tool executions"]) == 2  # the tool ran on the served call too
