"""``max_error_rate`` / ``answer_equivalence`` pass through every adapter to the ResponseCache, are
validated there, and a LangChain chat model's exploration is settled by the cache's own update."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from lean_chain import LeanCache
from lean_core.cache import ResponseCache, SQLiteCacheStore, prompt_key
from lean_core.cache.answer_equivalence import default_answer_equivalence
from lean_core.errors import InvalidParameterError
from lean_core.pipeline.settings import CacheLayerSettings, PipelineSettings
from tests.unit.test_cache_error_budget import ENTRY, P1, AxisEmbedder, FixedPriorVerifier, same


def test_lean_cache_passes_the_budget_and_refuses_bad_or_doubled_options(tmp_path: Path) -> None:
    lean = LeanCache(max_error_rate=0.02, answer_equivalence=same)
    assert lean.cache.error_budget is not None and lean.cache.error_budget.max_error_rate == 0.02
    assert LeanCache().cache.error_budget is None
    with pytest.raises(InvalidParameterError, match="max_error_rate"):
        LeanCache(max_error_rate=0.7)
    given = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"))
    for option in ({"max_error_rate": 0.02}, {"answer_equivalence": same}):
        with pytest.raises(InvalidParameterError, match=next(iter(option))):
            LeanCache(cache=given, **option)  # type: ignore[arg-type]


def test_agent_middleware_passes_the_budget() -> None:
    pytest.importorskip("langchain.agents.middleware", reason="needs lean-inference[agents]")
    from lean_chain.middleware.cache import LeanCacheMiddleware

    middleware = LeanCacheMiddleware(max_error_rate=0.05)
    assert middleware.cache.error_budget is not None and middleware.cache.error_budget.max_error_rate == 0.05
    with pytest.raises(InvalidParameterError, match="max_error_rate"):
        LeanCacheMiddleware(max_error_rate=0)


def test_llamaindex_wrapper_passes_the_budget_or_reads_it_from_the_cache(tmp_path: Path) -> None:
    from llama_index.core.llms.mock import MockLLM

    from lean_index import LeanCachedLLM

    wrapped = LeanCachedLLM(MockLLM(), tenant="acme", max_error_rate=0.02, answer_equivalence=same)
    assert wrapped.cache.error_budget is not None and wrapped.cache.error_budget.max_error_rate == 0.02
    with pytest.raises(InvalidParameterError, match="max_error_rate"):
        LeanCachedLLM(MockLLM(), max_error_rate=1.5)
    given = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), max_error_rate=0.05)
    assert LeanCachedLLM(MockLLM(), cache=given).max_error_rate == 0.05
    with pytest.raises(InvalidParameterError, match="max_error_rate"):
        LeanCachedLLM(MockLLM(), cache=given, max_error_rate=0.02)


def test_pipeline_settings_carry_the_budget_without_changing_cache_identity() -> None:
    assert CacheLayerSettings(max_error_rate=0.02).max_error_rate == 0.02
    with pytest.raises(ValueError, match="max_error_rate"):
        CacheLayerSettings(max_error_rate=0.6)
    plain, budgeted = PipelineSettings(), PipelineSettings(cache={"max_error_rate": 0.02})
    assert plain.fingerprint() == budgeted.fingerprint()  # the budget changes what is served, not answers


def test_pipeline_builds_its_cache_with_the_budget(tmp_path: Path) -> None:
    from lean_core.pipeline import LeanPipeline
    from tests.unit.test_pipeline_core import ScriptedModel

    settings = PipelineSettings(cache={"max_error_rate": 0.02, "path": str(tmp_path / "c.sqlite3")})
    cache = LeanPipeline(ScriptedModel(), settings=settings).cache
    assert isinstance(cache, ResponseCache) and cache.error_budget is not None
    assert cache.error_budget.max_error_rate == 0.02


def test_a_langchain_chat_model_settles_its_exploration_through_the_cache(tmp_path: Path) -> None:
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), embedder=AxisEmbedder(),  # type: ignore[arg-type]
                          verifier=FixedPriorVerifier(0.6), max_error_rate=0.05,
                          answer_equivalence=default_answer_equivalence(), seed=1)
    lean = LeanCache(cache=cache, default_tenant="acme")
    model = GenericFakeChatModel(messages=iter([AIMessage("Settings > Security."), AIMessage("settings > security")]),
                                 cache=lean)
    model.invoke(ENTRY)
    model.invoke(P1)  # an exploration: the model answers, and the cache compares the two answers
    assert cache.stats.explorations == 1 and cache.stats.exploration_agreements == 1
    assert len(cache._pending) == 0  # settled: nothing left waiting
    with sqlite3.connect(tmp_path / "c.sqlite3") as conn:
        rows = conn.execute("SELECT tenant, prompt_key, correct FROM evidence").fetchall()
    assert rows == [("acme", prompt_key(ENTRY), 1)]  # on ENTRY's entry, in the chat model's namespace
