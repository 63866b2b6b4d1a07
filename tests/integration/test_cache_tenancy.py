"""Issue 22, part 1: tenancy fails closed, and the tenant travels where LangChain/LlamaIndex work runs.

The real ``ChatOpenAI`` (langchain-openai) and LlamaIndex ``OpenAI`` classes talk to the loopback
OpenAI stub (tests/support/openai_stub.py), so "the model was called" is a request the stub saw.
Every cache is exact-mode SQLite in tmp_path: these tests are about who may be served, not about
similarity.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_openai import ChatOpenAI

from lean_chain import LeanCache
from lean_core.cache import (
    ResponseCache,
    SQLiteCacheStore,
    current_prefix_salt,
    in_current_context,
    tenant_scope,
)
from lean_core.ledger import CostLedger
from lean_core.pipeline import (
    LeanPipeline,
    ModelCall,
    ModelReply,
    PipelineRequest,
    PipelineSettings,
)
from lean_core.usage import TokenUsage
from tests.support.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration

SECRET = "ACME-SECRET: what is the contract value?"


def _chat(stub: OpenAIStub, cache: LeanCache) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                      max_retries=0, cache=cache)


@pytest.fixture
def lean(tmp_path: Path) -> Iterator[LeanCache]:
    cache = LeanCache(cache=ResponseCache(SQLiteCacheStore(tmp_path / "tenancy.sqlite3"), mode="exact",
                                          ledger=CostLedger(tmp_path / "ledger.sqlite3")))
    yield cache
    cache.close()


# -- the adversarial report, exactly --------------------------------------------------------------
def test_thread_pool_call_inside_a_scope_is_never_served_to_a_caller_without_tenant(
        stub: OpenAIStub, lean: LeanCache) -> None:
    chat = _chat(stub, lean)
    with LeanCache.tenant_scope("acme"), ThreadPoolExecutor(max_workers=2) as pool:
        # A plain pool does not copy the context: this call has no tenant in its thread.
        answer = pool.submit(chat.invoke, SECRET).result()
    assert answer.content and len(stub.requests) == 1
    # A later caller without any tenant asks the same: it must reach the model again.
    assert chat.invoke(SECRET).content == answer.content
    assert len(stub.requests) == 2
    stats = lean.stats
    assert stats.no_tenant == 2 and stats.writes == 0 and stats.hits == 0
    # The ledger records the skips as misses that belong to no tenant.
    assert lean.cache.ledger is not None
    events = [e for e in lean.cache.ledger.savings() if e.layer == "cache"]
    assert [(e.cache_hit, e.tenant) for e in events] == [(False, None), (False, None)]


def test_thread_pool_with_copied_context_keeps_the_tenant(stub: OpenAIStub, lean: LeanCache) -> None:
    chat = _chat(stub, lean)
    with LeanCache.tenant_scope("acme"), ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(contextvars.copy_context().run, chat.invoke, SECRET).result()
        pool.submit(in_current_context(chat.invoke), SECRET).result()  # served from acme
    assert len(stub.requests) == 1
    chat.invoke(SECRET)  # no tenant: not served
    with LeanCache.tenant_scope("globex"):
        chat.invoke(SECRET)  # another tenant: not served
    assert len(stub.requests) == 3
    with LeanCache.tenant_scope("acme"):
        chat.invoke(SECRET)
    assert len(stub.requests) == 3


def test_explicit_shared_namespace_shares_on_purpose(stub: OpenAIStub, tmp_path: Path) -> None:
    shared = LeanCache(cache=ResponseCache(SQLiteCacheStore(tmp_path / "shared.sqlite3"), mode="exact"),
                       default_tenant="public")
    chat = _chat(stub, shared)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(chat.invoke, "What are your opening hours?").result()
    chat.invoke("What are your opening hours?")
    assert len(stub.requests) == 1 and shared.stats.exact_hits == 1 and shared.stats.no_tenant == 0
    with LeanCache.tenant_scope("acme"):  # a resolved tenant never reads the shared namespace
        chat.invoke("What are your opening hours?")
    assert len(stub.requests) == 2
    shared.close()


# -- where LangChain users run work -----------------------------------------------------------------
def test_batch_inside_scopes_is_isolated(stub: OpenAIStub, lean: LeanCache) -> None:
    chat = _chat(stub, lean)
    prompts: list[Any] = ["first question", "second question", "third question"]
    with LeanCache.tenant_scope("acme"):
        chat.batch(prompts, config={"max_concurrency": 3})
    assert len(stub.requests) == 3 and lean.stats.writes == 3
    with LeanCache.tenant_scope("globex"):
        chat.batch(prompts)
    assert len(stub.requests) == 6
    with LeanCache.tenant_scope("acme"):
        chat.batch(prompts)
    assert len(stub.requests) == 6 and lean.stats.exact_hits == 3
    chat.batch(prompts)  # no tenant: the model answers every one
    assert len(stub.requests) == 9


async def test_abatch_and_gathered_tasks_inside_scopes_are_isolated(stub: OpenAIStub, lean: LeanCache) -> None:
    chat = _chat(stub, lean)
    prompts: list[Any] = ["alpha question", "beta question"]
    with LeanCache.tenant_scope("acme"):
        await chat.abatch(prompts)
    assert len(stub.requests) == 2

    async def ask(tenant: str, prompt: str) -> None:
        with LeanCache.tenant_scope(tenant):
            await asyncio.gather(*(asyncio.create_task(chat.ainvoke(p)) for p in [prompt]))

    with LeanCache.tenant_scope("acme"):  # tasks created in the scope inherit it
        await asyncio.gather(*(asyncio.create_task(chat.ainvoke(p)) for p in prompts))
    assert len(stub.requests) == 2
    await asyncio.gather(ask("globex", prompts[0]), ask("initech", prompts[1]))
    assert len(stub.requests) == 4
    await asyncio.gather(*(chat.ainvoke(p) for p in prompts))  # no tenant
    assert len(stub.requests) == 6
    with LeanCache.tenant_scope("acme"):
        await asyncio.gather(*(asyncio.to_thread(chat.invoke, p) for p in prompts))  # to_thread copies it
    assert len(stub.requests) == 6


class _State(TypedDict):
    question: str
    answer: str


def _graph(chat: ChatOpenAI, *, with_async_node: bool) -> Any:
    """answer (sync node) -> [aanswer (async node)]: under ``ainvoke`` LangGraph runs the sync node
    in its executor, so both the thread and the task hand-off are exercised."""
    from langgraph.graph import END, START, StateGraph

    def answer(state: _State) -> dict[str, str]:
        return {"answer": str(chat.invoke(state["question"]).content)}

    async def aanswer(state: _State) -> dict[str, str]:
        return {"answer": str((await chat.ainvoke(state["question"])).content)}

    graph = StateGraph(_State)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    if with_async_node:
        graph.add_node("aanswer", aanswer)
        graph.add_edge("answer", "aanswer")
        graph.add_edge("aanswer", END)
    else:
        graph.add_edge("answer", END)
    return graph.compile()


async def test_langgraph_nodes_inherit_the_scope(stub: OpenAIStub, lean: LeanCache) -> None:
    chat = _chat(stub, lean)
    sync_graph, mixed_graph = _graph(chat, with_async_node=False), _graph(chat, with_async_node=True)
    with LeanCache.tenant_scope("acme"):
        await asyncio.to_thread(sync_graph.invoke, {"question": SECRET})
    assert len(stub.requests) == 1
    with LeanCache.tenant_scope("acme"):
        await mixed_graph.ainvoke({"question": SECRET})  # both nodes served from acme's entry
    assert len(stub.requests) == 1
    with LeanCache.tenant_scope("globex"):
        await mixed_graph.ainvoke({"question": SECRET})  # globex's first node calls, the second is served
    assert len(stub.requests) == 2
    await mixed_graph.ainvoke({"question": SECRET})  # no tenant: both nodes call the model
    assert len(stub.requests) == 4
    # A tenant in the run metadata reaches the nodes' model calls too.
    await mixed_graph.ainvoke({"question": SECRET}, config={"metadata": {"tenant": "acme"}})
    assert len(stub.requests) == 4


# -- LlamaIndex -------------------------------------------------------------------------------------
def _llama(stub: OpenAIStub, tmp_path: Path, **options: Any) -> Any:
    from llama_index.llms.openai import OpenAI

    from lean_index import LeanCachedLLM

    inner = OpenAI(model="gpt-4o", api_base=stub.base_url, api_key="test-key", max_retries=0)
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "llama.sqlite3"), mode="exact")
    return LeanCachedLLM(inner, cache=cache, **options)


async def test_llamaindex_workflow_steps_inherit_the_scope(stub: OpenAIStub, tmp_path: Path) -> None:
    from llama_index.core.workflow import Context, StartEvent, StopEvent, Workflow, step

    llm = _llama(stub, tmp_path)

    class Ask(Workflow):
        @step
        async def answer(self, ctx: Context, ev: StartEvent) -> StopEvent:
            first = await llm.acomplete(ev.question)
            again = await asyncio.to_thread(llm.complete, ev.question)  # served: same tenant
            return StopEvent(result=(first.text, again.text))

    with tenant_scope("acme"):
        result: Any = await Ask(timeout=60).run(question=SECRET)
    first, again = result
    assert first == again and len(stub.requests) == 1
    with tenant_scope("globex"):
        await Ask(timeout=60).run(question=SECRET)
    assert len(stub.requests) == 2  # globex calls the model once, then is served its own entry
    assert llm.cache.stats.exact_hits == 2
    await Ask(timeout=60).run(question=SECRET)  # no tenant: both calls reach the model
    assert len(stub.requests) == 4 and llm.cache.stats.no_tenant == 2


def test_llamaindex_thread_pool_and_shared_field(stub: OpenAIStub, tmp_path: Path) -> None:
    llm = _llama(stub, tmp_path)
    with tenant_scope("acme"), ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(llm.complete, SECRET).result()  # no tenant in the pool's thread
    llm.complete(SECRET)
    assert len(stub.requests) == 2 and llm.cache.stats.writes == 0
    llm.complete(SECRET, tenant="acme")
    llm.complete(SECRET, tenant="acme")
    assert len(stub.requests) == 3
    (tmp_path / "shared").mkdir()
    shared = _llama(stub, tmp_path / "shared", tenant="public")  # an explicit shared namespace
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(shared.complete, "opening hours?").result()
    shared.complete("opening hours?")
    assert len(stub.requests) == 4


# -- the pipeline -----------------------------------------------------------------------------------
class SaltRecordingModel:
    """A pipeline model that answers with the caller's tenant label and records each call's salt."""

    model_name = "scripted"

    def __init__(self) -> None:
        self.salts: list[str | None] = []

    def _reply(self) -> ModelReply:
        self.salts.append(current_prefix_salt())
        return ModelReply(text=f"answer #{len(self.salts)}", finish_reason="stop",
                          usage=TokenUsage(input_tokens=10, output_tokens=3))

    def complete(self, call: ModelCall) -> ModelReply:
        return self._reply()

    async def acomplete(self, call: ModelCall) -> ModelReply:
        return self._reply()


def _pipeline(tmp_path: Path, model: SaltRecordingModel, **settings: Any) -> LeanPipeline:
    settings = {"compression": {"enabled": False}, "template": {"enabled": False}, "budget": {"enabled": False},
                "cache": {"mode": "exact", "path": str(tmp_path / "pipe.sqlite3")}, **settings}
    return LeanPipeline(model, settings=PipelineSettings(**settings))


async def test_pipeline_without_tenant_neither_serves_nor_stores_nor_shares_a_salt(tmp_path: Path) -> None:
    model = SaltRecordingModel()
    pipeline = _pipeline(tmp_path, model)
    with tenant_scope("acme"), ThreadPoolExecutor(max_workers=1) as pool:
        lost = pool.submit(pipeline.invoke, SECRET).result()  # no tenant in the pool's thread
        scoped = await pipeline.ainvoke(SECRET)
        served = await asyncio.to_thread(pipeline.invoke, SECRET)
    assert lost.cache_hit is None and lost.steps[0].note == "no tenant: not cached" and lost.tenant is None
    assert scoped.cache_hit is None and scoped.tenant == "acme"
    assert served.cache_hit == "exact" and served.answer == scoped.answer
    anonymous = [pipeline.invoke(SECRET), await pipeline.ainvoke(SECRET)]
    assert all(r.cache_hit is None for r in anonymous) and len(model.salts) == 4
    # Salts: the tenant's name for acme; a fresh one for every request without a tenant.
    assert model.salts[1] == "acme"
    private = [model.salts[0], model.salts[2], model.salts[3]]
    assert len(set(private)) == 3 and all(s is not None and s.startswith("lean-private-") for s in private)
    assert pipeline.cache.stats.no_tenant == 3  # type: ignore[attr-defined]


async def test_pipeline_requests_without_tenant_are_not_coalesced(tmp_path: Path) -> None:
    model = SaltRecordingModel()
    pipeline = _pipeline(tmp_path, model)
    results = await asyncio.gather(*(pipeline.ainvoke(PipelineRequest(question=SECRET)) for _ in range(3)))
    assert [r.cache_hit for r in results] == [None, None, None] and len(model.salts) == 3


def test_pipeline_explicit_shared_tenant_opts_in(tmp_path: Path) -> None:
    model = SaltRecordingModel()
    pipeline = _pipeline(tmp_path, model, tenant="public")
    first = pipeline.invoke(SECRET)
    second = pipeline.invoke(SECRET)
    assert first.tenant == "public" and second.cache_hit == "exact" and model.salts == ["public"]
