"""Connections of the PostgreSQL cache store: small sync/async pools and DSN redaction.

Private to :mod:`lean_core.cache.postgres_store`; psycopg is imported by the caller, never here
at module level.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

__all__ = ["AsyncPool", "SyncPool", "describe_dsn", "died", "redact"]


class SyncPool:
    """At most ``size`` connections, lent to one thread at a time."""

    def __init__(self, size: int, connect: Callable[[], Any]) -> None:
        self._size = size
        self._connect = connect
        self._cond = threading.Condition()
        self._idle: list[Any] = []
        self._open = 0
        self._closed = False

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._cond:
            while not self._idle and self._open >= self._size:
                self._cond.wait()
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._open += 1
        if conn is None:
            try:
                conn = self._connect()
            except BaseException:
                self._release(None)
                raise
        try:
            yield conn
        finally:
            self._release(conn)

    def _release(self, conn: Any) -> None:
        keep = conn is not None and not conn.closed and _idle_status(conn)
        with self._cond:
            if keep and not self._closed:
                self._idle.append(conn)
            else:
                self._open -= 1
                if conn is not None:
                    conn.close()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class AsyncPool:
    """At most ``size`` async connections of one event loop."""

    def __init__(self, size: int, connect: Callable[[], Awaitable[Any]]) -> None:
        self._size = size
        self._connect = connect
        self._cond = asyncio.Condition()
        self._idle: list[Any] = []
        self._all: set[Any] = set()
        self._opening = 0
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        async with self._cond:
            while not self._idle and len(self._all) + self._opening >= self._size:
                await self._cond.wait()
            conn = self._idle.pop() if self._idle else None
            if conn is None:
                self._opening += 1
        if conn is None:
            try:
                conn = await self._connect()
            finally:
                async with self._cond:
                    self._opening -= 1
                    if conn is not None:
                        self._all.add(conn)
                    self._cond.notify()
        try:
            yield conn
        finally:
            async with self._cond:
                if not conn.closed and _idle_status(conn) and not self._closed:
                    self._idle.append(conn)
                else:
                    self._all.discard(conn)
                    await conn.close()
                self._cond.notify()

    async def aclose(self) -> None:
        async with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._all.discard(conn)
            await conn.close()

    def abandon(self) -> None:
        """Close every connection without the loop (it may be closed, or another thread's)."""
        self._closed = True
        for conn in list(self._all):
            conn.pgconn.finish()  # what AsyncConnection.close() does, minus the await
        self._all.clear()
        self._idle.clear()


def _idle_status(conn: Any) -> bool:
    # Anything but IDLE means a statement was interrupted: such a connection is not reused.
    from psycopg import pq

    return bool(conn.info.transaction_status == pq.TransactionStatus.IDLE)


def died(conn: Any, exc: BaseException, psycopg: Any) -> bool:
    """Whether ``exc`` means the connection is gone (worth one retry on a fresh connection).

    A pooled connection that the server dropped while it sat idle (restart, idle timeout,
    ``pg_terminate_backend``) only fails on its next use.
    """
    return isinstance(exc, psycopg.OperationalError) and bool(conn.closed)


def _dsn_fields(dsn: str) -> dict[str, Any]:
    try:
        from psycopg.conninfo import conninfo_to_dict

        return dict(conninfo_to_dict(dsn))
    except Exception:  # an unparsable DSN, or psycopg missing: describe it without its fields
        return {}


def describe_dsn(dsn: str) -> str:
    """host:port/dbname of a DSN, never its user or password."""
    fields = _dsn_fields(dsn)
    if not fields:
        return "<unparsable DSN>" if "=" in dsn or "://" in dsn else "<DSN>"
    host = fields.get("host") or fields.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = fields.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = fields.get("dbname") or os.environ.get("PGDATABASE") or fields.get("user") or "?"
    return f"{host}:{port}/{dbname}"


def redact(text: str, dsn: str) -> str:
    """``text`` without the DSN's password (libpq can echo parts of a bad connection string)."""
    password = _dsn_fields(dsn).get("password")
    if password:
        text = text.replace(str(password), "***")
    text = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
