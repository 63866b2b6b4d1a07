"""The scale-out store: one PostgreSQL table with a pgvector HNSW index, shared by processes and hosts.

Every read filters on the namespace (``WHERE tenant = %s AND llm_hash = %s``) inside the same SQL
query that ranks by vector distance, so another tenant's or model's entry can never come back.

Layout (``{t}`` is the ``table`` option):

* ``{t}``: the entries and their embeddings; UNIQUE (tenant, llm_hash, prompt_key); btree on
  (tenant, llm_hash); HNSW on ``embedding vector_cosine_ops``.
* ``{t}_lru``: (id, last_access), one row per entry (ON DELETE CASCADE). ``last_access`` lives
  apart because every hit rewrites it: a row update that changes an indexed column is not HOT, so
  keeping it in ``{t}`` would cost an HNSW insert (a graph search; the index grows for hot entries)
  plus one per btree on every cache hit (measured: 0.45 ms per touch at 5k rows, vs 0.06 ms here).
* ``{t}_totals``: the entry count, kept exact by statement triggers. Every put, invalidate and
  purge locks this row first, which serialises writers the way SQLite's ``BEGIN IMMEDIATE`` does:
  eviction then sees every committed entry and never evicts more than ``count - max_entries``,
  and lock order is the same everywhere (no deadlocks between our own writers).

Search runs the filtered ``ORDER BY embedding <=> query LIMIT k`` with pgvector 0.8's iterative
HNSW scan (``strict_order``); the planner searches small namespaces exactly through the
(tenant, llm_hash) btree instead. An iterative scan stops after ``hnsw.max_scan_tuples`` (20,000 by
default), so a namespace that is a sliver of a huge table may get fewer than k candidates (never
another namespace's). With pgvector < 0.8 every search is exact within its namespace.

Sync calls borrow one of up to ``pool_size`` connections (one thread at a time each); async calls
use psycopg's AsyncConnection, up to ``pool_size`` per event loop. A pooled connection that the
server dropped (restart, idle timeout) is replaced and the call retried once.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from lean_core._extras import require
from lean_core.cache._postgres_conn import AsyncPool, SyncPool, describe_dsn, died, redact
from lean_core.cache.store import CacheStore
from lean_core.cache.types import CacheEntry, CacheNamespace, SemanticCandidate
from lean_core.errors import CacheStoreError, InvalidParameterError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PostgresCacheStore"]

_T = TypeVar("_T")

# 48 characters leave room for the derived names ("{t}_lru_last_access") within PostgreSQL's 63.
_TABLE_RE = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_TABLE_ALLOWED = "a lowercase SQL identifier: a letter or _ then letters, digits or _, at most 48 characters"
# Any fixed key: schema creation (CREATE EXTENSION included) is serialised per database.
_SCHEMA_LOCK_KEY = 0x6C65616E_63616368
_COLUMNS = "tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens"
_FEATURE = "PostgresCacheStore"

_DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS {t} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    llm_hash text NOT NULL,
    prompt_key text NOT NULL,
    prompt text NOT NULL,
    payload text NOT NULL,
    embedding vector({dim}),
    created_at double precision NOT NULL,
    expires_at double precision,
    input_tokens integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    UNIQUE (tenant, llm_hash, prompt_key)
);
CREATE INDEX IF NOT EXISTS {t}_namespace ON {t} (tenant, llm_hash);
CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops);
CREATE TABLE IF NOT EXISTS {t}_totals (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    entries bigint NOT NULL
);
INSERT INTO {t}_totals (singleton, entries) SELECT true, count(*) FROM {t} ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION {t}_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {t}_totals SET entries = 0;
        RETURN NULL;
    END IF;
    SELECT count(*) INTO n FROM changed;
    IF n > 0 THEN
        UPDATE {t}_totals SET entries = entries + CASE WHEN TG_OP = 'INSERT' THEN n ELSE -n END;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER {t}_counted_insert AFTER INSERT ON {t}
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
CREATE OR REPLACE TRIGGER {t}_counted_delete AFTER DELETE ON {t}
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
CREATE OR REPLACE TRIGGER {t}_counted_truncate AFTER TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
CREATE TABLE IF NOT EXISTS {t}_lru (
    id bigint PRIMARY KEY REFERENCES {t} (id) ON DELETE CASCADE,
    last_access double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_lru_last_access ON {t}_lru (last_access, id);
"""
# {t}_lru is created last, so its existence means the whole schema is there.
_PROBE = """
SELECT to_regclass(%(lru)s) IS NOT NULL,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
       (SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%(table)s) AND attname = 'embedding')
"""


