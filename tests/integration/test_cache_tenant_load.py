"""The load test of test_cache_reliability.py, with the tenant carried by context instead of by hand.

There, every operation names its namespace. Here the work runs as users run it: ``LeanCache``
(LangChain's cache API, which resolves the tenant itself) driven from ``ThreadPoolExecutor``
workers started with ``contextvars.copy_context()`` and from asyncio tasks created inside
``tenant_scope``, several tenants at once, plus workers whose pool drops the context (they must
be neither served nor stored). Every answer carries its tenant id; any cross-tenant serve fails.

Scale, measured on the 2-core CI machine (one process, so the GIL serialises the Python side):
102,004 operations took 46 s on SQLite and 133 s on PostgreSQL (most of it the server's HNSW
inserts, ~1.3 ms each); both run the full 102k, as the reliability load test does.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from langchain_core.outputs import Generation

from lean_chain import LeanCache
from lean_core.cache import (
    CacheStore,
    ResponseCache,
    SQLiteCacheStore,
    current_tenant,
    tenant_scope,
)
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401
from tests.integration.test_cache_reliability import MODELS, PROMPTS
from tests.unit.test_cache_core import HashEmbedder

pytestmark = pytest.mark.integration

TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
THREAD_WORKERS_PER_TENANT = 1
TASK_WORKERS_PER_TENANT = 1
UNSCOPED_WORKERS = 2
OPERATIONS = {"sqlite": 102_000, "postgres": 102_000}
"""Total cache operations (lookups and writes) per store: the reliability test's scale on SQLite."""
_WORKERS = len(TENANTS) * (THREAD_WORKERS_PER_TENANT + TASK_WORKERS_PER_TENANT) + UNSCOPED_WORKERS


class _Tally:
    """One worker's outcome: what it wrote, what it was served, and every violation seen."""

    def __init__(self) -> None:
        self.written = 0
        self.hits = 0
        self.violations: list[str] = []


def _plan(worker: int, i: int) -> tuple[str, str, bool]:
    """(llm_string, prompt, must_hit) of operation ``i``: a write of the worker's own prompt, two
    lookups of it, then two lookups of other workers' prompts: identical texts under other tenants."""
    block, step = divmod(i, 5)
    llm = MODELS[block % 2]
    if step in (0, 1, 2):
        return llm, f"question {block % PROMPTS} w{worker}-{block}", step != 0
    return llm, f"question {block % PROMPTS} w{(worker + step) % _WORKERS}-{block}", False


def _check(tally: _Tally, tenant: str | None, llm: str, prompt: str, must_hit: bool, got: Any) -> None:
    if got is None:
        if must_hit and tenant is not None:
            tally.violations.append(f"lost: {tenant} {prompt}")
        return
    tally.hits += 1
    owner, owner_llm, *_ = json.loads(got[0].text)
    if tenant is None:
        tally.violations.append(f"served without a tenant: got {owner}'s answer")
    elif owner != tenant:
        tally.violations.append(f"cross-tenant: {tenant} got {owner}'s answer")
    if owner_llm != llm:
        tally.violations.append(f"cross-model: {llm} got {owner_llm}")


def _answer(llm: str, worker: int, i: int) -> list[Generation]:
    return [Generation(text=json.dumps([current_tenant(), llm, worker, i]))]


def _run_sync(lean: LeanCache, worker: int, per_worker: int) -> _Tally:
    tally = _Tally()
    for i in range(per_worker):
        llm, prompt, must_hit = _plan(worker, i)
        if i % 5 == 0:
            lean.update(prompt, llm, _answer(llm, worker, i))
            tally.written += 1
        else:
            _check(tally, current_tenant(), llm, prompt, must_hit, lean.lookup(prompt, llm))
    return tally


async def _run_async(lean: LeanCache, worker: int, per_worker: int) -> _Tally:
    tally = _Tally()
    for i in range(per_worker):
        llm, prompt, must_hit = _plan(worker, i)
        if i % 5 == 0:
            await lean.aupdate(prompt, llm, _answer(llm, worker, i))
            tally.written += 1
        else:
            _check(tally, current_tenant(), llm, prompt, must_hit, await lean.alookup(prompt, llm))
    return tally


async def _drive(lean: LeanCache, per_worker: int) -> list[_Tally]:
    loop = asyncio.get_running_loop()
    worker = 0
    futures: list[Any] = []
    tasks: list[asyncio.Task[_Tally]] = []
    with ThreadPoolExecutor(max_workers=len(TENANTS) + UNSCOPED_WORKERS) as pool:
        for tenant in TENANTS:
            with tenant_scope(tenant):
                for _ in range(THREAD_WORKERS_PER_TENANT):  # the documented way: copy the context
                    futures.append(pool.submit(contextvars.copy_context().run, _run_sync, lean, worker, per_worker))
                    worker += 1
                for _ in range(TASK_WORKERS_PER_TENANT):  # tasks inherit the scope they start in
                    tasks.append(asyncio.create_task(_run_async(lean, worker, per_worker)))
                    worker += 1
        with tenant_scope("acme"):
            for _ in range(UNSCOPED_WORKERS):  # a plain submit drops the scope: must fail closed
                futures.append(pool.submit(_run_sync, lean, worker, per_worker))
                worker += 1
        tallies = await asyncio.gather(*tasks)
        done = await asyncio.gather(*(asyncio.wrap_future(f, loop=loop) for f in futures))
    return [*tallies, *done]


def _store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> CacheStore:
    if kind == "sqlite":
        return SQLiteCacheStore(tmp_path / "tenant_load.sqlite3", max_entries=None)
    from lean_core.cache import PostgresCacheStore

    return PostgresCacheStore(request.getfixturevalue("postgres_dsn"), table="tenant_load", max_entries=None,
                              pool_size=8)


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_context_carried_tenants_under_load_never_cross(kind: str, tmp_path: Path,
                                                        request: pytest.FixtureRequest) -> None:
    """``OPERATIONS[kind]`` operations from 14 workers (6 tenants x (1 pool thread + 1 asyncio task),
    2 unscoped pool threads) on one shared store."""
    per_worker = -(-OPERATIONS[kind] // _WORKERS)
    cache = ResponseCache(_store(kind, tmp_path, request), embedder=HashEmbedder(),  # type: ignore[arg-type]
                          candidates=4)
    lean = LeanCache(cache=cache)
    started = time.perf_counter()
    tallies = asyncio.run(_drive(lean, per_worker))
    elapsed = time.perf_counter() - started
    assert [v for t in tallies for v in t.violations][:10] == []
    total = _WORKERS * per_worker
    assert total >= OPERATIONS[kind]
    scoped, unscoped = tallies[:-UNSCOPED_WORKERS], tallies[-UNSCOPED_WORKERS:]
    assert all(t.hits > 0 for t in scoped)  # the lookups did find entries (the test can fail)
    assert all(t.hits == 0 for t in unscoped)
    stats = cache.stats
    lookups_per_worker = per_worker - -(-per_worker // 5)
    assert stats.no_tenant == UNSCOPED_WORKERS * lookups_per_worker
    assert stats.writes == sum(t.written for t in scoped)  # unscoped writes were skipped, nothing failed
    assert stats.lookup_errors == stats.store_errors == 0
    assert cache.store.count() == stats.writes
    cache.close()
    print(f"{kind}: {total:,} operations by {_WORKERS} workers in {elapsed:.1f} s")
