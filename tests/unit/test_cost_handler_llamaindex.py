"""LeanCostHandler with the real LlamaIndex OpenAI LLM class against a loopback endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.mock import MockLLM
from llama_index.llms.openai import OpenAI

from lean_core import CostLedger
from lean_index import LeanCostHandler
from tests.support.openai_stub import OpenAIStub, StubUsage

EXPECTED = StubUsage().as_token_usage()


@pytest.fixture
def handler() -> Iterator[LeanCostHandler]:
    h = LeanCostHandler(ledger=CostLedger(":memory:"), tenant="acme").register()
    yield h
    h.unregister()
    h.ledger.close()


def _llm(stub: OpenAIStub, **kwargs: object) -> OpenAI:
    return OpenAI(model="gpt-4o", api_base=stub.base_url, api_key="test-key", max_retries=0, **kwargs)  # type: ignore[arg-type]


def test_complete_and_chat(stub: OpenAIStub, handler: LeanCostHandler) -> None:
    llm = _llm(stub)
    assert llm.complete("hello").text.startswith("echo")
    assert llm.chat([ChatMessage(role="user", content="hi")]).message.content
    records = handler.ledger.calls()
    assert len(records) == 2
    assert all(r.usage == EXPECTED and r.tenant == "acme" and r.provider == "openai" for r in records)
    assert all(r.priced and r.cost_usd is not None for r in records)


async def test_async_chat_and_complete(stub: OpenAIStub, handler: LeanCostHandler) -> None:
    llm = _llm(stub)
    await llm.achat([ChatMessage(role="user", content="hi")])
    await llm.acomplete("hello")
    assert [r.usage for r in handler.ledger.calls()] == [EXPECTED, EXPECTED]


def test_streaming_with_usage_requested(stub: OpenAIStub, handler: LeanCostHandler) -> None:
    llm = _llm(stub, additional_kwargs={"stream_options": {"include_usage": True}})
    text = "".join(r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content="stream it")]))
    assert text.strip()
    (record,) = handler.ledger.calls()
    assert record.usage == EXPECTED


def test_streaming_without_usage_is_counted_and_marked(stub: OpenAIStub, handler: LeanCostHandler) -> None:
    list(_llm(stub).stream_complete("stream it"))
    (record,) = handler.ledger.calls()
    assert record.usage.estimated and record.usage.output_tokens > 0


def test_llm_without_usage(handler: LeanCostHandler) -> None:
    MockLLM(max_tokens=8).complete("some prompt text")
    (record,) = handler.ledger.calls()
    assert record.usage.estimated and record.usage.input_tokens > 0
    assert not record.priced
