"""What exploration costs is accounted (issue 25, item 4): every cache miss carries its reason from
the lookup to the ledger (``SavingsEvent.miss_reason``), and ``CacheStats`` counts hits,
explorations, vetoes and the estimated error rate per namespace, the same in sync and async code.

The cache runs on a real SQLite store with controlled similarities (the fixtures of
test_cache_error_budget); the adapters are the real LangChain and LlamaIndex classes around fake
chat models. Migration of the ledger column on both stores: tests/integration/test_ledger_miss_reasons.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from lean_chain import LeanCache
from lean_core.cache import CacheLookup, CacheNamespace, ResponseCache, SQLiteCacheStore
from lean_core.cache.answer_equivalence import default_answer_equivalence
from lean_core.cache.error_budget import EvidenceDamagedError, wilson_bounds
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.ledger_records import CACHE_MISS_REASONS, SavingsEvent
from lean_core.report import render_table
from tests.unit.test_cache_error_budget import (
    ENTRY,
    FRANCE,
    GERMANY,
    P1,
    P2,
    P3,
    A,
    AxisEmbedder,
    B,
    FixedPriorVerifier,
    certify_evidence_basis,
    make,
    same,
)


def _cache_events(ledger: CostLedger) -> list[tuple[bool | None, str | None]]:
    return [(e.cache_hit, e.miss_reason) for e in ledger.savings() if e.layer == "cache"]


# -- the record -----------------------------------------------------------------------------------
def test_a_miss_reason_belongs_to_a_cache_miss_only() -> None:
    event = SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False, miss_reason="exploration")
    assert event.miss_reason == "exploration"
    assert SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False).miss_reason is None  # older rows
    for bad in ({"cache_hit": True, "miss_reason": "exploration"}, {"cache_hit": False, "miss_reason": "nope"},
                {"layer": "output", "miss_reason": "vetoed"}):
        with pytest.raises(InvalidParameterError, match="miss_reason"):
            SavingsEvent(**{"layer": "cache", "model": "gpt-4o", **bad})


def test_every_reason_round_trips_through_the_ledger(tmp_path: Path) -> None:
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        for reason in CACHE_MISS_REASONS:
            ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False, miss_reason=reason))
        ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=True))
        assert [e.miss_reason for e in ledger.savings()] == [*CACHE_MISS_REASONS, None]
        layer = ledger.summary().by_layer[0]
        assert (layer.cache_hits, layer.cache_misses, layer.cache_explorations) == (1, len(CACHE_MISS_REASONS), 1)
        assert "1/10 (1 explored)" in render_table(ledger.summary())
        ledger.prune(max_records=0)  # the roll-ups keep the count
        assert ledger.savings() == [] and ledger.summary().by_layer[0].cache_explorations == 1


# -- the cache's reasons and per-namespace stats, sync and async ------------------------------------
SCENARIO: list[tuple[str, str, CacheNamespace | None, str | None]] = [
    ("update", ENTRY, A, "A"),
    ("lookup", P1, A, None),        # uncertain but promising: explored
    ("update", P1, A, "A"),         # the model agrees: evidence for ENTRY at 0.90
    ("lookup", GERMANY, A, None),   # nothing near enough
    ("update", FRANCE, A, "Paris"),
    ("lookup", GERMANY, A, None),   # near FRANCE, but the entities differ: a hard veto
    ("lookup", P2, A, None),        # evidence would serve, not yet certified: an audit
    ("update", P2, A, "B"),         # the model disagrees: a wrong audit
    ("lookup", P3, A, None),        # below the wrong similarity: a look-alike
    ("lookup", P1, A, None),        # stored for exact repeats
    ("lookup", ENTRY, None, None),  # no tenant
]
REASONS = [(False, "exploration"), (False, "no_entry"), (False, "vetoed"), (False, "exploration"),
           (False, "look_alike"), (True, None), (False, "no_tenant")]


def _run_sync(cache: ResponseCache) -> list[CacheLookup]:
    found = []
    for op, prompt, namespace, payload in SCENARIO:
        if op == "lookup":
            found.append(cache.lookup(prompt, namespace=namespace))
        else:
            assert payload is not None
            cache.update(prompt, payload, namespace=namespace)
    return found


async def _run_async(cache: ResponseCache) -> list[CacheLookup]:
    found = []
    for op, prompt, namespace, payload in SCENARIO:
        if op == "lookup":
            found.append(await cache.alookup(prompt, namespace=namespace))
        else:
            assert payload is not None
            await cache.aupdate(prompt, payload, namespace=namespace)
    return found


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_each_miss_reason_reaches_the_ledger_and_the_namespace_stats(tmp_path: Path, mode: str) -> None:
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        cache = make(tmp_path, ledger=ledger)
        found = _run_sync(cache) if mode == "sync" else asyncio.run(_run_async(cache))
        assert [(r.hit, r.miss_reason) for r in found] == REASONS
        assert _cache_events(ledger) == REASONS
        assert [r.vetoes for r in found] == [0, 0, 1, 0, 0, 0, 0]

    stats = cache.stats
    assert stats.explorations == 2 and stats.audits == 1 and stats.vetoes == 1 and stats.no_tenant == 1
    assert stats.miss_reasons == {"exploration": 2, "no_entry": 1, "vetoed": 1, "look_alike": 1, "no_tenant": 1}
    assert stats.namespace(B) is None and len(stats.by_namespace) == 1  # a lookup without a tenant has none
    a = stats.namespace(A)
    assert a is not None and (a.tenant, a.llm) == (A.tenant, A.llm)
    assert (a.lookups, a.hits, a.misses, a.explorations, a.audits, a.vetoes) == (6, 1, 5, 2, 1, 1)
    assert (a.exploration_agreements, a.exploration_disagreements) == (1, 1)
    assert a.miss_reasons == {"exploration": 2, "no_entry": 1, "vetoed": 1, "look_alike": 1}
    # The wrong audit moved the estimate at once, to what the store now says.
    stored = cache.error_estimate(A)
    assert a.error_estimate == stored and (stored.audits, stored.wrong) == (1, 1)
    assert a.estimated_error_rate == pytest.approx(wilson_bounds(1, 1, 0.9)[1])


def test_sync_and_async_count_the_same(tmp_path: Path) -> None:
    sync_cache = make(tmp_path / "sync")
    _run_sync(sync_cache)
    async_cache = make(tmp_path / "async")
    asyncio.run(_run_async(async_cache))
    assert asdict(sync_cache.stats) == asdict(async_cache.stats)


def test_a_certified_namespace_reports_its_low_error_rate(tmp_path: Path) -> None:
    cache = make(tmp_path)
    cache.update(ENTRY, "A", namespace=A)
    cache.lookup(P1, namespace=A)
    cache.update(P1, "A", namespace=A)
    certify_evidence_basis(cache, A, n=150)
    results = [cache.lookup(P2, namespace=A) for _ in range(20)]
    a = cache.stats.namespace(A)
    assert a is not None and a.semantic_hits == sum(r.kind == "semantic" for r in results) > 0
    rate = a.estimated_error_rate
    assert rate is not None and rate <= 0.05  # what lets the budget serve at δ = 0.05
    assert a.audited["evidence"].audits >= 150


def test_without_a_budget_the_threshold_and_the_vetoes_are_the_reasons(tmp_path: Path) -> None:
    cache = make(tmp_path, prior=0.5, delta=None)
    cache.update(ENTRY, "A", namespace=A)
    cache.update(FRANCE, "Paris", namespace=A)
    assert cache.lookup(P1, namespace=A).miss_reason == "below_threshold"
    vetoed = cache.lookup(GERMANY, namespace=A)
    assert vetoed.miss_reason == "vetoed" and vetoed.vetoes == 1
    a = cache.stats.namespace(A)
    assert a is not None and a.error_estimate is None and a.estimated_error_rate is None
    exact = make(tmp_path / "exact", delta=None)
    exact.mode = "exact"
    assert exact.lookup(P1, namespace=A).miss_reason == "no_entry"


def test_failures_are_reasons_too(tmp_path: Path) -> None:
    class BrokenEmbedder:
        def encode(self, texts: list[str]) -> Any:
            raise RuntimeError("embedder down")

    broken = ResponseCache(SQLiteCacheStore(tmp_path / "b.sqlite3"), embedder=BrokenEmbedder(),  # type: ignore[arg-type]
                           verifier=FixedPriorVerifier(0.6))
    assert broken.lookup(P1, namespace=A).miss_reason == "lookup_error"

    class DamagedEvidence(SQLiteCacheStore):
        def evidence(self, namespace: CacheNamespace, prompt_key: str) -> Any:
            raise EvidenceDamagedError("evidence table damaged; rebuilt")

    cache = ResponseCache(DamagedEvidence(tmp_path / "d.sqlite3"), embedder=AxisEmbedder(),  # type: ignore[arg-type]
                          verifier=FixedPriorVerifier(0.6), max_error_rate=0.05, answer_equivalence=same)
    cache.update(ENTRY, "A", namespace=A)
    assert cache.lookup(P1, namespace=A).miss_reason == "evidence_rebuilt"
    assert cache.stats.miss_reasons == {"evidence_rebuilt": 1}


def test_the_namespace_breakdown_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lean_core.cache.types.CacheStats.MAX_NAMESPACES", 2)
    cache = make(tmp_path, delta=None)
    tenants = [CacheNamespace(tenant=f"t{i}", llm="gpt-4o|t=0") for i in range(3)]
    for namespace in (*tenants, tenants[1]):
        cache.lookup(ENTRY, namespace=namespace)
    assert [s.tenant for s in cache.stats.by_namespace.values()] == ["t2", "t1"]  # least recent let go
    assert cache.stats.lookups == 4


# -- through the adapters --------------------------------------------------------------------------
def _budget_cache(tmp_path: Path, ledger: CostLedger | None, equivalence: Any = None) -> ResponseCache:
    # The adapters store serialised responses: the default equivalence compares their answers' text.
    return ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), embedder=AxisEmbedder(),  # type: ignore[arg-type]
                         verifier=FixedPriorVerifier(0.6), max_error_rate=0.05,
                         answer_equivalence=equivalence or default_answer_equivalence(), seed=1, ledger=ledger)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_langchain_exploration_is_a_ledger_miss_with_its_reason(tmp_path: Path, mode: str) -> None:
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        cache = _budget_cache(tmp_path, ledger)
        model = GenericFakeChatModel(messages=iter([AIMessage("Settings > Security."), AIMessage("Settings > Security.")]),
                                     cache=LeanCache(cache=cache, default_tenant="acme"))
        invoke: Callable[[str], Any] = model.invoke
        if mode == "async":
            def invoke(prompt: str) -> Any:
                awaited: Awaitable[Any] = model.ainvoke(prompt)
                return asyncio.run(awaited)  # type: ignore[arg-type]
        invoke(ENTRY)
        invoke(P1)  # explored: the model answers, the cache compares
        assert _cache_events(ledger) == [(False, "no_entry"), (False, "exploration")]
        assert ledger.summary().by_layer[0].cache_explorations == 1
    (counts,) = cache.stats.by_namespace.values()
    assert counts.tenant == "acme" and counts.explorations == 1 and counts.exploration_agreements == 1


def test_a_llamaindex_exploration_is_a_ledger_miss_with_its_reason(tmp_path: Path) -> None:
    from llama_index.core.llms.mock import MockLLM

    from lean_index import LeanCachedLLM

    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        cache = _budget_cache(tmp_path, ledger, same)  # MockLLM echoes the prompt: the answers differ
        llm = LeanCachedLLM(MockLLM(), tenant="acme", cache=cache)
        llm.complete(ENTRY)
        llm.complete(P1)
        assert _cache_events(ledger) == [(False, "no_entry"), (False, "exploration")]
    (counts,) = cache.stats.by_namespace.values()
    assert counts.explorations == 1 and counts.exploration_disagreements == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_pipeline_records_its_miss_reasons(tmp_path: Path, mode: str) -> None:
    from lean_core.pipeline import LeanPipeline, PipelineRequest, PipelineSettings
    from tests.unit.test_pipeline_core import ScriptedModel

    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        pipeline = LeanPipeline(ScriptedModel(), settings=PipelineSettings(), ledger=ledger,  # type: ignore[arg-type]
                                cache=_budget_cache(tmp_path, ledger=None))
        requests = [PipelineRequest(question=q, tenant=t) for q, t in ((ENTRY, "acme"), (P1, "acme"), (P1, None))]
        if mode == "sync":
            pipeline.batch(requests)
        else:
            asyncio.run(pipeline.abatch(requests))
        assert _cache_events(ledger) == [(False, "no_entry"), (False, "exploration"), (False, "no_tenant")]
        assert all(e.call_id is not None for e in ledger.savings() if e.layer == "cache")
    assert isinstance(pipeline.cache, ResponseCache)
    stats = pipeline.cache.stats
    assert stats.explorations == 1 and stats.exploration_agreements == 1
