"""The agent middleware on ``create_agent`` with a scripted tool-calling chat model (fast; the real
``ChatOpenAI`` on a loopback server is in tests/integration/test_agent_middleware.py).

Every behaviour runs sync (``invoke``) and async (``ainvoke``)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from lean_chain.middleware import (
    LeanBudgetMiddleware,
    LeanCacheMiddleware,
    LeanCompressMiddleware,
    LeanLedgerMiddleware,
)
from lean_core import CostLedger
from lean_core.budget import OutputTruncatedError
from lean_core.cache import ResponseCache, SQLiteCacheStore, tenant_scope
from lean_core.compression import LeanCompressor
from lean_core.compression.select import RelevanceScorer
from lean_core.errors import InvalidParameterError

QUESTION = "When does order A17 ship?"
FILLER = " ".join(f"Line {i} describes the lobby carpet colour in great detail." for i in range(30))
RESULT = f"{FILLER} Order A17 ships on 2026-11-30 from https://track.example.com/QX-4471 to Lyon. {FILLER}"
RAN: list[str] = []


@tool
def lookup_order(order_id: str) -> str:
    """Look up an order by its id."""
    RAN.append(order_id)
    return RESULT


@tool
def lookup_invoice(order_id: str) -> str:
    """Look up an invoice by its order id."""
    RAN.append("invoice " + order_id)
    return "Invoice 99 for " + order_id


def _usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens,
            "input_token_details": {"cache_read": cached}, "output_token_details": {"reasoning": 3}}


CALL_A17 = AIMessage("", tool_calls=[{"name": "lookup_order", "args": {"order_id": "A17"}, "id": "x"}],
                     usage_metadata=_usage(40, 12), response_metadata={"finish_reason": "tool_calls"})  # type: ignore[arg-type]
ANSWER = AIMessage("It ships on 2026-11-30.", usage_metadata=_usage(300, 9, cached=32),  # type: ignore[arg-type]
                   response_metadata={"finish_reason": "stop", "model_name": "scripted-1"})


class ScriptedToolModel(BaseChatModel):
    """Answers step n (AI messages since the last human one) with ``script[n]``, with new
    tool-call ids every time, as a provider does; records what it was sent."""

    script: list[AIMessage]
    fail_first: int = 0
    by_call: bool = False
    """Answer the n-th call (not the n-th step) with ``script[n]``."""
    sent: list[tuple[list[BaseMessage], dict[str, Any]]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-tools"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.sent.append((list(messages), kwargs))
        if self.fail_first > 0:
            self.fail_first -= 1
            raise RuntimeError("provider down")
        step = 0
        for message in reversed(messages):
            if message.type == "human":
                break
            step += message.type == "ai"
        if self.by_call:
            step = len(self.sent) - 1
        reply = self.script[min(step, len(self.script) - 1)]
        calls = [{**c, "id": f"call_{uuid.uuid4().hex[:8]}"} for c in reply.tool_calls]
        return ChatResult(generations=[ChatGeneration(message=reply.model_copy(update={"tool_calls": calls}))])

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice, **kwargs)


def _model(*script: AIMessage, fail_first: int = 0) -> ScriptedToolModel:
    return ScriptedToolModel(script=list(script) or [CALL_A17, ANSWER], fail_first=fail_first)


def _run(agent: Any, mode: str, *, config: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    state = {"messages": [{"role": "user", "content": QUESTION}]}
    if mode == "async":
        return asyncio.run(agent.ainvoke(state, config=config, **kwargs))  # type: ignore[no-any-return]
    return agent.invoke(state, config=config, **kwargs)  # type: ignore[no-any-return]


def _cache(tmp_path: Path, **kwargs: Any) -> ResponseCache:
    return ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), mode="exact", **kwargs)


ACME = {"metadata": {"tenant": "acme"}}
modes = pytest.mark.parametrize("mode", ["sync", "async"])


# -- the package ----------------------------------------------------------------------------------------
def test_public_surface_and_lazy_import() -> None:
    import lean_chain.middleware as middleware

    assert sorted(middleware.__all__) == ["LeanBudgetMiddleware", "LeanCacheMiddleware", "LeanCompressMiddleware",
                                          "LeanLedgerMiddleware", "LeanPromptCacheMiddleware"]
    code = ("import sys, lean_chain; assert 'langchain' not in sys.modules, 'langchain'; "
            "assert 'torch' not in sys.modules, 'torch'; import lean_chain.middleware; "
            "assert 'torch' not in sys.modules, 'torch via middleware'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_missing_agents_extra_names_it() -> None:
    code = ("import sys; sys.modules['langchain'] = None\n"
            "try:\n    import lean_chain.middleware\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "lean-inference[agents]" in out.stdout, out.stderr


# -- cache ----------------------------------------------------------------------------------------------
@modes
def test_second_identical_run_is_served_with_the_same_tool_calls_and_tools_still_run(
        mode: str, tmp_path: Path) -> None:
    model, middleware = _model(), LeanCacheMiddleware(cache=_cache(tmp_path))
    agent = create_agent(model, [lookup_order], middleware=[middleware])
    RAN.clear()
    first = _run(agent, mode, config=ACME)
    assert len(model.sent) == 2 and middleware.stats.writes == 2
    second = _run(agent, mode, config=ACME)
    assert len(model.sent) == 2, "the model was called again"
    assert middleware.stats.exact_hits == 2 and RAN == ["A17", "A17"]  # the tool ran both times
    calls = [m.tool_calls for m in first["messages"] if isinstance(m, AIMessage)]
    assert calls == [m.tool_calls for m in second["messages"] if isinstance(m, AIMessage)]
    assert calls[0][0]["name"] == "lookup_order" and calls[0][0]["args"] == {"order_id": "A17"}
    hits = [m for m in second["messages"] if isinstance(m, AIMessage)]
    assert all(m.response_metadata["lean_cache"]["hit"] == "exact" for m in hits)
    assert all(m.usage_metadata and m.usage_metadata.get("total_cost") == 0 for m in hits)
    assert {m.id for m in hits}.isdisjoint({m.id for m in first["messages"]})
    assert second["messages"][-1].content == ANSWER.content


@modes
def test_no_hit_for_another_tenant_another_tool_set_or_no_tenant(mode: str, tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    model = _model()
    agent = create_agent(model, [lookup_order], middleware=[LeanCacheMiddleware(cache=cache)])
    _run(agent, mode, config=ACME)
    _run(agent, mode, config={"metadata": {"tenant": "globex"}})
    assert cache.stats.exact_hits == 0 and len(model.sent) == 4
    wider = create_agent(model, [lookup_order, lookup_invoice], middleware=[LeanCacheMiddleware(cache=cache)])
    _run(wider, mode, config=ACME)
    assert cache.stats.exact_hits == 0 and len(model.sent) == 6
    writes = cache.stats.writes
    _run(agent, mode)  # no tenant anywhere: answered by the model, nothing stored
    assert cache.stats.exact_hits == 0 and cache.stats.no_tenant == 2 and cache.stats.writes == writes
    _run(agent, mode, context={"tenant": "acme"})  # the run's context names the tenant
    with tenant_scope("acme"):
        _run(agent, mode)
    assert cache.stats.exact_hits == 4 and len(model.sent) == 8


@modes
def test_a_failed_or_truncated_step_is_not_stored(mode: str, tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    failing = _model(fail_first=1)
    agent = create_agent(failing, [lookup_order], middleware=[LeanCacheMiddleware(cache=cache)])
    with pytest.raises(RuntimeError, match="provider down"):
        _run(agent, mode, config=ACME)
    assert cache.stats.writes == 0
    cut = AIMessage("It ships on", response_metadata={"finish_reason": "length"})
    agent = create_agent(_model(CALL_A17, cut), [lookup_order], middleware=[LeanCacheMiddleware(cache=cache)])
    _run(agent, mode, config=ACME)
    assert cache.stats.writes == 1  # the tool-call step only; the cut answer is not stored


@modes
def test_a_failing_store_never_breaks_the_step(mode: str, tmp_path: Path) -> None:
    class BrokenStore(SQLiteCacheStore):
        def put(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

        async def aput(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

    cache = ResponseCache(BrokenStore(tmp_path / "c.sqlite3"), mode="exact")
    agent = create_agent(_model(), [lookup_order], middleware=[LeanCacheMiddleware(cache=cache)])
    assert _run(agent, mode, config=ACME)["messages"][-1].content == ANSWER.content
    assert cache.stats.store_errors == 2 and cache.stats.writes == 0


# -- compression ----------------------------------------------------------------------------------------
def _compress(**kwargs: Any) -> LeanCompressMiddleware:
    return LeanCompressMiddleware(ratio=0.2, min_tokens=50,
                                  compressor=LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0)), **kwargs)


@modes
def test_tool_results_are_compressed_once_and_the_prefix_stays_byte_identical(mode: str, tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")
    call_again = AIMessage("", tool_calls=[{"name": "lookup_order", "args": {"order_id": "A17"}, "id": "y"}])
    model = _model(CALL_A17, call_again, ANSWER)
    agent = create_agent(model, [lookup_order], system_prompt="You help with orders.",
                         middleware=[_compress(ledger=ledger)])
    out = _run(agent, mode, config=ACME)
    assert len(model.sent) == 3
    tools = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert len(tools) == 2 and all(m.response_metadata["lean_compress"]["changed"] for m in tools)
    second, third = model.sent[1][0], model.sent[2][0]
    sent_tool = second[-1]
    assert isinstance(sent_tool, ToolMessage) and len(sent_tool.text) < len(RESULT) / 2
    assert "2026-11-30" in sent_tool.text and "https://track.example.com/QX-4471" in sent_tool.text
    # step 3 resends step 2's messages byte for byte, then adds its own
    assert [(m.type, m.content) for m in third[:len(second)]] == [(m.type, m.content) for m in second]
    assert tools[0].id == sent_tool.id  # replaced in the state in place, same id
    events = [e for e in ledger.savings() if e.layer == "compression"]
    assert len(events) == 2 and all(e.tenant == "acme" and e.input_tokens_after < e.input_tokens_before
                                    for e in events)


@modes
def test_a_compressed_history_passed_back_in_is_not_compressed_again(mode: str) -> None:
    model = _model(CALL_A17, ANSWER)
    middleware = _compress()
    agent = create_agent(model, [lookup_order], middleware=[middleware])
    out = _run(agent, mode)
    compressed = next(m for m in out["messages"] if isinstance(m, ToolMessage)).content
    follow = {"messages": [*out["messages"], {"role": "user", "content": "And where from?"}]}
    again = asyncio.run(agent.ainvoke(follow)) if mode == "async" else agent.invoke(follow)
    tools = [m for m in again["messages"] if isinstance(m, ToolMessage)]
    assert tools[0].content == compressed  # judged once: the later turn's question does not redo it
    assert middleware.last_compression is not None


def test_compress_options_are_validated() -> None:
    with pytest.raises(InvalidParameterError) as err:
        LeanCompressMiddleware(ration=0.3)
    assert err.value.parameter == "ration"
    with pytest.raises(InvalidParameterError) as err:
        LeanCompressMiddleware(older_than_turns=0)
    assert err.value.parameter == "older_than_turns"


# -- budget ---------------------------------------------------------------------------------------------
@modes
def test_every_call_gets_a_budget_and_tool_steps_get_room(mode: str, tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")
    model = _model()
    agent = create_agent(model, [lookup_order], middleware=[LeanBudgetMiddleware(ledger=ledger,
                                                                                min_tokens_with_tools=200)])
    out = _run(agent, mode, config=ACME)
    budgets = [kwargs["max_tokens"] for _, kwargs in model.sent]
    assert len(budgets) == 2 and all(b >= 200 for b in budgets) and "stop" not in model.sent[0][1]
    outcome = out["messages"][-1].response_metadata["lean_budget"]
    assert outcome["max_tokens"] == budgets[-1] and outcome["truncated"] is False
    events = [e for e in ledger.savings() if e.layer == "output"]
    assert len(events) == 1 and events[0].output_tokens_after == 9  # the text answer only
    assert len(ledger.output_lengths()) == 1


@modes
def test_a_cut_answer_is_never_silent(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    cut = AIMessage("It ships", response_metadata={"finish_reason": "length"}, usage_metadata=_usage(10, 16))  # type: ignore[arg-type]
    agent = create_agent(_model(cut), [], middleware=[LeanBudgetMiddleware(on_truncation="report")])
    with caplog.at_level(logging.WARNING, logger="lean_chain.middleware.budget"):
        out = _run(agent, mode)
    assert out["messages"][-1].response_metadata["lean_budget"]["truncated"] is True
    assert "cut at its budget" in caplog.text
    agent = create_agent(_model(cut), [], middleware=[LeanBudgetMiddleware(on_truncation="raise")])
    with pytest.raises(OutputTruncatedError):
        _run(agent, mode)
    model = ScriptedToolModel(script=[cut, ANSWER], by_call=True)
    agent = create_agent(model, [], middleware=[LeanBudgetMiddleware(on_truncation="continue")])
    out = _run(agent, mode)
    assert len(model.sent) == 2 and out["messages"][-1].content == "It ships" + ANSWER.content
    assert out["messages"][-1].response_metadata["lean_budget"]["continued"] is True


def test_budget_options_are_validated() -> None:
    for kwargs, parameter in (({"brevty": True}, "brevty"), ({"min_tokens_with_tools": 0}, "min_tokens_with_tools"),
                              ({"ledger": "l.sqlite3"}, "ledger")):
        with pytest.raises(InvalidParameterError) as err:
            LeanBudgetMiddleware(**kwargs)
        assert err.value.parameter == parameter


# -- ledger ---------------------------------------------------------------------------------------------
@modes
def test_one_ledger_row_per_paid_step_with_provider_usage(mode: str, tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")
    steps = LeanLedgerMiddleware(ledger)
    model = _model()
    agent = create_agent(model, [lookup_order], middleware=[steps, LeanCacheMiddleware(cache=_cache(tmp_path))])
    _run(agent, mode, config=ACME)
    _run(agent, mode, config=ACME)  # served from the cache: no paid call, no row
    calls = ledger.calls(tenant="acme")
    assert [c.tags for c in calls] == [("agent", "step:1"), ("agent", "step:2")]
    assert calls[1].usage.input_tokens == 300 and calls[1].usage.cached_input_tokens == 32
    assert calls[1].usage.reasoning_tokens == 3 and calls[1].model == "scripted-1"
    assert [(s.step, s.cache_hit) for s in steps.steps] == [(1, False), (2, False), (1, True), (2, True)]
    assert steps.records == calls


def test_tools_are_real_base_tools() -> None:
    assert isinstance(lookup_order, BaseTool)


@modes
def test_a_step_that_cannot_call_a_tool_gets_the_answer_budget(mode: str) -> None:
    from langchain.agents.middleware import AgentMiddleware

    class NoTools(AgentMiddleware):  # type: ignore[type-arg]
        def wrap_model_call(self, request: Any, handler: Any) -> Any:
            return handler(request.override(tool_choice="none"))

        async def awrap_model_call(self, request: Any, handler: Any) -> Any:
            return await handler(request.override(tool_choice="none"))

    model = _model(ANSWER)
    agent = create_agent(model, [lookup_order], middleware=[NoTools(), LeanBudgetMiddleware(
        min_tokens_with_tools=500, max_tokens=64)])
    _run(agent, mode)
    assert model.sent[0][1]["max_tokens"] <= 64 and model.sent[0][1]["tool_choice"] == "none"
