"""A LlamaIndex FunctionAgent behind LeanCachedLLM, on the bundled SmolLM2 (runs offline).

The agent has one tool, ``get_weather`` (canned data for a few cities, so the run is
reproducible). The model is ``LeanVLLM``: the bundled SmolLM2-135M-Instruct served in this
process by vLLM. ``LeanCachedLLM`` puts the response cache in front of it; the agent asks the
same question twice:

- run 1: both agent steps go to the model (the tool call, then the answer from the tool's result);
- run 2: both steps are served from the cache. The served tool call is the very call of run 1
  (same call id, name and arguments), and the agent still runs the tool on it.

**The tool choice is forced.** A 135M-parameter model does not decide reliably on its own to
call a tool, so the agent's first step names the tool (``initial_tool_choice="get_weather"``),
which ``LeanVLLM`` enforces by guided decoding: the model only writes the arguments. The second
step has no forced choice (and no tool parser), so the model answers in plain text from the tool
result. With a larger model, leave ``initial_tool_choice`` out and give ``LeanVLLM`` a tool
parser (e.g. ``tool_parser="hermes"``) to let the model choose.

The bound tools and the tool choice are part of the cache key, so the same question with another
tool set, or for another tenant, is never served from these entries.

    python examples/llamaindex_function_agent.py [--cache PATH] [--question TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from llama_index.core.agent.workflow import AgentOutput, FunctionAgent, ToolCallResult
from llama_index.core.tools import FunctionTool

from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_index import LeanCachedLLM, LeanVLLM

WEATHER = {"paris": "18 C, light rain", "rome": "24 C, sunny", "oslo": "6 C, snow showers"}


class WeatherTool:
    """The agent's tool; counts how often it really ran."""

    def __init__(self) -> None:
        self.runs = 0

    def get_weather(self, city: str) -> str:
        """Current weather in a city (one of Paris, Rome, Oslo)."""
        self.runs += 1
        found = WEATHER.get(city.strip().lower())
        return f"The weather in {city} is {found}." if found else f"No weather report for {city}."


async def ask(agent: FunctionAgent, question: str) -> tuple[str, list[dict[str, Any]]]:
    """One agent run: its answer and the tool calls it made."""
    handler = agent.run(user_msg=question)
    calls = [{"id": event.tool_id, "name": event.tool_name, "arguments": event.tool_kwargs}
             async for event in handler.stream_events() if isinstance(event, ToolCallResult)]
    output: object = await handler
    assert isinstance(output, AgentOutput)  # what a FunctionAgent run returns
    return str(output.response.content or "").strip(), calls


async def run(cache_path: str, question: str) -> None:
    cache = ResponseCache(SQLiteCacheStore(cache_path), mode="exact")
    llm = LeanCachedLLM(LeanVLLM(max_tokens=48), cache=cache, tenant="example")
    weather = WeatherTool()
    agent = FunctionAgent(
        tools=[FunctionTool.from_defaults(fn=weather.get_weather)], llm=llm, streaming=False,
        system_prompt="You answer weather questions with the get_weather tool.",
        initial_tool_choice="get_weather",  # forced: see the module docstring
    )
    for number in (1, 2):
        lookups, hits = cache.stats.lookups, cache.stats.exact_hits
        answer, calls = await ask(agent, question)
        steps, served = cache.stats.lookups - lookups, cache.stats.exact_hits - hits
        print(f"run {number} answer: {answer}")
        print(f"run {number} tool calls: {json.dumps(calls, sort_keys=True)}")
        print(f"run {number} steps: {steps}, from the cache: {served}")
        print(f"run {number} served from cache: {'yes' if steps and served == steps else 'no'}")
    print(f"tool executions: {weather.runs}")
    print(f"cache: {cache.stats}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="example-function-agent-cache.sqlite3", help="SQLite cache file")
    parser.add_argument("--question", default="What is the weather in Paris?", help="the user's question")
    args = parser.parse_args(argv)
    asyncio.run(run(args.cache, args.question))


if __name__ == "__main__":
    main()
