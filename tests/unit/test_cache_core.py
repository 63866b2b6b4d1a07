"""ResponseCache + SQLiteCacheStore logic with a hashing embedder (the real MiniLM path is in
tests/integration/test_cache_semantic.py)."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lean_core.cache import (
    CacheNamespace,
    ResponseCache,
    SQLiteCacheStore,
    normalize_prompt,
    pair_features,
    prompt_key,
    rebuild_sqlite_store,
)
from lean_core.errors import CacheCorruptError, InvalidParameterError
from lean_core.ledger import CostLedger


class HashEmbedder:
    """Deterministic unit vectors per normalised text: equal texts are equal vectors, others near-orthogonal."""

    def encode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.array(rows)


class Clock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("lean_core.cache.response_cache.time.time", c)
    return c


def make_cache(tmp_path: Path, **kw: object) -> ResponseCache:
    store = SQLiteCacheStore(tmp_path / "c.sqlite3", max_entries=kw.pop("max_entries", 1000))  # type: ignore[arg-type]
    return ResponseCache(store, embedder=HashEmbedder(), **kw)  # type: ignore[arg-type]


A = CacheNamespace(tenant="acme", llm="gpt-4o|temperature=0")
B = CacheNamespace(tenant="globex", llm="gpt-4o|temperature=0")
A_HOT = CacheNamespace(tenant="acme", llm="gpt-4o|temperature=0.7")


def test_exact_hit_after_normalisation_and_stats(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    assert not cache.lookup("What is  the refund window?", namespace=A).hit
    cache.update("What is the refund window?", "30 days", namespace=A, input_tokens=7, output_tokens=3)
    hit = cache.lookup("  What is the refund\twindow?\r\n", namespace=A)
    assert hit.kind == "exact" and hit.entry is not None and hit.entry.payload == "30 days"
    assert cache.stats.exact_hits == 1 and cache.stats.misses == 1 and cache.stats.writes == 1
    assert cache.stats.hit_rate == pytest.approx(0.5)


def test_namespaces_isolate_tenants_and_generation_parameters(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    cache.update("Summarise my account", "acme's summary", namespace=A)
    assert not cache.lookup("Summarise my account", namespace=B).hit
    assert not cache.lookup("Summarise my account", namespace=A_HOT).hit
    # Identical vectors in another namespace are never candidates: the search is namespace-first.
    cache.update("Summarise my account", "globex's summary", namespace=B)
    got = cache.lookup("Summarise my account", namespace=B)
    assert got.entry is not None and got.entry.payload == "globex's summary"
    candidates = cache.store.search(A_HOT, HashEmbedder().encode([normalize_prompt("Summarise my account")])[0],
                                    k=8, min_similarity=-1.0, now=2e9)
    assert candidates == []


def test_ttl_global_and_per_entry(tmp_path: Path, clock: Clock) -> None:
    cache = make_cache(tmp_path, ttl_s=60)
    cache.update("q1", "a1", namespace=A)
    cache.update("q2", "a2", namespace=A, ttl_s=600)
    clock.now += 61
    assert not cache.lookup("q1", namespace=A).hit
    assert cache.lookup("q2", namespace=A).hit
    clock.now += 600
    assert not cache.lookup("q2", namespace=A).hit
    assert cache.store.purge_expired(now=clock.now) == 2


def test_lru_eviction_keeps_recently_used(tmp_path: Path, clock: Clock) -> None:
    cache = make_cache(tmp_path, max_entries=3)
    for i in range(3):
        clock.now += 1
        cache.update(f"q{i}", f"a{i}", namespace=A)
    clock.now += 1
    assert cache.lookup("q0", namespace=A).hit  # q0 becomes most recent
    clock.now += 1
    cache.update("q3", "a3", namespace=A)
    assert cache.store.count() == 3
    assert not cache.lookup("q1", namespace=A).hit  # least recently used went
    assert all(cache.lookup(q, namespace=A).hit for q in ("q0", "q2", "q3"))


def test_invalidate_by_key_namespace_tenant_and_all(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    for ns in (A, A_HOT, B):
        cache.update("p1", "x", namespace=ns)
        cache.update("p2", "y", namespace=ns)
    assert cache.invalidate(namespace=A, prompt="p1") == 1
    assert not cache.lookup("p1", namespace=A).hit and cache.lookup("p2", namespace=A).hit
    assert cache.invalidate(namespace=A_HOT) == 2
    assert cache.invalidate(tenant="acme") == 1
    assert cache.store.count() == 2
    assert cache.invalidate() == 2
    with pytest.raises(InvalidParameterError, match="prompt_key"):
        cache.store.invalidate(prompt_key=prompt_key("p1"))


def test_async_parity(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)

    async def run() -> None:
        assert not (await cache.alookup("async q", namespace=A)).hit
        await cache.aupdate("async q", "async a", namespace=A)
        got = await cache.alookup("async q", namespace=A)
        assert got.kind == "exact" and got.entry is not None and got.entry.payload == "async a"
        assert not (await cache.alookup("async q", namespace=B)).hit
        assert await cache.ainvalidate(namespace=A) == 1

    asyncio.run(run())


def test_hits_and_misses_go_to_the_ledger(tmp_path: Path) -> None:
    with CostLedger(tmp_path / "ledger.sqlite3") as ledger:
        cache = make_cache(tmp_path, ledger=ledger)
        cache.lookup("q", namespace=A, model="gpt-4o")
        cache.update("q", "a", namespace=A, input_tokens=100, output_tokens=40)
        cache.lookup("q", namespace=A, model="gpt-4o")
        events = [e for e in ledger.savings() if e.layer == "cache"]
    assert [e.cache_hit for e in events] == [False, True]
    assert events[1].input_tokens_before == 100 and events[1].output_tokens_before == 40
    assert events[1].tenant == "acme"


@pytest.mark.parametrize("bad", [
    dict(mode="fuzzy"), dict(ttl_s=0), dict(ttl_s=-5), dict(ttl_s=True), dict(candidates=0), dict(candidates=1000),
])
def test_bad_options_name_the_parameter(tmp_path: Path, bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError, match=next(iter(bad))):
        ResponseCache(SQLiteCacheStore(tmp_path / "x.sqlite3"), **bad)  # type: ignore[arg-type]


def test_bad_inputs(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    with pytest.raises(InvalidParameterError, match="tenant"):
        CacheNamespace(tenant="", llm="m")
    with pytest.raises(InvalidParameterError, match="llm"):
        CacheNamespace(tenant="t", llm="")
    with pytest.raises(InvalidParameterError, match="prompt"):
        cache.lookup(b"bytes", namespace=A)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="payload"):
        cache.update("q", {"not": "a string"}, namespace=A)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="max_entries"):
        SQLiteCacheStore(tmp_path / "y.sqlite3", max_entries=0)


def test_corrupted_file_names_the_rebuild_command(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with SQLiteCacheStore(path) as store:
        assert store.integrity_check() == "ok"
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(CacheCorruptError, match="lean-inference cache rebuild") as info:
        SQLiteCacheStore(path).count()
    assert isinstance(info.value, ValueError)
    moved = rebuild_sqlite_store(path)
    assert moved is not None and moved.exists()
    with SQLiteCacheStore(path) as store:
        assert store.count() == 0 and store.integrity_check() == "ok"


def test_damaged_pages_are_reported_not_served(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    cache = make_cache(tmp_path)
    for i in range(300):
        cache.update(f"prompt number {i} " + "x" * 200, "y" * 500, namespace=A)
    cache.close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, 3 * page):  # scribble over many b-tree pages
        data[offset: offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    store = SQLiteCacheStore(path)
    try:
        verdict = store.integrity_check()
    except CacheCorruptError as exc:
        verdict = str(exc)
    assert verdict != "ok"
    store.close()


def test_features_veto_numbers_entities_negation_and_swapped_roles() -> None:
    assert pair_features("Are cats afraid of tigers?", "Are tigers afraid of cats?", 0.994).veto == "roles swapped"
    assert pair_features("What is the capital of France?", "What is the capital of Germany?", 0.9).veto == \
        "named entities differ"
    assert pair_features("Is 7 a prime?", "Is 9 a prime?", 0.98).veto == "numbers differ"
    assert pair_features("Is it safe to fly?", "Is it not safe to fly?", 0.97).veto == "negation differs"
    assert pair_features("How do I learn Python quickly?", "Fastest way to learn Python?", 0.9).veto is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_normalisation_is_idempotent_and_keys_are_stable(text: str) -> None:
    once = normalize_prompt(text)
    assert normalize_prompt(once) == once
    assert prompt_key(text) == prompt_key(once)


def test_large_namespaces_use_the_hnsw_graph_and_stay_isolated(tmp_path: Path) -> None:
    pytest.importorskip("faiss")
    store = SQLiteCacheStore(tmp_path / "ann.sqlite3", max_entries=None, ann_min_entries=50)
    cache = ResponseCache(store, embedder=HashEmbedder())
    for i in range(120):
        cache.update(f"acme question {i}", f"acme {i}", namespace=A)
    cache.update("globex question 7", "globex 7", namespace=B)
    vector = HashEmbedder().encode([normalize_prompt("acme question 7")])[0]
    found = store.search(A, vector, k=3, min_similarity=0.5, now=2e9)
    assert [c.entry.payload for c in found] == ["acme 7"]
    index = store._indexes[(A.tenant, A.llm_hash)]
    assert index.ann is not None and index.ann_rows == 120
    cache.update("acme question 500", "acme 500", namespace=A)  # appended rows join the graph
    found = store.search(A, HashEmbedder().encode(["acme question 500"])[0], k=1, min_similarity=0.5, now=2e9)
    assert found[0].entry.payload == "acme 500" and index.ann_rows == 121
    assert store.search(B, vector, k=3, min_similarity=-1.0, now=2e9)[0].entry.payload == "globex 7"


def test_the_vector_index_grows_write_by_write_and_finds_every_entry(tmp_path: Path) -> None:
    """Rows appended between searches (by this store and by another connection to the file) stay
    findable as the index's buffer grows; a rebuild after many deletions drops the deleted rows."""
    path = tmp_path / "grow.sqlite3"
    store, other = SQLiteCacheStore(path, max_entries=None), SQLiteCacheStore(path, max_entries=None)
    mine, theirs = ResponseCache(store, embedder=HashEmbedder()), ResponseCache(other, embedder=HashEmbedder())

    def nearest(i: int) -> list[str]:
        vector = HashEmbedder().encode([normalize_prompt(f"question {i}")])[0]
        return [c.entry.payload for c in store.search(A, vector, k=1, min_similarity=0.99, now=2e9)]

    for i in range(150):
        (mine if i % 2 else theirs).update(f"question {i}", f"answer {i}", namespace=A)
        assert [nearest(j) for j in (0, i // 2, i)] == [["answer 0"], [f"answer {i // 2}"], [f"answer {i}"]]
    index = store._indexes[(A.tenant, A.llm_hash)]
    assert len(index.ids) == 150 and index.matrix.shape == (150, 384)
    for i in range(0, 150, 5):  # 30 deletions: past the stale share, so the next search rebuilds
        other.invalidate(namespace=A, prompt_key=prompt_key(f"question {i}"))
    assert [nearest(i) for i in (0, 5, 1, 149)] == [[], [], ["answer 1"], ["answer 149"]]
    assert len(store._indexes[(A.tenant, A.llm_hash)].ids) == 120
    mine.close()
    theirs.close()


def test_a_miss_then_update_embeds_the_prompt_once(tmp_path: Path) -> None:
    class CountingEmbedder(HashEmbedder):
        calls = 0

        def encode(self, texts: list[str]) -> np.ndarray:
            CountingEmbedder.calls += len(texts)
            return super().encode(texts)

    cache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), embedder=CountingEmbedder())
    assert not cache.lookup("a new question", namespace=A).hit
    cache.update("a new question", "its answer", namespace=A)
    asyncio.run(cache.alookup("another  question", namespace=A))
    asyncio.run(cache.aupdate("another question", "x", namespace=A))
    assert CountingEmbedder.calls == 2


