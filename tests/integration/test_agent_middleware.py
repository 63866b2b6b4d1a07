"""The agent middleware on the real path: ``create_agent`` driving the real ``ChatOpenAI`` against a
loopback OpenAI-wire server that scripts tool calls and a final answer (tests/support/
agent_chat_server.py), the default compressor (query-aware, MiniLM), sync and async."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from lean_chain.middleware import (
    LeanBudgetMiddleware,
    LeanCacheMiddleware,
    LeanCompressMiddleware,
    LeanLedgerMiddleware,
)
from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from tests.support.agent_chat_server import AgentChatServer, ScriptedStep

pytestmark = pytest.mark.integration

QUESTION = "What time does the front desk open?"
FILLER = " ".join(f"Note {i}: the lobby plants were watered and the carpet in hall {i} was cleaned." for i in range(40))
RESULT = (f"{FILLER} The front desk opens at 7:30 am on weekdays and at 10 am on Saturdays "
          f"(see https://example.com/desk-hours). {FILLER}")
SCRIPT = [ScriptedStep(tool_calls=(("search_faq", {"query": "front desk opening time"}),)),
          ScriptedStep(tool_calls=(("search_faq", {"query": "front desk saturday"}),)),
          ScriptedStep(content="According to the FAQ: {last_tool}")]
RAN: list[dict[str, Any]] = []


@tool
def search_faq(query: str) -> str:
    """Search the coworking space's FAQ."""
    RAN.append({"query": query})
    return RESULT


@tool
def book_room(room: str) -> str:
    """Book a meeting room."""
    return f"Booked {room}."


class Harness:
    def __init__(self, server: AgentChatServer, tmp_path: Path, *, mode: str = "exact") -> None:
        self.ledger = CostLedger(tmp_path / "ledger.sqlite3")
        self.cache = ResponseCache(SQLiteCacheStore(tmp_path / "cache.sqlite3"), mode=mode,  # type: ignore[arg-type]
                                   ledger=self.ledger)
        self.steps = LeanLedgerMiddleware(self.ledger)
        self.model = ChatOpenAI(model="gpt-4o-mini", base_url=server.base_url, api_key="sk-loopback",  # type: ignore[arg-type]
                                max_retries=0)

    def agent(self, tools: list[Any]) -> Any:
        return create_agent(self.model, tools, system_prompt="You answer questions about Quillgate Works.",
                            middleware=[self.steps, LeanCacheMiddleware(cache=self.cache),
                                        LeanBudgetMiddleware(ledger=self.ledger),
                                        LeanCompressMiddleware(ratio=0.3, min_tokens=100, ledger=self.ledger)])


def _run(agent: Any, mode: str, tenant: str, question: str = QUESTION) -> dict[str, Any]:
    state = {"messages": [{"role": "user", "content": question}]}
    config = {"metadata": {"tenant": tenant}}
    if mode == "async":
        return asyncio.run(agent.ainvoke(state, config=config))  # type: ignore[no-any-return]
    return agent.invoke(state, config=config)  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_agent_loop_on_the_wire(mode: str, tmp_path: Path) -> None:
    with AgentChatServer(list(SCRIPT)) as server:
        harness = Harness(server, tmp_path)
        agent = harness.agent([search_faq])
        RAN.clear()
        first = _run(agent, mode, "acme")
        assert len(server.requests) == 3 and len(RAN) == 2

        # what went over the wire: a compressed tool result, and each step's prompt extends the last
        step2, step3 = (r["messages"] for r in server.requests[1:])
        sent = step2[-1]
        assert sent["role"] == "tool" and len(sent["content"]) < len(RESULT) / 2
        assert "7:30 am" in sent["content"] and "https://example.com/desk-hours" in sent["content"]
        assert json.dumps(step3[:len(step2)]) == json.dumps(step2)
        assert all(r["max_completion_tokens"] >= 256 for r in server.requests)  # the budget, on every call
        usage = [s.call.usage for s in harness.steps.steps if s.call is not None]
        assert usage[2].cached_input_tokens > 0  # the stable prefix shows in the provider's prompt cache
        assert first["messages"][-1].content.startswith("According to the FAQ: ")

        # the same run again: every step from the cache, the tools still run, same tool calls
        second = _run(agent, mode, "acme")
        assert len(server.requests) == 3 and len(RAN) == 4 and harness.cache.stats.exact_hits == 3
        calls = [[(c["name"], c["args"], c["id"]) for c in m.tool_calls]
                 for m in first["messages"] if isinstance(m, AIMessage)]
        assert calls == [[(c["name"], c["args"], c["id"]) for c in m.tool_calls]
                         for m in second["messages"] if isinstance(m, AIMessage)]
        assert [m.content for m in second["messages"] if isinstance(m, ToolMessage)] == \
            [m.content for m in first["messages"] if isinstance(m, ToolMessage)]

        # another tenant, another tool set: the model answers
        _run(agent, mode, "globex")
        assert len(server.requests) == 6
        _run(harness.agent([search_faq, book_room]), mode, "acme")
        assert len(server.requests) == 9 and harness.cache.stats.exact_hits == 3

        # the ledger: one row per paid step, tagged, with the provider's usage; each layer's savings
        rows = harness.ledger.calls(tenant="acme")
        assert [r.tags[-1] for r in rows] == ["step:1", "step:2", "step:3"] * 2
        assert all(r.usage.source == "provider" and r.model == "gpt-4o-mini-2024-07-18" for r in rows)
        layers = {e.layer for e in harness.ledger.savings(tenant="acme")}
        assert layers == {"cache", "compression", "output"}
        hits = [e for e in harness.ledger.savings(tenant="acme") if e.layer == "cache" and e.cache_hit]
        assert len(hits) == 3 and hits[0].input_tokens_before > 0


def test_failed_step_is_not_cached_and_the_run_can_retry(tmp_path: Path) -> None:
    with AgentChatServer(list(SCRIPT), fail_requests=1) as server:
        harness = Harness(server, tmp_path)
        agent = harness.agent([search_faq])
        with pytest.raises(Exception, match=r"500|scripted failure"):
            _run(agent, "sync", "acme")
        assert harness.cache.stats.writes == 0 and harness.ledger.calls() == []
        _run(agent, "sync", "acme")
        assert harness.cache.stats.writes == 3 and harness.cache.stats.exact_hits == 0


def test_semantic_hits_only_reword_a_question_without_tool_activity(tmp_path: Path) -> None:
    with AgentChatServer(list(SCRIPT)) as server:
        harness = Harness(server, tmp_path, mode="semantic")
        agent = harness.agent([search_faq])
        _run(agent, "sync", "acme")
        _run(agent, "sync", "acme", question="At what time does the front desk open?")
        stats = harness.cache.stats
        # step 1 (system + question) may be served by meaning; steps 2 and 3 hold tool activity:
        # exact only, and their history holds the reworded question, so the model answers them
        assert stats.semantic_hits == 1 and stats.exact_hits == 0
        assert len(server.requests) == 5
