"""The error budget's evidence in the real stores (SQLite file, PostgreSQL 18 server): it persists,
stays per namespace, goes with its entry, survives old files, is rebuilt when damaged without
anything being served from it, and concurrent appends from threads and processes lose nothing."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lean_core.cache import (
    CacheEntry,
    CacheNamespace,
    CacheStore,
    ResponseCache,
    SQLiteCacheStore,
    prompt_key,
)
from lean_core.cache.error_budget import EvidenceDamagedError, Observation
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401
from tests.support.concurrent_workers import run_workers
from tests.unit.test_cache_error_budget import ENTRY, P1, AxisEmbedder, FixedPriorVerifier, same

pytestmark = pytest.mark.integration

A = CacheNamespace(tenant="acme", llm="m|t=0")
B = CacheNamespace(tenant="globex", llm="m|t=0")
DIM = 64
KEY = prompt_key(ENTRY)
THREADS, PROCESSES, APPENDS = 6, 3, 150


def entry(namespace: CacheNamespace, prompt: str = ENTRY, *, payload: str = "A", now: float = 1000.0,
          expires_at: float | None = None) -> CacheEntry:
    return CacheEntry(tenant=namespace.tenant, llm_hash=namespace.llm_hash, prompt_key=prompt_key(prompt),
                      prompt=prompt, payload=payload, created_at=now, expires_at=expires_at)


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def open_store(spec: tuple[str, str], **kw: Any) -> CacheStore:
    kind, where = spec
    if kind == "sqlite":
        return SQLiteCacheStore(where, **kw)
    from lean_core.cache import PostgresCacheStore

    dsn, table = where.rsplit("#", 1)
    return PostgresCacheStore(dsn, table=table, dimensions=DIM, **kw)


@pytest.fixture(params=["sqlite", "postgres"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "c.sqlite3")
    dsn = request.getfixturevalue("postgres_dsn")
    return "postgres", f"{dsn}#t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(spec: tuple[str, str]) -> Iterator[CacheStore]:
    s = open_store(spec, max_entries=3)
    yield s
    s.close()


def raw(spec: tuple[str, str], statement: str) -> None:
    """Run SQL on the store's database behind its back (damage, an old schema)."""
    kind, where = spec
    if kind == "sqlite":
        lite = sqlite3.connect(where)
        lite.executescript(statement)
        lite.close()
        return
    import psycopg

    with psycopg.connect(where.rsplit("#", 1)[0], autocommit=True) as conn:
        conn.execute(statement.encode())


def ev(spec: tuple[str, str]) -> str:
    return "evidence" if spec[0] == "sqlite" else spec[1].rsplit("#", 1)[1] + "_ev"


def test_evidence_persists_per_namespace_and_is_read_back_exactly(spec: tuple[str, str], store: CacheStore) -> None:
    for namespace in (A, B):
        store.put(entry(namespace), vector(1))
    observations = [Observation(0.91, True, None), Observation(0.87, False, "prior"), Observation(0.95, True, "evidence")]
    for o in observations:
        assert store.record_evidence(A, KEY, o, now=1000.0)
    store.close()
    reopened = open_store(spec)
    assert reopened.evidence(A, KEY) == tuple(observations)
    assert reopened.evidence(B, KEY) == ()  # same prompt, another tenant: nothing shared
    estimate = reopened.audited(A, None, confidence=0.9)
    assert (estimate.audits, estimate.wrong) == (2, 1)
    assert reopened.audited(A, "evidence", confidence=0.9).audits == 1
    assert reopened.audited(B, None, confidence=0.9).audits == 0
    assert not reopened.record_evidence(A, prompt_key("never stored"), observations[0], now=1000.0)
    reopened.close()


def test_evidence_goes_with_its_entry(store: CacheStore) -> None:
    def fill(namespace: CacheNamespace, prompt: str) -> None:
        assert store.record_evidence(namespace, prompt_key(prompt), Observation(0.9, True, "evidence"), now=1.0)

    store.put(entry(A), vector(1))
    fill(A, ENTRY)
    store.put(entry(A, payload="another answer"), vector(1))  # replaced: what was learnt no longer holds
    assert store.evidence(A, KEY) == ()
    fill(A, ENTRY)
    assert store.invalidate(namespace=A, prompt_key=KEY) == 1
    assert store.evidence(A, KEY) == ()
    store.put(entry(A, expires_at=1500.0), vector(1))
    fill(A, ENTRY)
    assert store.purge_expired(now=2000.0) == 1 and store.evidence(A, KEY) == ()
    store.put(entry(A), vector(1))
    fill(A, ENTRY)
    for i in range(3):  # max_entries=3: the least recently used (ENTRY) is evicted
        store.put(entry(A, f"other question {i}", now=2000.0 + i), vector(10 + i))
    assert store.get(A, KEY, now=3000.0) is None and store.evidence(A, KEY) == ()
    assert store.audited(A, None, confidence=0.9).audits == 0


