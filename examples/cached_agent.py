"""A LangChain 1.x agent (`create_agent`) whose model calls go through lean-inference middleware.

Runs offline with the bundled SmolLM2-135M-Instruct served in this process by vLLM
(`ChatLeanVLLM`, which takes tools through `bind_tools`). The agent has two tools, `search_faq`
(the FAQ page of an invented coworking space) and `room_status`, and this middleware stack:

* `LeanLedgerMiddleware`: every paid model call is one ledger row (tags `agent`, `step:N`) with
  the provider's usage, prefix-cache hits included;
* `LeanCacheMiddleware`: each agent step is looked up in the response cache, per tenant
  (`config={"metadata": {"tenant": ...}}`), keyed on the system prompt, the messages, the tools
  and `tool_choice`. The same question again is served step by step from the cache, tool calls
  included, and the tools still run; a reworded question can be a verified semantic hit on the
  first step only (later steps hold tool results: exact matches only); another tenant never sees
  the entries;
* `LeanBudgetMiddleware`: a predicted `max_tokens` on every call, a cut answer reported;
* `LeanCompressMiddleware`: the FAQ page the tool returns is compressed for the question once,
  when it enters the conversation, and stays compressed in the agent state, so the next step's
  prompt starts with exactly the bytes the engine has cached.

**What a 135M model cannot do, and what this example does about it.** It cannot choose a tool:
asked to route between two tools it does about as well as a coin. So a small middleware,
`ToolChoiceByRule`, decides *which* tool the first step calls, by a rule (a room code such as
"B4" -> `room_status`, anything else -> `search_faq`), and forces it with `tool_choice` set to
that tool's name; the model still writes the call's arguments (guided by the tool's JSON schema).
After the tool has run, `tool_choice="none"`: the model answers in text. With a chat model that
can call tools on its own, drop `ToolChoiceByRule` and the rest works unchanged. The model can
restate one short fact in a sentence and usually does, but it sometimes adds or garbles details:
do not read its answers as checked facts.

    python examples/cached_agent.py [--cache PATH] [--ledger PATH]
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from typing import Any

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from lean_chain import ChatLeanVLLM
from lean_chain.middleware import (
    LeanBudgetMiddleware,
    LeanCacheMiddleware,
    LeanCompressMiddleware,
    LeanLedgerMiddleware,
)
from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.report import render_table

# Invented facts about an invented coworking space.
FAQ = (
    "Opening hours. The front desk at Quillgate Works opens at 7:30 am on weekdays and 10 am on Saturdays.",
    "Day passes. A day pass costs 25 euros and includes coffee and a locker.",
    "Guests. Members can bring two guests per month for free; further guests pay 10 euros each.",
    "Quiet floor. The quiet floor is the third floor: phone calls are not allowed there.",
    "Parcels. Parcels are held at the front desk for 14 days.",
    "Bikes. Bikes can be parked in the courtyard; the bike room is for members only.",
    "Printing. Members print 100 pages a month for free; each further page costs 5 cents.",
    "Events. The events space on the ground floor can be booked by members for up to 40 people.",
)
ROOMS = {"B4": "Room B4 is available today from 1 pm to 6 pm.",
         "C2": "Room C2 is available today until 12 noon."}
ROOM_CODE = re.compile(r"\b([A-D][0-9])\b")
SYSTEM = "You answer questions about the coworking space Quillgate Works in one short sentence."
STREAM = (  # (tenant, question)
    ("acme", "What time does the front desk open?"),
    ("acme", "What time does the front desk open?"),        # exact repeat: every step from the cache
    ("acme", "At what time does the front desk open?"),     # reworded: step 1 may be a semantic hit
    ("acme", "When is room B4 available today?"),
    ("acme", "When is room B4 available today?"),           # repeat: the tool runs, the model does not
    ("acme", "When is room C2 available today?"),           # another room: another tool call
    ("globex", "What time does the front desk open?"),      # another tenant: never acme's entries
)


@tool
def search_faq(query: str) -> str:
    """Search the Quillgate Works FAQ; returns the FAQ page."""
    return "\n\n".join(FAQ)


@tool
def room_status(room: str) -> str:
    """Today's availability of a meeting room, by its code (e.g. B4)."""
    found = ROOM_CODE.search(room.upper())
    code = found.group(1) if found else room.strip()
    return ROOMS.get(code, f"There is no room {code}.")


class ToolChoiceByRule(AgentMiddleware):  # type: ignore[type-arg]
    """For a model too small to choose a tool: the first step of each question is forced to call
    the tool a rule picks (a room code -> room_status, else search_faq); once a tool result is in
    the conversation, ``tool_choice="none"`` (answer in text)."""

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> ModelResponse[Any]:
        after_tool = any(isinstance(m, ToolMessage) for m in _this_turn(request.messages))
        question = next((m.text for m in reversed(request.messages) if m.type == "human"), "")
        choice = "none" if after_tool else "room_status" if ROOM_CODE.search(question) else "search_faq"
        return handler(request.override(tool_choice=choice))


def _this_turn(messages: list[Any]) -> list[Any]:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].type == "human":
            return messages[i + 1:]
    return list(messages)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="example-agent-cache.sqlite3", help="SQLite cache file")
    parser.add_argument("--ledger", default="example-agent-ledger.sqlite3", help="cost ledger file")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    cache = ResponseCache(SQLiteCacheStore(args.cache), ttl_s=24 * 3600, ledger=ledger)
    steps = LeanLedgerMiddleware(ledger)
    compress = LeanCompressMiddleware(ratio=0.3, min_tokens=60, ledger=ledger)
    agent = create_agent(
        ChatLeanVLLM(max_tokens=48),
        [search_faq, room_status],
        system_prompt=SYSTEM,
        # First is outermost: the ledger sees every paid call; the tool choice is set before the
        # cache keys the request (tool_choice is part of the key).
        middleware=[steps, ToolChoiceByRule(), LeanCacheMiddleware(cache=cache),
                    LeanBudgetMiddleware(max_tokens=48, min_tokens_with_tools=48, on_truncation="report", ledger=ledger), compress],
    )

    for tenant, question in STREAM:
        seen = len(steps.steps)
        started = time.perf_counter()
        state = agent.invoke({"messages": [{"role": "user", "content": question}]},
                             config={"metadata": {"tenant": tenant}})
        served = []
        for message in state["messages"]:
            if isinstance(message, AIMessage):
                hit = (message.response_metadata.get("lean_cache") or {}).get("hit")
                served.append(f"cache {hit}" if hit else "model")
        tools = [m for m in state["messages"] if isinstance(m, ToolMessage)]
        calls = [c for m in state["messages"] if isinstance(m, AIMessage) for c in m.tool_calls]
        cached_tokens = sum(s.cached_input_tokens for s in steps.steps[seen:])
        print(f"[{tenant:6}] {' + '.join(served):28} {time.perf_counter() - started:5.2f}s  {question}")
        for call, result in zip(calls, tools, strict=False):
            mark = result.response_metadata.get("lean_compress") or {}
            size = (f" [compressed {mark['original_tokens']} -> {mark['compressed_tokens']} tokens]"
                    if mark.get("changed") else "")
            print(f"{'':9}tool {call['name']}({call['args']}){size}")
        print(f"{'':9}prefix-cached input tokens: {cached_tokens}")
        print(f"{'':9}-> {str(state['messages'][-1].content).strip()}")

    print(f"\n{cache.stats}")
    print(render_table(ledger.summary()))
    cache.close()
    ledger.close()


if __name__ == "__main__":
    main()
