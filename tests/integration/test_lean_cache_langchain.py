"""LeanCache against LangChain's standard cache suites and our stricter checks (real MiniLM verifier).

Every cache here lives in a fresh SQLite file under tmp_path; semantic mode uses the bundled
MiniLM embedder and the shipped verifier calibration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from langchain_core.caches import BaseCache
from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult, Generation
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_tests.integration_tests import AsyncCacheTestSuite, SyncCacheTestSuite

from lean_chain import LeanCache
from lean_chain.cache import _model_name
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.cache import response_cache as response_cache_module
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger

pytestmark = pytest.mark.integration

MODES = ["exact", "semantic"]
LLM = "[('_type', 'test-llm'), ('model_name', 'test-model'), ('temperature', 0.0)]"


def make_cache(path: Path, mode: str = "semantic", **options: Any) -> LeanCache:
    # These tests share one explicit namespace for calls without a tenant; since issue 22 the
    # default is to cache no such call (tests/integration/test_cache_tenancy.py covers that).
    options.setdefault("default_tenant", "default")
    ledger = options.pop("ledger", None)
    return LeanCache(cache=ResponseCache(SQLiteCacheStore(path), mode=mode, ledger=ledger),  # type: ignore[arg-type]
                     **options)


@pytest.fixture(params=MODES)
def lean(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LeanCache]:
    cache = make_cache(tmp_path / "cache.sqlite3", request.param)
    yield cache
    cache.close()


@pytest.fixture
def semantic(tmp_path: Path) -> Iterator[LeanCache]:
    cache = make_cache(tmp_path / "semantic.sqlite3", "semantic")
    yield cache
    cache.close()


@pytest.fixture
def global_cache() -> Iterator[None]:
    before = get_llm_cache()
    yield
    set_llm_cache(before)


# -- LangChain's standard suites, in both modes ------------------------------------------------------
class TestLeanCacheStandardSync(SyncCacheTestSuite):
    @pytest.fixture(params=MODES)
    def cache(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseCache]:
        cache = make_cache(tmp_path / "std.sqlite3", request.param)
        yield cache
        cache.close()


class TestLeanCacheStandardAsync(AsyncCacheTestSuite):
    @pytest.fixture(params=MODES)
    async def cache(self, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BaseCache]:
        cache = make_cache(tmp_path / "std.sqlite3", request.param)
        yield cache
        cache.close()


# -- a chat model under our control ---------------------------------------------------------------
class ScriptedChat(BaseChatModel):
    """Returns ``replies`` in turn (each call: one ChatResult of ``n`` generations) and counts calls."""

    replies: list[list[AIMessage]]
    model_name: str = "scripted-1"
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls += 1
        reply = self.replies[self.calls - 1]
        return ChatResult(generations=[ChatGeneration(message=m.model_copy()) for m in reply])


def tool_reply() -> AIMessage:
    return AIMessage(
        content="Let me look that up.",
        tool_calls=[{"name": "weather", "args": {"city": "Paris", "unit": "celsius"}, "id": "call_1",
                     "type": "tool_call"}],
        additional_kwargs={"refusal": None},
        response_metadata={"model_name": "scripted-1", "finish_reason": "tool_calls"},
        usage_metadata={"input_tokens": 42, "output_tokens": 17, "total_tokens": 59},
    )


# -- isolation ----------------------------------------------------------------------------------------
def test_llm_string_isolates_entries(lean: LeanCache) -> None:
    lean.update("What is 2 + 2?", LLM, [Generation(text="4")])
    assert lean.lookup("What is 2 + 2?", LLM) == [Generation(text="4")]
    assert lean.lookup("What is 2 + 2?", LLM.replace("0.0", "0.7")) is None
    assert lean.lookup("What is 2 + 2?", "[('_type', 'other-llm')]") is None


def test_tenant_scope_isolates_and_overrides_metadata(lean: LeanCache) -> None:
    with LeanCache.tenant_scope("acme"):
        lean.update("Where is my invoice?", LLM, [Generation(text="acme's invoice")])
        assert lean.lookup("Where is my invoice?", LLM) == [Generation(text="acme's invoice")]
        with LeanCache.tenant_scope("globex"):  # nested scopes win, then restore
            assert lean.lookup("Where is my invoice?", LLM) is None
        assert lean.resolve_tenant() == "acme"
    assert lean.lookup("Where is my invoice?", LLM) is None  # default tenant
    llm = FakeListLLM(responses=["globex's invoice"], cache=lean)
    with LeanCache.tenant_scope("globex"):  # the scope takes precedence over run metadata
        assert llm.invoke("Where is my invoice?", config={"metadata": {"tenant": "acme"}}) == "globex's invoice"
    with LeanCache.tenant_scope("acme"):
        assert lean.lookup("Where is my invoice?", LLM) == [Generation(text="acme's invoice")]


def test_tenant_from_config_metadata_chat_sync(lean: LeanCache) -> None:
    chat = GenericFakeChatModel(messages=iter(["for acme", "for globex"]), cache=lean)
    acme, globex = {"metadata": {"tenant": "acme"}}, {"metadata": {"tenant": "globex"}}
    assert chat.invoke("Show my open tickets", config=acme).content == "for acme"
    assert chat.invoke("Show my open tickets", config=globex).content == "for globex"  # never acme's
    assert chat.invoke("Show my open tickets", config=acme).content == "for acme"  # hit (iterator is spent)
    assert chat.invoke("Show my open tickets", config=globex).content == "for globex"
    assert chat.with_config(metadata={"tenant": "acme"}).invoke("Show my open tickets").content == "for acme"
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat
    assert chain.invoke({"q": "Show my open tickets"}, config=globex).content == "for globex"
    assert [m.content for m in chat.batch(["Show my open tickets"] * 2, config=[acme, globex])] == [
        "for acme", "for globex"]
    nested = RunnableLambda(lambda q: chat.invoke(q, config=globex))  # the model run's own metadata wins
    assert nested.invoke("Show my open tickets", config=acme).content == "for globex"


async def test_tenant_from_config_metadata_chat_async(lean: LeanCache) -> None:
    chat = GenericFakeChatModel(messages=iter(["for acme", "for globex"]), cache=lean)
    acme, globex = {"metadata": {"tenant": "acme"}}, {"metadata": {"tenant": "globex"}}
    assert (await chat.ainvoke("Show my open tickets", config=acme)).content == "for acme"
    assert (await chat.ainvoke("Show my open tickets", config=globex)).content == "for globex"
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | chat
    assert (await chain.ainvoke({"q": "Show my open tickets"}, config=acme)).content == "for acme"
    out = await chat.abatch(["Show my open tickets"] * 2, config=[globex, acme])
    assert [m.content for m in out] == ["for globex", "for acme"]


def test_tenant_from_config_metadata_llm(lean: LeanCache) -> None:
    llm = FakeListLLM(responses=["for acme", "for globex"], cache=lean)
    acme, globex = {"metadata": {"tenant": "acme"}}, {"metadata": {"tenant": "globex"}}
    assert llm.invoke("Show my open tickets", config=acme) == "for acme"
    assert llm.invoke("Show my open tickets", config=globex) == "for globex"
    assert llm.batch(["Show my open tickets"] * 2, config=[globex, acme]) == ["for globex", "for acme"]
    chain = PromptTemplate.from_template("{q}") | llm
    assert chain.invoke({"q": "Show my open tickets"}, config=acme) == "for acme"
    assert llm.i == 0  # FakeListLLM cycles: two real calls brought it back to the start
    assert asyncio.run(llm.ainvoke("Show my open tickets", config=globex)) == "for globex"
    assert asyncio.run(chain.abatch([{"q": "Show my open tickets"}], config=acme)) == ["for acme"]
    assert llm.i == 0


def test_tenant_scope_reaches_executor_threads_and_tasks(lean: LeanCache) -> None:
    chat = ScriptedChat(replies=[[AIMessage("scoped")]], cache=lean)
    with LeanCache.tenant_scope("initech"):
        assert chat.invoke("Summarise my week").content == "scoped"
        assert [m.content for m in chat.batch(["Summarise my week"] * 3)] == ["scoped"] * 3

        async def gathered() -> list[Any]:
            return await asyncio.gather(*(asyncio.create_task(chat.ainvoke("Summarise my week")) for _ in range(3)))

        assert [m.content for m in asyncio.run(gathered())] == ["scoped"] * 3
    assert chat.calls == 1
    assert lean.lookup(_chat_prompt("Summarise my week"), chat._get_llm_string()) is None  # not in "default"


def _chat_prompt(text: str) -> str:
    from langchain_core.load import dumps

    return dumps([HumanMessage(text)])


def test_unresolved_tenant_bypasses_cache_when_no_default(tmp_path: Path) -> None:
    lean = make_cache(tmp_path / "c.sqlite3", "exact", default_tenant=None)
    lean.update("hello", LLM, [Generation(text="hi")])
    assert lean.lookup("hello", LLM) is None and lean.stats.writes == 0
    with LeanCache.tenant_scope("acme"):
        lean.update("hello", LLM, [Generation(text="hi")])
        assert lean.lookup("hello", LLM) == [Generation(text="hi")]


def test_bad_tenant_metadata_raises_instead_of_sharing(lean: LeanCache) -> None:
    chat = ScriptedChat(replies=[[AIMessage("x")]], cache=lean)
    with pytest.raises(InvalidParameterError, match="tenant"):
        chat.invoke("hello", config={"metadata": {"tenant": ""}})
    with pytest.raises(InvalidParameterError, match="tenant"):
        chat.invoke("hello", config={"metadata": {"tenant": ["acme"]}})
    assert chat.invoke("hello", config={"metadata": {"tenant": 42}}).content == "x"
    with LeanCache.tenant_scope("42"):
        assert lean.lookup(_chat_prompt("hello"), chat._get_llm_string()) is not None


def test_conversation_history_joins_the_namespace(lean: LeanCache) -> None:
    chat = ScriptedChat(replies=[[AIMessage("pirate")], [AIMessage("butler")]], cache=lean)
    question = HumanMessage("What should I wear today?")
    assert chat.invoke([SystemMessage("Talk like a pirate."), question]).content == "pirate"
    assert chat.invoke([SystemMessage("Talk like a butler."), question]).content == "butler"
    assert chat.invoke([SystemMessage("Talk like a pirate."), question]).content == "pirate"
    assert chat.calls == 2


# -- TTL ------------------------------------------------------------------------------------------
def test_entries_expire_after_ttl(lean: LeanCache, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=1_000_000.0)
    fake_time = SimpleNamespace(time=lambda: clock.now, perf_counter=time.perf_counter)
    monkeypatch.setattr(response_cache_module, "time", fake_time)
    lean.ttl_s = 60.0
    lean.update("What is the refund policy?", LLM, [Generation(text="30 days")])
    clock.now += 59.0
    assert lean.lookup("What is the refund policy?", LLM) == [Generation(text="30 days")]
    clock.now += 2.0
    assert lean.lookup("What is the refund policy?", LLM) is None


# -- semantic hits and the verifier --------------------------------------------------------------
def test_semantic_hit_is_served(semantic: LeanCache) -> None:
    semantic.update("How do I reset my password?", LLM, [Generation(text="Use the reset link.")])
    assert semantic.lookup("How can I reset my password?", LLM) == [Generation(text="Use the reset link.")]
    assert semantic.stats.semantic_hits == 1


@pytest.mark.parametrize(("cached", "asked"), [
    ("Are cats afraid of tigers?", "Are tigers afraid of cats?"),
    ("What is the capital of France?", "What is the capital of Germany?"),
])
def test_verifier_rejects_different_questions(semantic: LeanCache, cached: str, asked: str) -> None:
    semantic.update(cached, LLM, [Generation(text="cached answer")])
    assert semantic.lookup(asked, LLM) is None
    assert semantic.stats.rejected_candidates == 1  # found by vector search, refused by the verifier
    assert semantic.lookup(cached, LLM) == [Generation(text="cached answer")]


def test_semantic_hit_through_a_chat_model(semantic: LeanCache) -> None:
    chat = ScriptedChat(replies=[[AIMessage("Use the reset link.")], [AIMessage("Paris")]], cache=semantic)
    assert chat.invoke("How do I reset my password?").content == "Use the reset link."
    assert chat.invoke("How can I reset my password?").content == "Use the reset link."
    assert chat.invoke("How can I reset my password?", config={"metadata": {"tenant": "acme"}}).content == "Paris"
    assert chat.calls == 2


def test_structured_conversations_are_matched_exactly(semantic: LeanCache) -> None:
    chat = ScriptedChat(replies=[[AIMessage("It is 18 C.")], [AIMessage("It is 64 F.")]], cache=semantic)
    call = tool_reply()
    history: list[BaseMessage] = [HumanMessage("Weather in Paris?"), call]
    first = [*history, ToolMessage('{"temp": 18, "unit": "C"}', tool_call_id="call_1")]
    second = [*history, ToolMessage('{"temp": 64, "unit": "F"}', tool_call_id="call_1")]
    assert chat.invoke(first).content == "It is 18 C."
    assert chat.invoke(second).content == "It is 64 F."
    assert chat.invoke(first).content == "It is 18 C."
    assert chat.calls == 2


# -- payload round trips ---------------------------------------------------------------------------
def test_chat_generation_round_trip_with_tool_calls(lean: LeanCache) -> None:
    message = tool_reply()
    generations = [ChatGeneration(message=message, generation_info={"finish_reason": "tool_calls"}),
                   ChatGeneration(message=AIMessage("second candidate", response_metadata={"logprobs": None}))]
    lean.update(_chat_prompt("Weather in Paris?"), LLM, generations)
    served = lean.lookup(_chat_prompt("Weather in Paris?"), LLM)
    assert served == generations
    assert served is not None and isinstance(served, list)
    first = served[0]
    assert isinstance(first, ChatGeneration) and isinstance(first.message, AIMessage)
    assert first.message.tool_calls == message.tool_calls
    assert first.message.additional_kwargs == {"refusal": None}
    assert first.message.response_metadata == message.response_metadata
    assert first.message.usage_metadata == message.usage_metadata


def test_multiple_generations_round_trip_through_a_model(lean: LeanCache) -> None:
    chat = ScriptedChat(replies=[[tool_reply(), AIMessage("plain"), AIMessage("third")]], cache=lean)
    first = chat.generate([[HumanMessage("Weather in Paris?")]])
    second = chat.generate([[HumanMessage("Weather in Paris?")]])
    assert chat.calls == 1
    texts = [g.text for g in second.generations[0]]
    assert texts == ["Let me look that up.", "plain", "third"] == [g.text for g in first.generations[0]]
    served = second.generations[0][0]
    assert isinstance(served, ChatGeneration) and served.message.tool_calls == tool_reply().tool_calls


def test_hits_record_saved_tokens_in_the_ledger(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "ledger.sqlite3")
    lean = make_cache(tmp_path / "c.sqlite3", "exact", ledger=ledger)
    chat = ScriptedChat(replies=[[tool_reply()]], cache=lean)
    chat.invoke("Weather in Paris?", config={"metadata": {"tenant": "acme"}})
    chat.invoke("Weather in Paris?", config={"metadata": {"tenant": "acme"}})
    events = ledger.savings(tenant="acme")
    assert [e.cache_hit for e in events] == [False, True]
    hit = events[1]
    assert (hit.layer, hit.model, hit.input_tokens_before, hit.output_tokens_before) == ("cache", "scripted-1", 42, 17)
    ledger.close()


def test_model_name_is_read_from_llm_strings() -> None:
    chat = ScriptedChat(replies=[])
    assert _model_name(chat._get_llm_string()) == "scripted-1"
    assert _model_name("[('_type', 'fake-list'), ('responses', ['x']), ('stop', None)]") is None
    serialised = '{"id": ["x", "ChatOpenAI"], "kwargs": {"model_name": "gpt-4o-mini"}, "lc": 1}---[("stop", None)]'
    assert _model_name(serialised) == "gpt-4o-mini"
    assert _model_name('{"kwargs": {"model": "claude-x"}}---[]') == "claude-x"
    assert _model_name("[('model', 'llama3'), ('temperature', 0.1)]") == "llama3"


# -- end to end with set_llm_cache -----------------------------------------------------------------
@pytest.mark.usefixtures("global_cache")
def test_set_llm_cache_serves_second_call_sync(lean: LeanCache) -> None:
    set_llm_cache(lean)
    chat = GenericFakeChatModel(messages=iter([AIMessage("Paris is the capital of France.")]))
    assert chat.invoke("What is the capital of France?").content == "Paris is the capital of France."
    assert chat.invoke("What is the capital of France?").content == "Paris is the capital of France."  # spent iterator
    assert lean.stats.hits == 1 and lean.stats.writes == 1
    llm = FakeListLLM(responses=["Paris", "not called"])
    assert llm.invoke("Capital of France?") == "Paris"
    assert llm.invoke("Capital of France?") == "Paris"
    assert llm.i == 1


@pytest.mark.usefixtures("global_cache")
async def test_set_llm_cache_serves_second_call_async(lean: LeanCache) -> None:
    set_llm_cache(lean)
    chat = GenericFakeChatModel(messages=iter([AIMessage("Paris is the capital of France.")]))
    assert (await chat.ainvoke("What is the capital of France?")).content == "Paris is the capital of France."
    assert (await chat.ainvoke("What is the capital of France?")).content == "Paris is the capital of France."
    assert lean.stats.hits == 1 and lean.stats.writes == 1
    llm = FakeListLLM(responses=["Paris", "not called"])
    assert await llm.ainvoke("Capital of France?") == "Paris"
    assert await llm.ainvoke("Capital of France?") == "Paris"
    assert llm.i == 1


# -- validation and construction ------------------------------------------------------------------
def test_bad_input_raises_invalid_parameter(lean: LeanCache) -> None:
    with pytest.raises(InvalidParameterError, match="prompt"):
        lean.lookup(123, LLM)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="llm_string"):
        lean.lookup("hi", "")
    with pytest.raises(InvalidParameterError, match="return_val"):
        lean.update("hi", LLM, ["not a generation"])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="return_val"):
        lean.update("hi", LLM, [])
    with pytest.raises(InvalidParameterError, match="clear"):
        lean.clear(everything=True)
    with pytest.raises(InvalidParameterError, match="tenant"), LeanCache.tenant_scope(""):
        pass


async def test_bad_input_raises_invalid_parameter_async(lean: LeanCache) -> None:
    with pytest.raises(InvalidParameterError, match="prompt"):
        await lean.alookup(None, LLM)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="return_val"):
        await lean.aupdate("hi", LLM, "text")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [
    {"mode": "fuzzy"}, {"ttl_s": 0}, {"ttl_s": -1.0}, {"default_tenant": ""}, {"tenant_key": ""},
    {"cache": "sqlite"}, {"cache": ResponseCache(mode="exact"), "mode": "semantic"},
    {"cache": ResponseCache(mode="exact"), "ledger": object()},
])
def test_bad_options_raise_invalid_parameter(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError):
        LeanCache(**options)


def test_constructor_does_no_io(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "default.sqlite3"
    monkeypatch.setenv("LEAN_INFERENCE_CACHE", str(path))
    lean = LeanCache(mode="exact", ttl_s=10, default_tenant="default")
    assert not path.exists()
    lean.update("hi", LLM, [Generation(text="hello")])
    assert path.exists() and lean.lookup("hi", LLM) == [Generation(text="hello")]
    lean.close()


async def test_clear_by_tenant(lean: LeanCache) -> None:
    for tenant in ("acme", "globex"):
        with LeanCache.tenant_scope(tenant):
            await lean.aupdate("hello", LLM, [Generation(text=tenant)])
    await lean.aclear(tenant="acme")
    with LeanCache.tenant_scope("acme"):
        assert await lean.alookup("hello", LLM) is None
    with LeanCache.tenant_scope("globex"):
        assert await lean.alookup("hello", LLM) == [Generation(text="globex")]
    lean.clear()
    with LeanCache.tenant_scope("globex"):
        assert lean.lookup("hello", LLM) is None


def test_cost_callback_does_not_bill_cache_hits(tmp_path: Path) -> None:
    from langchain_core.globals import set_llm_cache
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from lean_chain import LeanCostCallback
    from lean_core import CostLedger
    from lean_core.cache import ResponseCache, SQLiteCacheStore

    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        cache = ResponseCache(SQLiteCacheStore(tmp_path / "hits.sqlite3"), mode="exact", ledger=ledger)
        set_llm_cache(LeanCache(cache=cache))
        try:
            model = FakeListChatModel(responses=["first", "second"])
            config = {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": "acme"}}
            assert model.invoke("same question", config=config).content == "first"  # type: ignore[arg-type]
            assert model.invoke("same question", config=config).content == "first"  # type: ignore[arg-type]
        finally:
            set_llm_cache(None)
        assert len(ledger.calls()) == 1
        assert [e.cache_hit for e in ledger.savings() if e.layer == "cache"] == [False, True]