@dataclass(frozen=True)
class _Sql:
    """The statements of one table (identifiers validated, so formatting them in is safe)."""

    lock_totals: str
    totals: str
    put: str
    evict: str
    get: str
    touch: str
    search: str
    count_tenant: str
    delete: str
    purge: str

    @classmethod
    def build(cls, t: str, *, iterative_scan: bool) -> _Sql:
        # Without iterative scans (pgvector < 0.8) a filtered HNSW scan can return fewer than k rows,
        # so "+ 0" keeps the planner off the HNSW index: exact search within the namespace.
        order = "embedding <=> %(query)b" if iterative_scan else "(embedding <=> %(query)b) + 0"
        return cls(
            lock_totals=f"SELECT entries FROM {t}_totals FOR UPDATE",
            totals=f"SELECT entries FROM {t}_totals",
            put=f"""
                WITH written AS (
                    INSERT INTO {t} (tenant, llm_hash, prompt_key, prompt, payload, embedding, created_at,
                                     expires_at, input_tokens, output_tokens)
                    VALUES (%(tenant)s, %(llm_hash)s, %(prompt_key)s, %(prompt)s, %(payload)s, %(embedding)b,
                            %(created_at)s, %(expires_at)s, %(input_tokens)s, %(output_tokens)s)
                    ON CONFLICT (tenant, llm_hash, prompt_key) DO UPDATE SET
                        prompt = EXCLUDED.prompt, payload = EXCLUDED.payload, embedding = EXCLUDED.embedding,
                        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
                        input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens
                    RETURNING id)
                INSERT INTO {t}_lru (id, last_access) SELECT id, %(created_at)s FROM written
                ON CONFLICT (id) DO UPDATE SET last_access = EXCLUDED.last_access""",
            evict=f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t}_lru ORDER BY last_access, id LIMIT %(n)s)",
            get=f"""
                UPDATE {t}_lru AS lru SET last_access = %(now)s FROM {t} AS e
                WHERE lru.id = e.id AND e.tenant = %(tenant)s AND e.llm_hash = %(llm_hash)s
                  AND e.prompt_key = %(prompt_key)s AND (e.expires_at IS NULL OR e.expires_at > %(now)s)
                RETURNING {", ".join(f"e.{c.strip()}" for c in _COLUMNS.split(","))}""",
            touch=f"""
                UPDATE {t}_lru SET last_access = %(now)s WHERE id = (
                    SELECT id FROM {t} WHERE tenant = %(tenant)s AND llm_hash = %(llm_hash)s
                      AND prompt_key = %(prompt_key)s)""",
            search=f"""
                SELECT * FROM (
                    SELECT {_COLUMNS}, 1 - (embedding <=> %(query)b) AS similarity FROM {t}
                    WHERE tenant = %(tenant)s AND llm_hash = %(llm_hash)s AND embedding IS NOT NULL
                      AND (expires_at IS NULL OR expires_at > %(now)s)
                    ORDER BY {order} LIMIT %(k)s
                ) AS nearest WHERE similarity >= %(min_similarity)s ORDER BY similarity DESC""",
            count_tenant=f"SELECT count(*) FROM {t} WHERE tenant = %(tenant)s",
            delete=f"DELETE FROM {t} WHERE {{where}}",
            purge=f"DELETE FROM {t} WHERE expires_at IS NOT NULL AND expires_at <= %(now)s",
        )


