"""LeanPipeline on the real local engine: directly, as a LangChain Runnable, as a LlamaIndex query engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lean_benchmarks.demo.workload import load_demo_kb
from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.pipeline import LeanPipeline, PipelineRequest, PipelineSettings

pytestmark = pytest.mark.integration

QUESTION = "When was Kestrel Coast Rail founded?"


@pytest.fixture(scope="module")
def passages() -> tuple[str, ...]:
    return tuple(f"{d.title}\n{d.text}" for d in load_demo_kb()[:6])


def test_engine_model_all_layers_cache_and_tenants(tmp_path: Path, smollm2_path: Path,
                                                             passages: tuple[str, ...]) -> None:
    from lean_backends.pipeline_model import EngineModel

    cache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"))  # semantic mode: MiniLM loads for real
    with CostLedger(tmp_path / "l.sqlite3") as ledger:
        pipeline = LeanPipeline(EngineModel.local(smollm2_path), ledger=ledger, cache=cache)
        first = pipeline.invoke(PipelineRequest(question=QUESTION, context=passages, tenant="acme"))
        assert first.cache_hit is None and first.usage.input_tokens > 0 and first.usage.output_tokens > 0
        assert first.answer.strip()  # (what SmolLM2-135M answers is not under test here)
        steps = {s.layer: s for s in first.steps}
        assert steps["compression"].input_tokens_after < steps["compression"].input_tokens_before
        assert first.reference_usage.input_tokens < first.baseline_reference_usage.input_tokens
        spaced = pipeline.invoke(PipelineRequest(question=f"  {QUESTION} ", context=passages, tenant="acme"))
        assert spaced.cache_hit == "exact" and spaced.answer == first.answer
        other = asyncio.run(pipeline.ainvoke(PipelineRequest(question=QUESTION, context=passages, tenant="globex")))
        assert other.cache_hit is None  # never another tenant's entry
        assert len(ledger.calls()) == 2


def test_langchain_runnable_with_chat_lean_vllm(tmp_path: Path, smollm2_path: Path, passages: tuple[str, ...]) -> None:
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser

    from lean_chain import ChatLeanVLLM, lean_pipeline

    llm = ChatLeanVLLM(model=str(smollm2_path))
    settings = PipelineSettings(cache={"path": str(tmp_path / "c.sqlite3"), "mode": "exact"})
    chain = lean_pipeline(llm, settings=settings, tenant="acme")
    docs = [Document(page_content=p, metadata={"i": i}) for i, p in enumerate(passages)]
    message = chain.invoke({"question": QUESTION, "context": docs})
    meta = message.response_metadata["lean_pipeline"]
    assert meta["cache_hit"] is None and message.usage_metadata["output_tokens"] > 0
    assert {s["layer"] for s in meta["steps"]} >= {"compression", "template", "output"}
    text = (chain | StrOutputParser()).invoke({"question": QUESTION, "context": docs})
    assert text == message.content  # the second ask is an exact cache hit
    async_text = asyncio.run((chain | StrOutputParser()).ainvoke({"question": QUESTION, "context": docs}))
    assert async_text == text


def test_llamaindex_query_engine_with_lean_vllm(tmp_path: Path, smollm2_path: Path, passages: tuple[str, ...]) -> None:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from lean_index import LeanPipelineQueryEngine, LeanVLLM

    class FixedRetriever(BaseRetriever):
        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return [NodeWithScore(node=TextNode(text=p, metadata={"doc": i}), score=1.0 - i / 10)
                    for i, p in enumerate(passages)]

    engine = LeanPipelineQueryEngine(retriever=FixedRetriever(), llm=LeanVLLM(model=str(smollm2_path)),
                                     settings=PipelineSettings(cache={"enabled": False}))
    response = engine.query(QUESTION)
    assert str(response).strip() and len(response.source_nodes) == len(passages)
    assert [n.node.metadata["doc"] for n in response.source_nodes] == list(range(len(passages)))
    assert response.metadata is not None and response.metadata["lean_pipeline"]["usage"]["output_tokens"] > 0
    again = asyncio.run(engine.aquery(QUESTION))
    assert str(again) == str(response)  # greedy: the same answer on the async path
