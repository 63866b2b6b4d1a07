"""LeanVLLM (LlamaIndex) against the real in-process vLLM engine with the bundled SmolLM2.

The engine starts once (on the first call) and is shared by every test: keep max_tokens small.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse
from pydantic import ValidationError

from lean_core import CostLedger, InvalidParameterError
from lean_index import LeanCostHandler, LeanVLLM

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"
# A shared prefix of well over 300 tokens: many 32-token KV blocks.
LONG_PREFIX = "Reference notes: " + " ".join(
    f"Item {i} of the catalogue is a {colour} tent rated for {i % 4 + 1} seasons."
    for i, colour in enumerate(["green", "blue", "red", "grey", "orange", "yellow"] * 5)
)


@pytest.fixture(scope="module")
def llm(smollm2_path: Path) -> LeanVLLM:
    # smollm2_path converts the bundled model once; the engine itself starts on the first call.
    return LeanVLLM(max_tokens=24)


@pytest.fixture
def handler() -> Iterator[LeanCostHandler]:
    h = LeanCostHandler(ledger=CostLedger(":memory:")).register()
    yield h
    h.unregister()
    h.ledger.close()


async def _ask(llm: LeanVLLM, endpoint: str, mode: str, **kwargs: Any) -> tuple[str, Any]:
    """The answer text and the last response of one call through ``endpoint`` in ``mode``."""
    chat = [ChatMessage(role="user", content=QUESTION)]
    responses: list[Any]
    if mode == "sync":
        responses = [llm.complete(QUESTION, **kwargs) if endpoint == "complete" else llm.chat(chat, **kwargs)]
    elif mode == "async":
        responses = [await llm.acomplete(QUESTION, **kwargs) if endpoint == "complete"
                     else await llm.achat(chat, **kwargs)]
    elif mode == "stream":
        responses = list(llm.stream_complete(QUESTION, **kwargs) if endpoint == "complete"
                         else llm.stream_chat(chat, **kwargs))
    else:
        stream = (await llm.astream_complete(QUESTION, **kwargs) if endpoint == "complete"
                  else await llm.astream_chat(chat, **kwargs))
        responses = [r async for r in stream]
    last = responses[-1]
    text = last.text if isinstance(last, CompletionResponse) else last.message.content
    if mode in ("stream", "astream"):
        assert len(responses) > 2
        assert "".join(r.delta or "" for r in responses) == text
        assert all(r.raw is None for r in responses[:-1])  # only the last one carries usage
    return text, last


@pytest.mark.parametrize("mode", ["sync", "async", "stream", "astream"])
@pytest.mark.parametrize("endpoint", ["complete", "chat"])
async def test_answers_and_records_provider_usage(llm: LeanVLLM, handler: LeanCostHandler,
                                                  endpoint: str, mode: str) -> None:
    text, last = await _ask(llm, endpoint, mode)
    assert "Paris" in text
    assert isinstance(last, CompletionResponse if endpoint == "complete" else ChatResponse)
    raw = last.raw
    assert isinstance(raw, dict)
    usage = raw["usage"]
    assert raw["model"] == "smollm2-135m-instruct"
    assert usage["prompt_tokens"] > 5 and 0 < usage["completion_tokens"] <= 24
    assert last.additional_kwargs["prompt_tokens"] == usage["prompt_tokens"]
    (record,) = handler.ledger.calls()
    assert record.usage.source == "provider"
    assert record.model == "smollm2-135m-instruct"
    assert (record.usage.input_tokens, record.usage.output_tokens) == (
        usage["prompt_tokens"], usage["completion_tokens"])
    assert record.usage.cached_input_tokens == usage["prompt_tokens_details"]["cached_tokens"]


async def test_complete_and_chat_give_the_same_greedy_answer(llm: LeanVLLM) -> None:
    chat = await llm.achat([ChatMessage(role="user", content=QUESTION)])
    assert llm.complete(QUESTION).text == chat.message.content


def test_formatted_prompt_is_sent_raw(llm: LeanVLLM) -> None:
    templated = llm.complete("Hi")
    raw = llm.complete("Hi", formatted=True)
    # The chat template wraps the prompt in role markers: many more prompt tokens.
    assert raw.raw["usage"]["prompt_tokens"] < templated.raw["usage"]["prompt_tokens"] - 5


def test_per_call_options(llm: LeanVLLM) -> None:
    short = llm.complete("Write a long story about the sea.", max_tokens=3)
    assert short.raw["usage"]["completion_tokens"] == 3 and short.raw["finish_reason"] == "length"
    sampled = [llm.complete("Name a colour.", temperature=1.0, top_p=0.9, seed=7, max_tokens=8).text
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # same seed, same sample


def test_metadata_matches_the_engine(llm: LeanVLLM) -> None:
    llm.complete("Hi", max_tokens=1)
    metadata = llm.metadata
    assert metadata.context_window == 8192 == llm.backend().context_window
    assert metadata.num_output == 24 and metadata.is_chat_model
    assert metadata.model_name == "smollm2-135m-instruct"


def test_shared_prefix_is_a_cache_hit_for_the_same_tenant(llm: LeanVLLM, handler: LeanCostHandler) -> None:
    acme = LeanVLLM(max_tokens=4, tenant="acme-prefix")  # same engine settings: the same engine
    acme.complete(LONG_PREFIX + " Question: which item is red?")
    acme.complete(LONG_PREFIX + " Question: which item is blue?")
    llm.complete(LONG_PREFIX + " Question: which item is blue?", tenant="globex-prefix")
    first, second, other_tenant = handler.ledger.calls()
    assert first.usage.input_tokens >= 300
    assert second.usage.source == "provider" and second.usage.cached_input_tokens >= 256
    assert other_tenant.usage.cached_input_tokens == 0  # tenants never share cached prefixes


async def test_streamed_cache_hit_is_recorded(llm: LeanVLLM, handler: LeanCostHandler) -> None:
    prompt = LONG_PREFIX + " Question: which item is grey?"
    llm.complete(prompt, max_tokens=1, tenant="stream-prefix")
    stream = await llm.astream_complete(prompt, max_tokens=4, tenant="stream-prefix")
    async for _ in stream:
        pass
    _, streamed = handler.ledger.calls()
    assert streamed.usage.source == "provider" and streamed.usage.cached_input_tokens > 0


def test_unknown_call_option_names_the_allowed_ones(llm: LeanVLLM) -> None:
    with pytest.raises(InvalidParameterError, match=r"max_tokens.*tenant") as info:
        llm.complete(QUESTION, frequency_penalty=0.5)
    assert info.value.received == ["frequency_penalty"]
    with pytest.raises(InvalidParameterError):
        llm.stream_chat([ChatMessage(role="user", content=QUESTION)], logit_bias={})


async def test_bad_per_call_values_are_rejected(llm: LeanVLLM) -> None:
    with pytest.raises(ValidationError, match="temperature"):
        await llm.acomplete(QUESTION, temperature=-1)
    # "tool" messages are tool results now (function calling); the legacy "function" role is not.
    with pytest.raises(InvalidParameterError, match="function"):
        llm.chat([ChatMessage(role="function", content="42")])


def test_bad_construction_values_are_rejected() -> None:
    with pytest.raises(ValidationError, match="temperature"):
        LeanVLLM(temperature=-1)


def test_non_checkpoint_model_dir_fails_on_first_call(tmp_path: Path) -> None:
    llm = LeanVLLM(model=str(tmp_path))  # construction does not look at the directory
    with pytest.raises(InvalidParameterError, match="model"):
        llm.complete(QUESTION)