class PostgresCacheStore(CacheStore):
    """Entries in a PostgreSQL table; nearest-neighbour search by pgvector (HNSW, cosine).

    Many threads, event loops, processes and hosts may share one table. The constructor does no
    I/O: the first call connects and creates the schema (``CREATE EXTENSION vector`` needs the
    right to create extensions once per database).
    """

    def __init__(self, dsn: str, *, table: str = "lean_cache_entries", dimensions: int = 384,
                 max_entries: int | None = 100_000, pool_size: int = 4, connect_timeout_s: int = 10,
                 durable_writes: bool = False) -> None:
        """
        Args:
            dsn: a libpq connection string or URI (``postgresql://user:password@host:5432/db``).
            table: the entries table; ``{table}_lru`` and ``{table}_totals`` are created beside it.
            dimensions: the embedding size, fixed by the table once created.
            max_entries: least recently used entries are evicted beyond this; None: unbounded.
            pool_size: connections kept for sync calls, and as many per event loop for async ones.
            connect_timeout_s: seconds to wait for the server when connecting (libpq, at least 2).
            durable_writes: wait for each write to reach the server's disk. Off by default: a cache
                holds nothing that cannot be recomputed, and ``synchronous_commit = off`` can only
                lose the last fraction of a second of writes in a server crash, never corrupt.
        """
        if not isinstance(dsn, str) or not dsn:
            raise InvalidParameterError("dsn", allowed="a non-empty libpq connection string or URI",
                                        received=type(dsn).__name__)
        if not isinstance(table, str) or not _TABLE_RE.fullmatch(table):
            raise InvalidParameterError("table", allowed=_TABLE_ALLOWED, received=table)
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= 16_000:
            raise InvalidParameterError("dimensions", allowed="an int in [1, 16000]", received=dimensions)
        if max_entries is not None and (isinstance(max_entries, bool) or not isinstance(max_entries, int)
                                        or max_entries < 1):
            raise InvalidParameterError("max_entries", allowed="an int >= 1 or None", received=max_entries)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidParameterError("pool_size", allowed="an int >= 1", received=pool_size)
        if isinstance(connect_timeout_s, bool) or not isinstance(connect_timeout_s, int) or connect_timeout_s < 2:
            raise InvalidParameterError("connect_timeout_s", allowed="an int >= 2 (seconds)",
                                        received=connect_timeout_s)
        self.table = table
        self.dimensions = dimensions
        self.max_entries = max_entries
        self._dsn = dsn
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._durable = durable_writes
        self._lock = threading.Lock()
        self._schema: _Sql | None = None  # the statements, once the schema is known
        self._pid = os.getpid()
        self._sync_pool: SyncPool | None = None
        self._async_pools: dict[asyncio.AbstractEventLoop, AsyncPool] = {}

    def __repr__(self) -> str:
        return f"PostgresCacheStore({describe_dsn(self._dsn)}, table={self.table!r})"

    # -- CacheStore (sync) ----------------------------------------------------------------------
    def put(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        params = _put_params(entry, None if vector is None else self._vector(vector))

        def op(conn: Any, sql: _Sql) -> None:
            with conn.transaction():
                conn.execute(sql.lock_totals)
                conn.execute(sql.put, params)
                if self.max_entries is not None:
                    (total,) = conn.execute(sql.totals).fetchone()
                    if total > self.max_entries:
                        conn.execute(sql.evict, {"n": total - self.max_entries})

        self._run(op)

    def get(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        params = _key_params(namespace, prompt_key, now)
        row = self._run(lambda conn, sql: conn.execute(sql.get, params).fetchone())
        return None if row is None else _entry(row)

    def search(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
               now: float) -> list[SemanticCandidate]:
        params = self._search_params(namespace, vector, k=k, min_similarity=min_similarity, now=now)
        if params is None:
            return []

        def op(conn: Any, sql: _Sql) -> list[Any]:
            with conn.transaction():
                conn.execute(_SEARCH_SETTINGS, params)
                return list(conn.execute(sql.search, params).fetchall())

        return _candidates(self._run(op))

    def touch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        params = _key_params(namespace, prompt_key, now)
        self._run(lambda conn, sql: conn.execute(sql.touch, params))

    def invalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                   prompt_key: str | None = None) -> int:
        where, params = _invalidate_where(tenant, namespace, prompt_key)

        def op(conn: Any, sql: _Sql) -> int:
            with conn.transaction():
                conn.execute(sql.lock_totals)
                return int(conn.execute(sql.delete.format(where=where), params).rowcount)

        return self._run(op)

    def count(self, *, tenant: str | None = None) -> int:
        if tenant is None:
            return int(self._run(lambda conn, sql: conn.execute(sql.totals).fetchone()[0]))
        return int(self._run(lambda conn, sql: conn.execute(sql.count_tenant, {"tenant": tenant}).fetchone()[0]))

    def purge_expired(self, *, now: float) -> int:
        def op(conn: Any, sql: _Sql) -> int:
            with conn.transaction():
                conn.execute(sql.lock_totals)
                return int(conn.execute(sql.purge, {"now": now}).rowcount)

        return self._run(op)

    def close(self) -> None:
        """Close every connection (sync and async); a later call reconnects."""
        with self._lock:
            pools, self._async_pools = list(self._async_pools.values()), {}
            sync_pool, self._sync_pool = self._sync_pool, None
        if sync_pool is not None:
            sync_pool.close()
        for pool in pools:
            pool.abandon()

    # -- CacheStore (async, on psycopg's AsyncConnection) ------------------------------------
    async def aput(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        params = _put_params(entry, None if vector is None else self._vector(vector))

        async def op(conn: Any, sql: _Sql) -> None:
            async with conn.transaction():
                await conn.execute(sql.lock_totals)
                await conn.execute(sql.put, params)
                if self.max_entries is not None:
                    (total,) = await (await conn.execute(sql.totals)).fetchone()
                    if total > self.max_entries:
                        await conn.execute(sql.evict, {"n": total - self.max_entries})

        await self._arun(op)

    async def aget(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        params = _key_params(namespace, prompt_key, now)

        async def op(conn: Any, sql: _Sql) -> Any:
            return await (await conn.execute(sql.get, params)).fetchone()

        row = await self._arun(op)
        return None if row is None else _entry(row)

    async def asearch(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
                      now: float) -> list[SemanticCandidate]:
        params = self._search_params(namespace, vector, k=k, min_similarity=min_similarity, now=now)
        if params is None:
            return []

        async def op(conn: Any, sql: _Sql) -> list[Any]:
            async with conn.transaction():
                await conn.execute(_SEARCH_SETTINGS, params)
                return list(await (await conn.execute(sql.search, params)).fetchall())

        return _candidates(await self._arun(op))

    async def atouch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        params = _key_params(namespace, prompt_key, now)

        async def op(conn: Any, sql: _Sql) -> None:
            await conn.execute(sql.touch, params)

        await self._arun(op)

    async def ainvalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                          prompt_key: str | None = None) -> int:
        where, params = _invalidate_where(tenant, namespace, prompt_key)

        async def op(conn: Any, sql: _Sql) -> int:
            async with conn.transaction():
                await conn.execute(sql.lock_totals)
                return int((await conn.execute(sql.delete.format(where=where), params)).rowcount)

        return await self._arun(op)

    async def aclose(self) -> None:
        """Close this event loop's connections cleanly, then everything else (as :meth:`close`)."""
        pool = self._async_pools.get(asyncio.get_running_loop())
        if pool is not None:
            await pool.aclose()
        self.close()

    # -- shared helpers -------------------------------------------------------------------------
    def _vector(self, vector: Any) -> Any:
        import numpy as np

        array = np.asarray(vector, dtype=np.float32).reshape(-1)
        if array.shape[0] != self.dimensions:
            raise InvalidParameterError("vector", allowed=f"{self.dimensions} floats (this store's dimensions)",
                                        received=f"{array.shape[0]} values")
        if not np.all(np.isfinite(array)):
            raise InvalidParameterError("vector", allowed="finite floats", received="NaN or infinity")
        return array

    def _search_params(self, namespace: CacheNamespace, vector: Any, *, k: int, min_similarity: float,
                       now: float) -> dict[str, Any] | None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise InvalidParameterError("k", allowed="an int >= 0", received=k)
        query = self._vector(vector)
        if k == 0:
            return None
        # ef_search bounds the first batch of an HNSW scan; iterative scanning continues past it.
        return {"query": query, "tenant": namespace.tenant, "llm_hash": namespace.llm_hash, "now": now, "k": k,
                "min_similarity": float(min_similarity), "ef_search": str(min(1000, max(40, k)))}

    def _modules(self) -> tuple[Any, Any]:
        psycopg = require("psycopg", extra="postgres", feature=_FEATURE)
        pgvector = require("pgvector.psycopg", extra="postgres", feature=_FEATURE)
        return psycopg, pgvector

    def _connect_error(self, exc: BaseException) -> CacheStoreError:
        detail = redact(str(exc).strip(), self._dsn)
        return CacheStoreError(f"cannot connect to the PostgreSQL cache store at {describe_dsn(self._dsn)}: {detail}")

    def _use_error(self, exc: BaseException) -> CacheStoreError:
        detail = redact(str(exc).strip(), self._dsn)
        return CacheStoreError(f"PostgreSQL cache store at {describe_dsn(self._dsn)}, table {self.table}: {detail}")

    def _check_schema(self, row: tuple[Any, ...]) -> _Sql:
        _, version, typmod = row
        if typmod is not None and typmod > 0 and typmod != self.dimensions:
            raise InvalidParameterError("dimensions", allowed=f"{typmod} (the existing table {self.table}'s)",
                                        received=self.dimensions)
        return _Sql.build(self.table, iterative_scan=_version(version) >= (0, 8))

    def _sql(self) -> _Sql:
        if self._schema is None:  # the first connection sets it before it is lent
            raise CacheStoreError(f"PostgreSQL cache store table {self.table}: schema not initialised")
        return self._schema

    def _ddl(self) -> str:
        return _DDL.format(t=self.table, dim=self.dimensions)

    def _probe_params(self) -> dict[str, str]:
        return {"lru": f"{self.table}_lru", "table": self.table}

    def _forked(self) -> None:
        # A child process must not use (or close) the parent's sockets: drop them unclosed.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._sync_pool, self._async_pools = None, {}

    # -- sync connections -----------------------------------------------------------------------
    def _connect(self) -> Any:
        psycopg, pgvector = self._modules()
        try:
            conn = psycopg.connect(self._dsn, autocommit=True, connect_timeout=self._connect_timeout_s)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        try:
            if not self._durable:
                conn.execute("SET synchronous_commit = off")
            if self._schema is None:
                row = conn.execute(_PROBE, self._probe_params()).fetchone()
                if not row[0]:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                        if not conn.execute(_PROBE, self._probe_params()).fetchone()[0]:  # not made meanwhile
                            conn.execute(self._ddl())
                    row = conn.execute(_PROBE, self._probe_params()).fetchone()
                self._schema = self._check_schema(row)
            pgvector.register_vector(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self, op: Callable[[Any, _Sql], _T]) -> _T:
        psycopg, _ = self._modules()
        with self._lock:
            self._forked()
            if self._sync_pool is None:
                self._sync_pool = SyncPool(self._pool_size, self._connect)
            pool = self._sync_pool
        for attempt in range(2):
            with pool.connection() as conn:
                try:
                    return op(conn, self._sql())
                except psycopg.Error as exc:
                    if attempt == 0 and died(conn, exc, psycopg):
                        continue
                    raise self._use_error(exc) from exc
        raise AssertionError("unreachable")

    # -- async connections ----------------------------------------------------------------------
    async def _aconnect(self) -> Any:
        psycopg, pgvector = self._modules()
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True,
                                                         connect_timeout=self._connect_timeout_s)
        except psycopg.Error as exc:
            raise self._connect_error(exc) from None
        try:
            if not self._durable:
                await conn.execute("SET synchronous_commit = off")
            if self._schema is None:
                row = await (await conn.execute(_PROBE, self._probe_params())).fetchone()
                if not row[0]:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                        if not (await (await conn.execute(_PROBE, self._probe_params())).fetchone())[0]:
                            await conn.execute(self._ddl())
                    row = await (await conn.execute(_PROBE, self._probe_params())).fetchone()
                self._schema = self._check_schema(row)
            await pgvector.register_vector_async(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _arun(self, op: Callable[[Any, _Sql], Awaitable[_T]]) -> _T:
        psycopg, _ = self._modules()
        loop = asyncio.get_running_loop()
        with self._lock:
            self._forked()
            for old in [other for other in self._async_pools if other.is_closed()]:
                self._async_pools.pop(old).abandon()
            pool = self._async_pools.get(loop)
            if pool is None:
                pool = self._async_pools[loop] = AsyncPool(self._pool_size, self._aconnect)
        for attempt in range(2):
            async with pool.connection() as conn:
                try:
                    return await op(conn, self._sql())
                except psycopg.Error as exc:
                    if attempt == 0 and died(conn, exc, psycopg):
                        continue
                    raise self._use_error(exc) from exc
        raise AssertionError("unreachable")


# set_config(..., true) is SET LOCAL: it ends with the search's transaction. strict_order makes a
# filtered HNSW scan keep going until k rows of *this* namespace are found, in exact distance order
# (relaxed_order would need a re-sort and k is small). A forced custom plan lets the planner see
# each namespace's real size: small ones are searched exactly via the (tenant, llm_hash) btree.
_SEARCH_SETTINGS = ("SELECT set_config('hnsw.iterative_scan', 'strict_order', true),"
                    " set_config('hnsw.ef_search', %(ef_search)s, true),"
                    " set_config('plan_cache_mode', 'force_custom_plan', true)")


def _candidates(rows: list[Any]) -> list[SemanticCandidate]:
    return [SemanticCandidate(entry=_entry(row[:-1]), similarity=float(row[-1])) for row in rows]


def _put_params(entry: CacheEntry, vector: Any) -> dict[str, Any]:
    return {"tenant": entry.tenant, "llm_hash": entry.llm_hash, "prompt_key": entry.prompt_key,
            "prompt": entry.prompt, "payload": entry.payload, "embedding": vector, "created_at": entry.created_at,
            "expires_at": entry.expires_at, "input_tokens": entry.input_tokens,
            "output_tokens": entry.output_tokens}


def _key_params(namespace: CacheNamespace, prompt_key: str, now: float) -> dict[str, Any]:
    return {"tenant": namespace.tenant, "llm_hash": namespace.llm_hash, "prompt_key": prompt_key, "now": now}


def _invalidate_where(tenant: str | None, namespace: CacheNamespace | None,
                      prompt_key: str | None) -> tuple[str, dict[str, Any]]:
    if prompt_key is not None and namespace is None:
        raise InvalidParameterError("prompt_key", allowed="a key together with its namespace", received=prompt_key)
    if namespace is not None:
        params: dict[str, Any] = {"tenant": namespace.tenant, "llm_hash": namespace.llm_hash}
        if prompt_key is None:
            return "tenant = %(tenant)s AND llm_hash = %(llm_hash)s", params
        return ("tenant = %(tenant)s AND llm_hash = %(llm_hash)s AND prompt_key = %(prompt_key)s",
                {**params, "prompt_key": prompt_key})
    if tenant is not None:
        return "tenant = %(tenant)s", {"tenant": tenant}
    return "true", {}


def _entry(row: tuple[Any, ...]) -> CacheEntry:
    tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens = row
    return CacheEntry(tenant=tenant, llm_hash=llm_hash, prompt_key=prompt_key, prompt=prompt, payload=payload,
                      created_at=created_at, expires_at=expires_at, input_tokens=input_tokens,
                      output_tokens=output_tokens)


def _version(text: str | None) -> tuple[int, ...]:
    parts = []
    for part in (text or "0").split("."):
        digits = re.match(r"\d+", part)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)
