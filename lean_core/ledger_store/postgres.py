"""The shared ledger store: one PostgreSQL schema that many processes and hosts write at once.

Connections come from ``psycopg_pool`` (a sync pool, and an async pool per event loop for the
``a*`` methods: real async I/O, no worker threads). Every record is one autocommitted INSERT
keyed by its random id, so concurrent writers never conflict; a write retried after a dropped
connection that had in fact committed meets its own id and counts once. Opening takes a
transaction-scoped advisory lock, so one opener creates or migrates the schema while the others
wait. Tables live in their own PostgreSQL schema (``lean_ledger`` by default): a schema holding
anything else is refused, never adopted.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from lean_core._extras import require
from lean_core.cache._postgres_conn import describe_dsn, redact
from lean_core.errors import InvalidParameterError, LedgerError, LedgerPathError
from lean_core.ledger_store.base import LedgerStore
from lean_core.ledger_store.migrations import LATEST_VERSION, check_meta, migrate

__all__ = ["PostgresLedgerStore"]

_FEATURE = "the PostgreSQL cost ledger"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")  # ledger statements hold no other '?' or '%'


class _Runner:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(_pg(statement), tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg(statement), rows)


class PostgresLedgerStore(LedgerStore):
    """A ledger in a PostgreSQL database (psycopg 3 + psycopg_pool; extra ``postgres``).

    Args:
        dsn: a libpq connection string or ``postgresql://`` URL.
        schema: the PostgreSQL schema holding the ledger's tables (created if missing);
            lower-case letters, digits and ``_``.
        read_only: report only: never creates, migrates or writes.
        pool_size: connections per pool (>= 1): the sync pool, and one async pool per event loop
            (made by the loop's first ``a*`` call; ``await ledger.aclose()`` closes it before the
            loop ends, else its connections close when the process exits).
        connect_timeout_s: seconds to wait for the server (> 0).
        synchronous_commit: False (default): a record returns once the server has it, before its
            WAL is flushed to disk (about 0.4 ms instead of about 5 ms per record here); a server
            crash may lose the last fraction of a second of records, never corrupts the ledger
            (the SQLite store makes the same trade with ``synchronous=NORMAL``). True: every
            record is on disk before it returns.
    """

    dialect = "postgresql"
    aggregates_in_database = True
    """Summaries are summed by the server (see ``lean_core.ledger_store._summary``)."""

    def __init__(self, dsn: str, *, schema: str = "lean_ledger", read_only: bool = False, pool_size: int = 4,
                 connect_timeout_s: float = 10.0, synchronous_commit: bool = False) -> None:
        if not isinstance(dsn, str) or not dsn.strip():
            raise InvalidParameterError("dsn", allowed="a non-empty PostgreSQL connection string", received=dsn)
        if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
            raise InvalidParameterError("schema", allowed="lower-case letters, digits and _ (max 63)", received=schema)
        for name, flag in (("read_only", read_only), ("synchronous_commit", synchronous_commit)):
            if not isinstance(flag, bool):
                raise InvalidParameterError(name, allowed="True or False", received=flag)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise InvalidParameterError("pool_size", allowed="an int >= 1", received=pool_size)
        if isinstance(connect_timeout_s, bool) or not isinstance(connect_timeout_s, int | float) \
                or not connect_timeout_s > 0:
            raise InvalidParameterError("connect_timeout_s", allowed="seconds > 0", received=connect_timeout_s)
        self.psycopg = require("psycopg", extra="postgres", feature=_FEATURE)
        self._pool_mod = require("psycopg_pool", extra="postgres", feature=_FEATURE)
        self._dsn = dsn
        self.schema = schema
        self.read_only = read_only
        self._pool_size = pool_size
        commit = "on" if synchronous_commit else "off"
        self._kwargs = {"autocommit": True, "options": f"-c search_path={schema} -c synchronous_commit={commit}",
                        "connect_timeout": max(1, round(connect_timeout_s))}
        self._timeout = float(connect_timeout_s)
        self._apool: Any = None
        self._apool_loop: asyncio.AbstractEventLoop | None = None
        self._apool_lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._apool_guard = threading.Lock()
        self._pool = self._pool_mod.ConnectionPool(dsn, min_size=1, max_size=pool_size, kwargs=self._kwargs,
                                                   open=False, timeout=self._timeout, name=f"ledger-{schema}")
        try:
            self._pool.open(wait=True, timeout=self._timeout)
        except self._pool_mod.PoolTimeout as exc:
            self._pool.close()
            raise LedgerPathError(f"cannot connect to the ledger database {self.location}: "
                                  f"{self._redacted(exc)}") from None
        try:
            self._version = self._open()
        except BaseException:
            self._pool.close()
            raise

    @property
    def location(self) -> str:
        return f"postgresql://{describe_dsn(self._dsn)} schema {self.schema}"

    @property
    def schema_version(self) -> int:
        return self._version

    def _redacted(self, exc: BaseException) -> str:
        return " ".join(redact(str(exc), self._dsn).split())[:300]

    def _error(self, exc: BaseException, action: str) -> LedgerError:
        if isinstance(exc, self.psycopg.OperationalError | self._pool_mod.PoolTimeout):
            return LedgerPathError(f"cannot {action} the ledger {self.location}: {self._redacted(exc)}")
        return LedgerError(f"cannot {action} the ledger {self.location}: {self._redacted(exc)}")

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> int:
        try:
            with self._pool.connection() as conn, conn.transaction():
                if not self.read_only:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lean-ledger:{self.schema}",))
                current = self._read_meta(conn)
                if self.read_only:
                    if current == 0:
                        raise LedgerPathError(f"no ledger at {self.location}")
                    return current
                if current < LATEST_VERSION:
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                    migrate(lambda s, p: conn.execute(_pg(s), p), dialect="postgresql", current=current)
                return LATEST_VERSION
        except LedgerError:
            raise
        except (self.psycopg.Error, self._pool_mod.PoolTimeout) as exc:
            raise self._error(exc, "open") from None

    def _read_meta(self, conn: Any) -> int:
        tables = {str(r[0]) for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (self.schema,))}
        if not tables:
            return 0
        meta: dict[str, str] = {}
        if "meta" in tables:
            meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        return check_meta(meta, location=self.location, tables=tables)

    # -- statements --------------------------------------------------------------------------
    def _check_writable(self) -> None:
        if self.read_only:
            raise LedgerPathError(f"the ledger {self.location} was opened read-only")

    def _insert_statement(self, table: str, columns: Sequence[str]) -> str:
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"

    def _bad_value(self, table: str, exc: BaseException) -> InvalidParameterError:
        return InvalidParameterError(table, allowed="text without NUL or lone surrogates, 64-bit integers",
                                     received=" ".join(str(exc).split())[:200])

    # ``insert`` and ``ainsert`` differ only in their I/O: both build the call here and leave the
    # retry decision to ``_retry_insert``.
    def _insert_call(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        self._check_writable()
        return self._insert_statement(table, columns), tuple(row)

    def _insert_failures(self) -> tuple[type[BaseException], ...]:
        return self.psycopg.Error, self._pool_mod.PoolTimeout, UnicodeEncodeError, OverflowError

    def _retry_insert(self, table: str, exc: BaseException, attempt: int) -> bool:
        """Whether a failed attempt (1 or 2) is tried again (True: its connection dropped) or the row
        is in already (False); raises the ledger's error for anything else."""
        psycopg = self.psycopg
        if isinstance(exc, psycopg.errors.UniqueViolation):
            if attempt == 2:  # the first attempt committed before its connection dropped
                return False
            raise self._error(exc, "write to") from None
        if isinstance(exc, psycopg.DataError | UnicodeEncodeError | OverflowError):
            raise self._bad_value(table, exc) from None
        if isinstance(exc, psycopg.OperationalError) and attempt == 1:  # PoolTimeout is one too
            return True
        raise self._error(exc, "write to") from None

    def insert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        statement, params = self._insert_call(table, columns, row)
        for attempt in (1, 2):
            try:
                with self._pool.connection() as conn:
                    conn.execute(statement, params)
                return
            except self._insert_failures() as exc:
                if not self._retry_insert(table, exc, attempt):
                    return

    async def _async_pool(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._apool is not None and self._apool_loop is loop:
            return self._apool
        # Many tasks' first writes arrive together: one of them opens the pool while the others
        # wait for it. Without this each opened its own pool and all but one were left running,
        # holding server connections and tasks that hung ``asyncio.run``'s exit.
        with self._apool_guard:
            if self._apool_lock is None or self._apool_lock[0] is not loop:
                self._apool_lock = (loop, asyncio.Lock())
            lock = self._apool_lock[1]
        async with lock:
            if self._apool is not None and self._apool_loop is loop:
                return self._apool
            if self._apool is not None and self._apool_loop is not None and self._apool_loop.is_closed():
                self._finish_orphaned(self._apool)
            pool = self._pool_mod.AsyncConnectionPool(self._dsn, min_size=1, max_size=self._pool_size,
                                                      kwargs=self._kwargs, open=False, timeout=self._timeout,
                                                      name=f"ledger-{self.schema}-async")
            try:
                await pool.open(wait=True, timeout=self._timeout)
            except BaseException:
                await pool.close()  # a pool that never opened keeps retrying in the background otherwise
                raise
            self._apool, self._apool_loop = pool, loop
        return pool

    async def ainsert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        statement, params = self._insert_call(table, columns, row)
        for attempt in (1, 2):
            try:
                pool = await self._async_pool()
                async with pool.connection() as conn:
                    await conn.execute(statement, params)
                return
            except self._insert_failures() as exc:
                if not self._retry_insert(table, exc, attempt):
                    return

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Bulk load with COPY (benchmarks, imports): one transaction."""
        self._check_writable()
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur, \
                    cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        except (self.psycopg.Error, self._pool_mod.PoolTimeout) as exc:
            raise self._error(exc, "write to") from None

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._pool.connection() as conn:
                return list(conn.execute(_pg(statement), tuple(params)).fetchall())
        except (self.psycopg.Error, self._pool_mod.PoolTimeout) as exc:
            raise self._error(exc, "read") from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Runner]:
        self._check_writable()
        try:
            with self._pool.connection() as conn, conn.transaction():
                # Serialises maintenance (prune) with openers that migrate; writers never wait on it.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"lean-ledger:{self.schema}",))
                yield _Runner(conn)
        except (self.psycopg.Error, self._pool_mod.PoolTimeout) as exc:
            raise self._error(exc, "write to") from None

    def tables(self) -> set[str]:
        return {str(r[0]) for r in self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", (self.schema,))}

    def columns(self, table: str) -> set[str]:
        return {str(r[0]) for r in self.query(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            (self.schema, table))}

    def close(self) -> None:
        self._pool.close()
        apool, loop = self._apool, self._apool_loop
        self._apool = self._apool_loop = None
        if apool is not None and loop is not None and not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(apool.close())
        elif apool is not None and loop is not None and loop.is_closed():
            self._finish_orphaned(apool)

    @staticmethod
    def _finish_orphaned(apool: Any) -> None:
        # Its event loop has ended (``asyncio.run`` returned) and cannot close the pool any more:
        # end the idle connections' sessions directly, or they would hold server slots until this
        # process exits (a server has ~100).
        for conn in list(getattr(apool, "_pool", ())):
            with contextlib.suppress(Exception):
                conn.pgconn.finish()

    async def aclose(self) -> None:
        apool, loop = self._apool, self._apool_loop
        if apool is not None and loop is asyncio.get_running_loop():
            self._apool = self._apool_loop = None
            await apool.close()
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        return f"PostgresLedgerStore({self.location!r}, read_only={self.read_only})"
