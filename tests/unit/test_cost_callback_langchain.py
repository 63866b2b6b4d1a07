"""LeanCostCallback with the real ChatOpenAI class against a loopback OpenAI-compatible endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from genai_prices import Usage, calc_price
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_openai import ChatOpenAI

from lean_chain import LeanCostCallback
from lean_core import CostLedger
from tests.support.openai_stub import OpenAIStub, StubUsage

EXPECTED = StubUsage().as_token_usage()


@pytest.fixture
def ledger() -> Iterator[CostLedger]:
    with CostLedger(":memory:") as led:
        yield led


def _chat(stub: OpenAIStub, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key", max_retries=0,
                      **kwargs)  # type: ignore[arg-type]


def _expected_cost() -> object:
    return calc_price(Usage(input_tokens=120, cache_read_tokens=64, output_tokens=15,
                            output_reasoning_tokens=5), "gpt-4o-2024-08-06", provider_id="openai").total_price


def test_invoke_records_provider_usage_and_tenant(stub: OpenAIStub, ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger, tenant="default-tenant")
    _chat(stub).invoke("What is a ledger?", config={"callbacks": [callback], "metadata": {"tenant": "acme"},
                                                    "tags": ["faq"]})
    (record,) = ledger.calls()
    assert record.usage == EXPECTED
    assert record.model == "gpt-4o-2024-08-06" and record.provider == "openai"
    assert record.tenant == "acme" and "faq" in record.tags
    assert record.cost_usd == _expected_cost()
    assert record.latency_s is not None and record.latency_s > 0
    assert callback.records == [record]


def test_batch_records_each_call(stub: OpenAIStub, ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger, tenant="t1")
    _chat(stub).batch(["one", "two", "three"], config={"callbacks": [callback]})
    records = ledger.calls()
    assert len(records) == 3
    assert all(r.usage == EXPECTED and r.tenant == "t1" for r in records)
    assert len({r.run_id for r in records}) == 3


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_streaming_records_final_chunk_usage(stub: OpenAIStub, ledger: CostLedger, mode: str) -> None:
    callback = LeanCostCallback(ledger)
    chat = _chat(stub, stream_usage=True)
    if mode == "sync":
        chunks = list(chat.stream("stream this answer", config={"callbacks": [callback]}))
    else:
        chunks = [c async for c in chat.astream("stream this answer", config={"callbacks": [callback]})]
    assert len(chunks) > 3
    assert stub.requests[-1]["stream_options"] == {"include_usage": True}
    (record,) = ledger.calls()
    assert record.usage == EXPECTED and record.usage.source == "provider"
    assert record.cost_usd == _expected_cost()


async def test_ainvoke_and_abatch(stub: OpenAIStub, ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger)
    chat = _chat(stub)
    await chat.ainvoke("async hello", config={"callbacks": [callback]})
    await chat.abatch(["a", "b"], config={"callbacks": [callback]})
    assert len(ledger.calls()) == 3
    assert all(r.usage == EXPECTED for r in ledger.calls())


def test_n_candidates_share_one_usage_record(stub: OpenAIStub, ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger)
    _chat(stub, n=3).invoke("three answers", config={"callbacks": [callback]})
    assert len(stub.requests[-1]) and stub.requests[-1]["n"] == 3
    (record,) = ledger.calls()
    assert record.usage == EXPECTED  # counted once, not three times


def test_stream_without_usage_falls_back_to_marked_counts(ledger: CostLedger) -> None:
    with OpenAIStub(report_usage=False) as stub:
        callback = LeanCostCallback(ledger)
        list(_chat(stub, stream_usage=True).stream("count me please", config={"callbacks": [callback]}))
    (record,) = ledger.calls()
    assert record.usage.source == "estimate"  # gpt-4o's o200k tokenizer is not available offline
    assert record.usage.input_tokens > 0 and record.usage.output_tokens > 0


def test_model_without_usage_metadata_is_counted_and_marked(ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger)
    FakeListChatModel(responses=["a fake answer"]).invoke("hello", config={"callbacks": [callback]})
    (record,) = ledger.calls()
    assert record.usage.estimated and record.usage.output_tokens > 0
    assert not record.priced and record.cost_usd is None


def test_failed_call_is_not_recorded(ledger: CostLedger) -> None:
    callback = LeanCostCallback(ledger)
    chat = ChatOpenAI(model="gpt-4o", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0, timeout=2)
    with pytest.raises(Exception):  # noqa: B017 - any connection error
        chat.invoke("nobody is listening", config={"callbacks": [callback]})
    assert ledger.calls() == []
    assert callback._tracker.pending_calls == 0


def test_other_usage_figures_flow_through(ledger: CostLedger) -> None:
    with OpenAIStub(usage=StubUsage(prompt_tokens=2_000, cached_tokens=1_536, completion_tokens=300,
                                    reasoning_tokens=0)) as stub:
        _chat(stub).invoke("big prompt", config={"callbacks": [LeanCostCallback(ledger)]})
    (record,) = ledger.calls()
    assert (record.usage.input_tokens, record.usage.cached_input_tokens, record.usage.output_tokens) == (2_000, 1_536, 300)