def test_connections_opening_a_fresh_file_together_all_succeed(tmp_path: Path) -> None:
    """SQLite refuses a concurrent switch to WAL without waiting; the store must wait instead."""
    import threading

    errors: list[str] = []
    for trial in range(120):
        path = tmp_path / f"fresh-{trial}.sqlite3"
        start = threading.Barrier(8)

        def open_and_count(path: Path = path, start: threading.Barrier = start) -> None:
            store = SQLiteCacheStore(path, max_entries=None)
            start.wait()  # the store connects lazily: every thread opens the new file at once
            try:
                store.count()
            except Exception as exc:  # recorded: an exception in a thread would not fail the test
                errors.append(repr(exc))
            finally:
                store.close()

        threads = [threading.Thread(target=open_and_count) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []


def test_stats_print_as_one_line_with_rejection_reasons() -> None:
    from lean_core.cache.types import CacheStats

    stats = CacheStats(lookups=5, exact_hits=1, semantic_hits=2, rejected_candidates=3, misses=2, writes=2,
                       rejection_reasons={"numbers differ": 2, "roles swapped": 1})
    assert str(stats) == ("lookups 5, exact hits 1, semantic hits 2, rejected candidates 3 "
                          "(numbers differ: 2, roles swapped: 1), misses 2, writes 2")
    assert str(CacheStats()) == ("lookups 0, exact hits 0, semantic hits 0, rejected candidates 0, "
                                 "misses 0, writes 0")


def test_ttl_and_token_counts_are_validated(tmp_path: Path) -> None:
    import math

    with pytest.raises(InvalidParameterError, match="ttl_s"):
        ResponseCache(SQLiteCacheStore(tmp_path / "t.sqlite3"), mode="exact", ttl_s=math.inf)
    cache = ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), mode="exact")
    namespace = CacheNamespace(tenant="acme", llm="m")
    for bad in (-7, True, 2.5):
        with pytest.raises(InvalidParameterError, match="input_tokens"):
            cache.update("q", "a", namespace=namespace, input_tokens=bad)
