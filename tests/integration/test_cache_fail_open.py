"""Issue 22, part 2: the cache never turns a working model call into a failure.

Prompts with NUL, a lone surrogate (it arrives through ordinary JSON escapes) and a million
characters go through every adapter — ``LeanCache`` with the real ``ChatOpenAI``, ``LeanCachedLLM``
with LlamaIndex's real ``OpenAI`` class (both against the loopback stub), and ``LeanPipeline`` with
a scripted model — on SQLite and on a real PostgreSQL server, in exact and semantic mode (the real
MiniLM). Every call must return the model's answer; a cache that fails on every operation must not
change that, and its failures must be counted and logged once per kind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_openai import ChatOpenAI

from lean_chain import LeanCache
from lean_core.cache import (
    CacheEntry,
    CacheNamespace,
    CacheStore,
    ResponseCache,
    SemanticCandidate,
    SQLiteCacheStore,
    tenant_scope,
)
from lean_core.embeddings import default_embedder
from lean_core.errors import CacheStoreError
from lean_core.pipeline import LeanPipeline, ModelCall, ModelReply, PipelineSettings
from lean_core.usage import TokenUsage
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401
from tests.support.openai_stub import OpenAIStub

pytestmark = pytest.mark.integration

PROMPTS = {
    "nul": "What is the refund\x00 policy for orders?",
    "surrogate": "Where is my invoice \ud800 for March?",
    "huge": "Summarise this: " + "lorem ipsum dolor " * 58_000,  # ~1M characters
}
STORES = ["sqlite", "postgres"]
MODES = ["exact", "semantic"]
# The openai SDK itself cannot send a lone surrogate (its JSON body is encoded to UTF-8 strictly), so
# that prompt goes to in-process models that answer like the stub; the others go to the stub.
IN_PROCESS = {"surrogate"}


def _echo(prompt: str) -> str:
    """What the stub answers (tests/support/openai_stub.py): the first six words, echoed."""
    return "echo: " + " ".join(prompt.split()[:6])


class SurrogateGuard:
    """Wraps the real MiniLM embedder and fails the test if it is ever handed a lone surrogate."""

    def __init__(self) -> None:
        self.inner = default_embedder()
        self.seen = 0

    def encode(self, texts: list[str]) -> Any:
        for text in texts:
            text.encode("utf-8")  # raises UnicodeEncodeError on a lone surrogate
        self.seen += len(texts)
        return self.inner.encode(texts)


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CacheStore]]:
    made: list[CacheStore] = []

    def make() -> CacheStore:
        if request.param == "sqlite":
            store: CacheStore = SQLiteCacheStore(tmp_path / f"{uuid.uuid4().hex}.sqlite3")
        else:
            from lean_core.cache import PostgresCacheStore

            dsn = request.getfixturevalue("postgres_dsn")
            store = PostgresCacheStore(dsn, table=f"fail_open_{uuid.uuid4().hex[:12]}")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def _cache(make_store: Callable[[], CacheStore], mode: str) -> ResponseCache:
    return ResponseCache(make_store(), mode=mode, embedder=SurrogateGuard())  # type: ignore[arg-type]


def _served_or_stored_nothing(cache: ResponseCache) -> None:
    """Either the entry round-tripped (second call served) or it was skipped: never lost midway."""
    stats = cache.stats
    assert stats.writes + stats.store_errors >= 1
    if stats.writes:
        assert stats.hits >= 1, str(stats)


class EchoChat(BaseChatModel):
    """A LangChain chat model answering like the stub, in process."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "echo-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=_echo(str(messages[-1].content))))])


def _langchain_model(stub: OpenAIStub, name: str, cache: LeanCache) -> BaseChatModel:
    if name in IN_PROCESS:
        return EchoChat(cache=cache)
    return ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                      max_retries=0, cache=cache)


