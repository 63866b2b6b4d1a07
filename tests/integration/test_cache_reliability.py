"""Reliability of the embedded cache under load: threads and processes, many tenants, killed writers.

The load test drives ResponseCache with a hashing embedder (embedding 100k prompts with MiniLM would
take minutes and says nothing about isolation); semantic behaviour with the real MiniLM is tested in
test_cache_semantic.py. The same load runs against PostgreSQL in test_cache_postgres.py's style here too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lean_core.cache import CacheNamespace, ResponseCache, SQLiteCacheStore, prompt_key
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401
from tests.support.concurrent_workers import run_workers
from tests.unit.test_cache_core import HashEmbedder

pytestmark = pytest.mark.integration

TENANTS = 60
MODELS = ("model-a|t=0", "model-b|t=0")
PROMPTS = 40  # the same prompt texts in every namespace: any leak would be served


def _namespace(worker: int, block: int) -> CacheNamespace:
    return CacheNamespace(tenant=f"tenant-{(worker * 7 + block) % TENANTS}", llm=MODELS[block % 2])


def _load(store_spec: tuple[str, str], operations: int, *, worker: int) -> dict[str, Any]:
    """Puts and exact + semantic lookups; records every acknowledged put and every violation."""
    kind, where = store_spec
    if kind == "sqlite":
        store = SQLiteCacheStore(where, max_entries=None)
    else:
        from lean_core.cache import PostgresCacheStore

        store = PostgresCacheStore(where, max_entries=None)
    cache = ResponseCache(store, embedder=HashEmbedder(), candidates=4)
    written: list[list[str]] = []
    violations: list[str] = []
    hits = 0
    for i in range(operations):
        block, step = divmod(i, 5)
        ns = _namespace(worker, block)
        own = f"question {block % PROMPTS} w{worker}-{block}"
        if step == 0:
            payload = json.dumps([ns.tenant, ns.llm, worker, i])
            cache.update(own, payload, namespace=ns)
            written.append([ns.tenant, ns.llm, own, payload])
            continue
        if step in (1, 2):
            target = own  # must hit (written just before, in this namespace)
        else:  # another worker's prompt, written in another namespace: identical text and vector
            target = f"question {block % PROMPTS} w{(worker + step) % 6}-{block}"
        got = cache.lookup(target, namespace=ns)
        if step in (1, 2) and got.entry is None:
            violations.append(f"lost: {ns.tenant} {own}")
        if got.entry is not None:
            hits += 1
            tenant, llm, *_ = json.loads(got.entry.payload)
            if tenant != ns.tenant:
                violations.append(f"cross-tenant: {ns.tenant} got {tenant}")
            if llm != ns.llm:
                violations.append(f"cross-model: {ns.llm} got {llm}")
    cache.close()
    return {"written": written, "violations": violations, "hits": hits, "lookups": cache.stats.lookups}


def _run_load(store_spec: tuple[str, str], tmp_path: Path, *, processes: int, threads: int, operations: int) -> None:
    started = time.perf_counter()
    results = run_workers(_load, (store_spec, operations), processes=processes, threads=threads,
                          out_dir=tmp_path, join_timeout_s=600)
    elapsed = time.perf_counter() - started
    total_ops = (processes + threads) * operations
    assert total_ops >= 100_000
    assert [v for r in results for v in r["violations"]] == []
    assert sum(r["hits"] for r in results) > 0  # the lookups did find entries (the test can fail)
    # No lost entries: every acknowledged write is there, in its own namespace only.
    kind, where = store_spec
    if kind == "sqlite":
        store = SQLiteCacheStore(where, max_entries=None)
    else:
        from lean_core.cache import PostgresCacheStore

        store = PostgresCacheStore(where, max_entries=None)
    written = [w for r in results for w in r["written"]]
    assert store.count() == len(written)
    for tenant, llm, prompt, payload in written[:: max(len(written) // 2000, 1)]:
        entry = store.get(CacheNamespace(tenant=tenant, llm=llm), prompt_key(prompt), now=time.time())
        assert entry is not None and entry.payload == payload
    store.close()
    print(f"{kind}: {total_ops:,} operations by {processes} processes + {threads} threads in {elapsed:.1f} s")
    assert elapsed < 600


def test_sqlite_load_threads_and_processes_no_leaks_no_losses(tmp_path: Path) -> None:
    _run_load(("sqlite", str(tmp_path / "shared.sqlite3")), tmp_path, processes=3, threads=3, operations=17_000)


def test_postgres_load_threads_and_processes_no_leaks_no_losses(tmp_path: Path, postgres_dsn: str) -> None:  # noqa: F811
    _run_load(("postgres", postgres_dsn), tmp_path, processes=3, threads=3, operations=17_000)


_WRITER = """
import sys, json
from lean_core.cache import CacheNamespace, ResponseCache, SQLiteCacheStore
from tests.unit.test_cache_core import HashEmbedder
cache = ResponseCache(SQLiteCacheStore(sys.argv[1], max_entries=None), embedder=HashEmbedder())
ns = CacheNamespace(tenant="t", llm="m")
i = 0
while True:
    cache.update(f"prompt {i}", json.dumps(i) + "x" * 2000, namespace=ns)
    i += 1
"""


def test_process_killed_during_writes_leaves_a_store_that_reopens(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite3"
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], cwd=repo,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if path.exists():
                try:
                    with SQLiteCacheStore(path, max_entries=None) as probe:
                        if probe.count() >= 300:
                            break
                except Exception:
                    pass
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-write: it writes in a tight loop
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = SQLiteCacheStore(path, max_entries=None)
    assert store.integrity_check() == "ok"
    count = store.count()
    assert count >= 300
    cache = ResponseCache(store, embedder=HashEmbedder())
    ns = CacheNamespace(tenant="t", llm="m")
    for i in (0, count // 2, count - 1):
        got = cache.lookup(f"prompt {i}", namespace=ns)
        assert got.entry is not None and got.entry.payload.startswith(json.dumps(i))
    cache.update("after the crash", "fine", namespace=ns)
    assert cache.lookup("after the crash", namespace=ns).hit
    cache.close()