def test_damaged_evidence_rows_are_detected_rebuilt_and_serve_nothing(spec: tuple[str, str],
                                                                      store: CacheStore) -> None:
    cache = ResponseCache(store, embedder=AxisEmbedder(), verifier=FixedPriorVerifier(0.6),  # type: ignore[arg-type]
                          max_error_rate=0.05, answer_equivalence=same, seed=3)
    cache.update(ENTRY, "A", namespace=A)
    assert cache.lookup(P1, namespace=A).exploration
    cache.update(P1, "A", namespace=A)
    for _ in range(150):  # a certified namespace: P1-like queries would now be served
        store.record_evidence(A, KEY, Observation(0.99, True, "evidence"), now=1.0)
    assert any(cache.lookup("How could I reset my password?", namespace=A).hit for _ in range(10))
    raw(spec, f"UPDATE {ev(spec)} SET similarity = 0.2 WHERE id = (SELECT min(id) FROM {ev(spec)})")
    got = cache.lookup("How could I reset my password?", namespace=A)
    assert not got.hit and "evidence rebuilt" in got.rejection_reasons
    assert cache.stats.evidence_rebuilds == 1
    assert store.evidence(A, KEY) == () and store.audited(A, None, confidence=0.9).audits == 0
    # Rebuilt empty: the prior (0.6, below 1 - δ) decides again, so nothing is served.
    assert not any(cache.lookup("How could I reset my password?", namespace=A).hit for _ in range(10))
    assert store.record_evidence(A, KEY, Observation(0.9, True, None), now=1.0)  # and it learns again


def test_an_evidence_table_of_the_wrong_shape_is_rebuilt(spec: tuple[str, str], store: CacheStore) -> None:
    store.put(entry(A), vector(1))
    store.record_evidence(A, KEY, Observation(0.9, True, None), now=1.0)
    raw(spec, f"ALTER TABLE {ev(spec)} DROP COLUMN checksum")
    with pytest.raises(EvidenceDamagedError, match="rebuilt empty"):
        store.evidence(A, KEY)
    assert store.evidence(A, KEY) == ()
    assert store.record_evidence(A, KEY, Observation(0.9, True, None), now=1.0)
    assert len(store.evidence(A, KEY)) == 1


def test_a_store_of_an_earlier_version_opens_and_gains_the_evidence_table(spec: tuple[str, str]) -> None:
    old = open_store(spec)
    old.put(entry(A), vector(1))
    old.close()
    if spec[0] == "sqlite":
        raw(spec, "DROP TRIGGER entries_evidence_ad; DROP TABLE evidence;")
    else:
        raw(spec, f"DROP TABLE {ev(spec)}")
    new = open_store(spec)
    assert new.get(A, KEY, now=2000.0) is not None
    assert new.record_evidence(A, KEY, Observation(0.9, True, None), now=1.0)
    assert new.invalidate(namespace=A, prompt_key=KEY) == 1
    assert new.evidence(A, KEY) == ()
    new.close()


def _append(spec: tuple[str, str], *, worker: int) -> dict[str, int]:
    """One worker's appends to the same entry's evidence."""
    store = open_store(spec)
    recorded = sum(store.record_evidence(A, KEY, Observation(0.5 + worker / 100, True, "evidence"), now=1.0)
                   for _ in range(APPENDS))
    store.close()
    return {"recorded": recorded}


def test_concurrent_appends_from_threads_and_processes_lose_nothing(spec: tuple[str, str], tmp_path: Path) -> None:
    first = open_store(spec)
    first.put(entry(A), vector(1))
    first.close()
    results = run_workers(_append, (spec,), processes=PROCESSES, threads=THREADS, out_dir=tmp_path,
                          join_timeout_s=300)
    assert [r["recorded"] for r in results] == [APPENDS] * (PROCESSES + THREADS)
    check = open_store(spec)
    total = APPENDS * (PROCESSES + THREADS)
    assert check.audited(A, "evidence", confidence=0.9).audits == total
    seen = check.evidence(A, KEY)  # the newest MAX_OBSERVATIONS (512) are read per entry
    assert len(seen) == min(total, 512)
    check.close()