def _llamaindex_model(stub: OpenAIStub, name: str) -> Any:
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_completion_callback
    from llama_index.llms.openai import OpenAI

    class EchoLLM(CustomLLM):
        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="echo")

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            return CompletionResponse(text=_echo(prompt))

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            yield CompletionResponse(text=_echo(prompt), delta=_echo(prompt))

    if name in IN_PROCESS:
        return EchoLLM()
    return OpenAI(model="gpt-4o", api_base=stub.base_url, api_key="test-key", max_retries=0)


# -- LeanCache + ChatOpenAI -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(PROMPTS))
async def test_lean_cache_always_returns_the_models_answer(stub: OpenAIStub, make_store: Callable[[], CacheStore],
                                                           mode: str, name: str) -> None:
    prompt = PROMPTS[name]
    lean = LeanCache(cache=_cache(make_store, mode))
    chat = _langchain_model(stub, name, lean)
    with tenant_scope("acme"):
        assert chat.invoke(prompt).content == _echo(prompt)
        assert (await chat.ainvoke(prompt)).content == _echo(prompt)
    _served_or_stored_nothing(lean.cache)


# -- LeanCachedLLM + llama-index OpenAI -------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(PROMPTS))
async def test_lean_cached_llm_always_returns_the_models_answer(stub: OpenAIStub,
                                                                make_store: Callable[[], CacheStore],
                                                                mode: str, name: str) -> None:
    from llama_index.core.base.llms.types import ChatMessage

    from lean_index import LeanCachedLLM

    prompt = PROMPTS[name]
    llm = LeanCachedLLM(_llamaindex_model(stub, name), cache=_cache(make_store, mode), tenant="acme")
    assert llm.complete(prompt).text == _echo(prompt)
    assert (await llm.acomplete(prompt)).text == _echo(prompt)
    message = [ChatMessage(role="user", content=prompt)]
    # (A CustomLLM sees the chat as "user: ..." text, so only the answer's origin is checked.)
    assert str(llm.chat(message).message.content).startswith("echo: ")
    assert "".join(c.delta or "" for c in llm.stream_chat(message)).startswith("echo: ")
    _served_or_stored_nothing(llm.cache)


# -- LeanPipeline ------------------------------------------------------------------------------------
class EchoModel:
    """A pipeline model answering like the stub, counting its calls."""

    model_name = "echo"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, call: ModelCall) -> ModelReply:
        self.calls += 1
        question = str(call.messages[-1]["content"])
        return ModelReply(text=_echo(question), finish_reason="stop", usage=TokenUsage(input_tokens=9, output_tokens=4))

    async def acomplete(self, call: ModelCall) -> ModelReply:
        return self.complete(call)


def _pipeline(cache: Any, model: EchoModel, mode: str = "exact") -> LeanPipeline:
    settings = PipelineSettings(compression={"enabled": False}, template={"enabled": False},
                                budget={"enabled": False}, cache={"mode": mode}, tenant="acme")
    return LeanPipeline(model, settings=settings, cache=cache)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(PROMPTS))
async def test_pipeline_always_returns_the_models_answer(make_store: Callable[[], CacheStore], mode: str,
                                                         name: str) -> None:
    prompt = PROMPTS[name]
    cache, model = _cache(make_store, mode), EchoModel()
    pipeline = _pipeline(cache, model, mode)
    # A lone surrogate cannot be encoded for any model; the request carries U+FFFD in its place
    # (as a UTF-8 decoder would) and the model's answer still comes back.
    asked = prompt.replace("\ud800", "\ufffd")
    assert pipeline.invoke(prompt).answer == _echo(asked)
    assert (await pipeline.ainvoke(prompt)).answer == _echo(asked)
    _served_or_stored_nothing(cache)


