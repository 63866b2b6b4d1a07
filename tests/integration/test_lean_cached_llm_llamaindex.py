"""LeanCachedLLM around real LlamaIndex LLM classes, on a real SQLite cache and the bundled MiniLM.

The wrapped LLM is a counting CustomLLM (answers name the prompt and a call number, so a served
answer shows which call produced it) or LlamaIndex's MockLLM inside a VectorStoreIndex query.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMCompletionEndEvent
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from pydantic import Field, PrivateAttr

import lean_core.cache.response_cache as response_cache_module
from lean_core import CostLedger, InvalidParameterError
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.embeddings import default_embedder
from lean_index import LeanCachedLLM, LeanCostHandler
from lean_index._cache_codec import llm_identity

pytestmark = pytest.mark.integration

USAGE = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


class CountingLLM(CustomLLM):
    """Answers "answer #<n> to <prompt>" and counts calls; streams word by word."""

    model: str = "counting-1"
    temperature: float = 0.0
    api_key: str = "sk-first"
    fail_after: int | None = None
    """Streams raise after this many chunks."""
    _calls: list[str] = PrivateAttr(default_factory=list)
    _kwargs: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @property
    def calls(self) -> list[str]:
        return self._calls

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, num_output=64)

    def _answer(self, prompt: str) -> str:
        self._calls.append(prompt)
        return f"answer #{len(self._calls)} to {prompt}"

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._kwargs.append(kwargs)
        return CompletionResponse(text=self._answer(prompt), raw={"usage": dict(USAGE)})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        words = self._answer(prompt).split(" ")

        def gen() -> CompletionResponseGen:
            text = ""
            for i, word in enumerate(words):
                if self.fail_after is not None and i >= self.fail_after:
                    raise RuntimeError("the stream broke")
                delta = word if i == 0 else f" {word}"
                text += delta
                yield CompletionResponse(text=text, delta=delta,
                                         raw={"usage": dict(USAGE)} if i == len(words) - 1 else None)

        return gen()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteCacheStore]:
    s = SQLiteCacheStore(tmp_path / "cache.sqlite3")
    yield s
    s.close()


def exact(store: SQLiteCacheStore, **options: Any) -> ResponseCache:
    return ResponseCache(store, mode="exact", **options)


def semantic(store: SQLiteCacheStore, **options: Any) -> ResponseCache:
    return ResponseCache(store, mode="semantic", embedder=default_embedder(), **options)


async def complete(llm: LeanCachedLLM, prompt: str, use_async: bool, **kwargs: Any) -> CompletionResponse:
    return await llm.acomplete(prompt, **kwargs) if use_async else llm.complete(prompt, **kwargs)


async def chat(llm: LeanCachedLLM, messages: list[ChatMessage], use_async: bool, **kwargs: Any) -> ChatResponse:
    return await llm.achat(messages, **kwargs) if use_async else llm.chat(messages, **kwargs)


async def stream_complete(llm: LeanCachedLLM, prompt: str, use_async: bool, **kwargs: Any) -> list[Any]:
    if use_async:
        return [chunk async for chunk in await llm.astream_complete(prompt, **kwargs)]
    return list(llm.stream_complete(prompt, **kwargs))


async def stream_chat(llm: LeanCachedLLM, messages: list[ChatMessage], use_async: bool) -> list[Any]:
    if use_async:
        return [chunk async for chunk in await llm.astream_chat(messages)]
    return list(llm.stream_chat(messages))


def conversation(question: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.SYSTEM, content="Answer briefly."),
            ChatMessage(role=MessageRole.USER, content=question)]


both = pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])


@both
async def test_complete_hit_on_second_call(store: SQLiteCacheStore, use_async: bool) -> None:
    ledger = CostLedger(":memory:")
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store, ledger=ledger), tenant="default")
    first = await complete(llm, "What is the capital of France?", use_async)
    second = await complete(llm, "What is the capital of France?", use_async)
    spaced = await complete(llm, "  What is the capital   of France?\n", use_async)  # normalised
    assert len(inner.calls) == 1
    assert first.text == second.text == spaced.text == "answer #1 to What is the capital of France?"
    assert "lean_cache" not in first.additional_kwargs
    assert second.additional_kwargs["lean_cache"] == "exact"
    assert second.raw is None  # no provider call was made for it
    miss, hit, _ = ledger.savings()
    assert (miss.cache_hit, hit.cache_hit) == (False, True)
    assert (hit.input_tokens_before, hit.output_tokens_before, hit.model) == (11, 5, "counting-1")
    ledger.close()


@both
async def test_chat_hit_and_conversation_identity(store: SQLiteCacheStore, use_async: bool) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="default")
    first = await chat(llm, conversation("Name a prime number."), use_async)
    second = await chat(llm, conversation("Name a prime number."), use_async)  # new, equal messages
    assert len(inner.calls) == 1
    assert isinstance(second, ChatResponse) and second.message.role == MessageRole.ASSISTANT
    assert second.message.content == first.message.content
    assert second.additional_kwargs["lean_cache"] == "exact"
    # Same final question after a different system turn, or with different message kwargs: misses.
    other_system = [ChatMessage(role=MessageRole.SYSTEM, content="Answer at length."),
                    ChatMessage(role=MessageRole.USER, content="Name a prime number.")]
    await chat(llm, other_system, use_async)
    tagged = conversation("Name a prime number.")
    tagged[-1].additional_kwargs["name"] = "bob"
    await chat(llm, tagged, use_async)
    assert len(inner.calls) == 3
    # complete() with the same text is a different call kind.
    await complete(llm, "Name a prime number.", use_async)
    assert len(inner.calls) == 4


async def test_sync_and_async_share_entries(store: SQLiteCacheStore) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="default")
    written = llm.complete("Spell 'cat'.")
    served = await llm.acomplete("Spell 'cat'.")
    llm.chat(conversation("Spell 'dog'."))
    chatted = await llm.achat(conversation("Spell 'dog'."))
    assert served.text == written.text and served.additional_kwargs["lean_cache"] == "exact"
    assert chatted.additional_kwargs["lean_cache"] == "exact"
    assert len(inner.calls) == 2


@both
async def test_streaming_miss_stores_and_hit_replays(store: SQLiteCacheStore, use_async: bool) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="default")
    chunks = await stream_complete(llm, "Count to three.", use_async)
    assert len(chunks) > 3 and "".join(c.delta for c in chunks) == "answer #1 to Count to three."
    replay = await stream_complete(llm, "Count to three.", use_async)
    assert len(inner.calls) == 1
    (hit,) = replay
    assert hit.delta == hit.text == "answer #1 to Count to three."
    assert hit.additional_kwargs["lean_cache"] == "exact"
    assert (await complete(llm, "Count to three.", use_async)).text == hit.text  # same entry

    chat_chunks = await stream_chat(llm, conversation("Count to two."), use_async)
    assert "".join(c.delta for c in chat_chunks) == chat_chunks[-1].message.content
    (chat_hit,) = await stream_chat(llm, conversation("Count to two."), use_async)
    assert chat_hit.delta == chat_hit.message.content == chat_chunks[-1].message.content
    assert chat_hit.additional_kwargs["lean_cache"] == "exact"
    assert len(inner.calls) == 2
    # An answer written by chat() is replayed by stream_chat(), and the other way round.
    written = await chat(llm, conversation("Count to two."), use_async)
    assert written.message.content == chat_hit.message.content and len(inner.calls) == 2


@both
async def test_broken_or_abandoned_stream_stores_nothing(store: SQLiteCacheStore, use_async: bool) -> None:
    inner = CountingLLM(fail_after=2)
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="default")
    with pytest.raises(RuntimeError, match="stream broke"):
        await stream_complete(llm, "Tell me a story.", use_async)
    assert store.count() == 0
    inner.fail_after = None
    abandoned = llm.stream_complete("Tell me a story.")
    next(abandoned)
    abandoned.close()  # the consumer stopped reading: the answer is incomplete
    assert store.count() == 0
    await stream_complete(llm, "Tell me a story.", use_async)
    assert store.count() == 1 and len(inner.calls) == 3


@both
async def test_tenants_never_share_answers(store: SQLiteCacheStore, use_async: bool) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="acme")
    mine = await complete(llm, "What is our refund policy?", use_async)
    theirs = await complete(llm, "What is our refund policy?", use_async, tenant="globex")
    assert len(inner.calls) == 2 and theirs.text != mine.text
    assert inner._kwargs[-1] == {}  # tenant= is the cache's, not forwarded
    assert "lean_cache" not in theirs.additional_kwargs
    other = LeanCachedLLM(inner, cache=exact(store), tenant="globex")
    assert (await complete(other, "What is our refund policy?", use_async)).text == theirs.text
    assert (await complete(llm, "What is our refund policy?", use_async)).text == mine.text
    assert len(inner.calls) == 2
    assert store.count(tenant="acme") == store.count(tenant="globex") == 1


def test_model_parameters_and_call_options_are_part_of_the_key(store: SQLiteCacheStore) -> None:
    cache = exact(store)
    prompt = "Suggest a name for a cat."

    def served(inner: CountingLLM, **kwargs: Any) -> bool:
        response = LeanCachedLLM(inner, cache=cache, tenant="default").complete(prompt, **kwargs)
        return "lean_cache" in response.additional_kwargs

    assert not served(CountingLLM())
    assert served(CountingLLM())  # an equal model: hit
    assert not served(CountingLLM(temperature=0.7))
    assert not served(CountingLLM(model="counting-2"))
    assert not served(CountingLLM(), top_p=0.5)
    assert not served(CountingLLM(), formatted=True)
    assert not served(CountingLLM(system_prompt="Be terse."))
    assert served(CountingLLM(temperature=0.7))  # each of them was stored under its own identity
    assert served(CountingLLM(api_key="sk-rotated"))  # credentials are not the model
    identity = json.dumps(llm_identity(CountingLLM(api_key="sk-secret-value")))
    assert "sk-secret-value" not in identity and "temperature" in identity
    assert store.count() == 6


def test_mock_llm_max_tokens_changes_the_namespace(store: SQLiteCacheStore) -> None:
    cache = exact(store)
    short = LeanCachedLLM(MockLLM(max_tokens=2), cache=cache, tenant="default").complete("hello")
    long = LeanCachedLLM(MockLLM(max_tokens=4), cache=cache, tenant="default").complete("hello")
    assert (short.text, long.text) == ("text text", "text text text text")
    assert "lean_cache" not in long.additional_kwargs


def test_uncacheable_calls_pass_straight_through(store: SQLiteCacheStore) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), tenant="default")
    for _ in range(2):
        llm.complete("Use the tool.", tools=[object()])  # not JSON data: cannot be keyed
    assert len(inner.calls) == 2 and store.count() == 0


@both
async def test_semantic_hit_for_a_rewording(store: SQLiteCacheStore, use_async: bool) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=semantic(store), tenant="default")
    first = await complete(llm, "How do I reset my password?", use_async)
    reworded = await complete(llm, "How can I reset my password?", use_async)
    assert len(inner.calls) == 1
    assert reworded.text == first.text and reworded.additional_kwargs["lean_cache"] == "semantic"
    chatted = await chat(llm, conversation("How do I reset my password?"), use_async)
    again = await chat(llm, conversation("How can I reset my password?"), use_async)
    assert len(inner.calls) == 2
    assert again.message.content == chatted.message.content
    assert again.additional_kwargs["lean_cache"] == "semantic"


def test_semantic_verifier_refuses_swapped_roles(store: SQLiteCacheStore) -> None:
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=semantic(store), tenant="default")
    llm.complete("Are cats afraid of tigers?")
    swapped = llm.complete("Are tigers afraid of cats?")
    assert len(inner.calls) == 2
    assert swapped.text == "answer #2 to Are tigers afraid of cats?"
    assert llm.cache.stats.semantic_hits == 0


def test_entries_expire_after_ttl(store: SQLiteCacheStore, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000.0]
    fake_time = SimpleNamespace(time=lambda: clock[0], perf_counter=time.perf_counter)
    monkeypatch.setattr(response_cache_module, "time", fake_time)
    import lean_core.cache.sqlite_store as sqlite_store_module

    monkeypatch.setattr(sqlite_store_module, "time", fake_time)
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=exact(store), ttl_s=60, tenant="default")
    llm.complete("What's the weather like?")
    clock[0] += 59
    assert llm.complete("What's the weather like?").additional_kwargs["lean_cache"] == "exact"
    clock[0] += 2
    fresh = llm.complete("What's the weather like?")
    assert "lean_cache" not in fresh.additional_kwargs and len(inner.calls) == 2


async def test_bad_input_is_refused(store: SQLiteCacheStore) -> None:
    cache = exact(store)
    with pytest.raises(InvalidParameterError, match="llm"):
        LeanCachedLLM("gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="mode"):
        LeanCachedLLM(CountingLLM(), mode="fuzzy")
    with pytest.raises(InvalidParameterError, match="mode"):
        LeanCachedLLM(CountingLLM(), mode="semantic", cache=cache)  # the cache is exact
    for ttl in (0, -5, "1h", True):
        with pytest.raises(InvalidParameterError, match="ttl_s"):
            LeanCachedLLM(CountingLLM(), ttl_s=ttl)
    for tenant in ("", "x" * 257, 7):
        with pytest.raises(InvalidParameterError, match="tenant"):
            LeanCachedLLM(CountingLLM(), tenant=tenant)
    with pytest.raises(InvalidParameterError, match="cache"):
        LeanCachedLLM(CountingLLM(), cache=object())  # type: ignore[arg-type]
    other_ledger = CostLedger(":memory:")
    with pytest.raises(InvalidParameterError, match="ledger"):
        LeanCachedLLM(CountingLLM(), cache=cache, ledger=other_ledger)
    other_ledger.close()
    inner = CountingLLM()
    llm = LeanCachedLLM(inner, cache=cache, tenant="default")
    with pytest.raises(InvalidParameterError, match="prompt"):
        llm.complete(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="prompt"):
        await llm.acomplete(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="messages"):
        llm.chat([])
    with pytest.raises(InvalidParameterError, match="messages"):
        llm.chat("hello")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="tenant"):
        llm.complete("hello", tenant="")
    with pytest.raises(InvalidParameterError, match="tenant"):
        list(llm.stream_complete("hello", tenant=""))
    assert inner.calls == [] and store.count() == 0


def test_construction_does_no_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nowhere" / "responses.sqlite3"
    monkeypatch.setenv("LEAN_INFERENCE_CACHE", str(target))
    llm = LeanCachedLLM(CountingLLM(), tenant="acme", ttl_s=30)
    assert llm.mode == "semantic" and llm.cache.mode == "semantic" and llm.cache.ttl_s == 30
    assert llm.metadata.model_name == "counting-1" and not llm.metadata.is_function_calling_model
    assert not target.parent.exists()


class _Events(BaseEventHandler):
    seen: list[BaseEvent] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Events"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        self.seen.append(event)


class CountingMockLLM(MockLLM):
    _calls: int = PrivateAttr(default=0)

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._calls += 1
        return CompletionResponse(text=f"The answer, take {self._calls}.")


def test_query_engine_second_query_is_a_cache_hit(store: SQLiteCacheStore) -> None:
    from lean_core.assets import seed_tiktoken_cache

    seed_tiktoken_cache()  # LlamaIndex's splitter asks tiktoken for cl100k_base (offline here)
    ledger = CostLedger(":memory:")
    facts = ["The Spree river flows through Berlin.", "Paris is the capital of France.",
             "Rome is the capital of Italy."]
    index = VectorStoreIndex.from_documents([Document(text=t) for t in facts],
                                            embed_model=MockEmbedding(embed_dim=8))
    inner = CountingMockLLM(max_tokens=None)
    llm = LeanCachedLLM(inner, cache=semantic(store, ledger=ledger), tenant="default")
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)
    dispatcher = get_dispatcher("root")
    events, costs = _Events(), LeanCostHandler(ledger, tenant="default")
    dispatcher.add_event_handler(events)
    costs.register()
    try:
        first = engine.query("Which river flows through Berlin?")
        second = engine.query("Which river flows through Berlin?")
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h not in (events, costs)]
    assert str(first) == str(second) == "The answer, take 1."
    assert inner._calls == 1
    assert (llm.cache.stats.exact_hits, llm.cache.stats.misses) == (1, 1)
    ends = [e for e in events.seen if isinstance(e, LLMCompletionEndEvent)]
    # miss: the wrapped LLM's end event, then the wrapper's; hit: the wrapper's alone, marked.
    assert [e.response.additional_kwargs.get("lean_cache") for e in ends] == [None, None, "exact"]
    # The ledger has the one real call and the cache's miss and hit; the hit is not a call.
    assert len(ledger.calls()) == 1
    assert [e.cache_hit for e in ledger.savings()] == [False, True]
    ledger.close()