# -- a store that fails on every operation ---------------------------------------------------------
class BrokenStore(CacheStore):
    """Every operation raises: a store error for reads and writes, and an unexpected one for search."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self) -> Any:
        self.calls += 1
        raise CacheStoreError("the cache database is down")

    def put(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        self._fail()

    def get(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        return self._fail()  # type: ignore[no-any-return]

    def search(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
               now: float) -> list[SemanticCandidate]:
        self.calls += 1
        raise RuntimeError("driver bug")

    def touch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        self._fail()

    def invalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                   prompt_key: str | None = None) -> int:
        return self._fail()  # type: ignore[no-any-return]

    def count(self, *, tenant: str | None = None) -> int:
        return self._fail()  # type: ignore[no-any-return]

    def purge_expired(self, *, now: float) -> int:
        return self._fail()  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


class BrokenEmbedder:
    def encode(self, texts: list[str]) -> Any:
        raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")


@pytest.mark.parametrize("mode", MODES)
async def test_a_store_failing_on_every_operation_never_reaches_the_caller(
        stub: OpenAIStub, mode: str, caplog: pytest.LogCaptureFixture) -> None:
    from llama_index.llms.openai import OpenAI

    from lean_index import LeanCachedLLM

    caplog.set_level(logging.WARNING, logger="lean_core.cache.response_cache")
    prompts = ["first question here", "second question here", "third question here"]
    store = BrokenStore()
    cache = ResponseCache(store, mode=mode, embedder=SurrogateGuard())  # type: ignore[arg-type]
    lean = LeanCache(cache=cache, default_tenant="public")
    chat = ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                      max_retries=0, cache=lean)
    llm = LeanCachedLLM(OpenAI(model="gpt-4o", api_base=stub.base_url, api_key="test-key", max_retries=0),
                        cache=cache, tenant="acme")
    model = EchoModel()
    pipeline = _pipeline(cache, model, mode)
    for prompt in prompts:
        assert chat.invoke(prompt).content == _echo(prompt)
        assert (await chat.ainvoke(prompt)).content == _echo(prompt)
        assert llm.complete(prompt).text == _echo(prompt)
        assert (await llm.acomplete(prompt)).text == _echo(prompt)
        assert pipeline.invoke(prompt).answer == _echo(prompt)
        assert (await pipeline.ainvoke(prompt)).answer == _echo(prompt)
    calls = 6 * len(prompts)
    assert len(stub.requests) == 4 * len(prompts) and model.calls == 2 * len(prompts)
    stats = cache.stats
    assert stats.lookup_errors == calls and stats.store_errors == calls and stats.writes == 0
    assert stats.misses == calls and stats.hits == 0 and store.calls >= 2 * calls
    assert "lookup errors 18, store errors 18" in str(stats)
    # One warning per kind of failure, not one per call.
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("CacheStoreError" in w for w in warnings)


async def test_an_embedder_failure_is_a_miss_and_a_skipped_write(stub: OpenAIStub, tmp_path: Path) -> None:
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "e.sqlite3"), mode="semantic",
                          embedder=BrokenEmbedder())  # type: ignore[arg-type]
    lean = LeanCache(cache=cache, default_tenant="public")
    chat = ChatOpenAI(model="gpt-4o", base_url=stub.base_url, api_key="test-key",  # type: ignore[arg-type]
                      max_retries=0, cache=lean)
    assert chat.invoke("How do I reset my password?").content == _echo("How do I reset my password?")
    assert (await chat.ainvoke("How do I reset my password?")).content == _echo("How do I reset my password?")
    assert cache.stats.lookup_errors == 2 and cache.stats.store_errors == 2 and len(stub.requests) == 2
    cache.close()


def test_the_exact_key_stays_lossless_while_the_embedder_sees_clean_text(tmp_path: Path) -> None:
    guard = SurrogateGuard()
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "k.sqlite3"), mode="semantic", embedder=guard)  # type: ignore[arg-type]
    ns = CacheNamespace(tenant="acme", llm="m")
    cache.update("Where is my invoice \ud800?", "surrogate answer", namespace=ns)
    cache.update("Where is my invoice \ud801?", "other answer", namespace=ns)
    assert guard.seen >= 1 and cache.stats.store_errors == 0 and cache.stats.writes == 2
    # Two prompts that differ only in their lone surrogate keep two exact keys.
    assert cache.lookup("Where is my invoice \ud800?", namespace=ns).entry.payload == "surrogate answer"  # type: ignore[union-attr]
    assert cache.lookup("Where is my invoice \ud801?", namespace=ns).entry.payload == "other answer"  # type: ignore[union-attr]
    cache.close()
