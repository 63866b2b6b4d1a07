"""How the PostgreSQL ledger store's single-record writes fail and recover, the same on the sync
(``insert``) and async (``ainsert``) paths: a connection the server dropped is retried once, a
duplicate id and a value PostgreSQL cannot hold are refused, a read-only store writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from lean_core.errors import InvalidParameterError, LedgerError, LedgerPathError
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

COLUMNS = ("key", "value")  # the meta table of a throwaway schema: a text primary key


@pytest.fixture
def opened_at(postgres_dsn: str) -> datetime:  # noqa: F811
    """The server's clock before the store under test connects: its sessions start after it."""
    import psycopg

    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        ((now,),) = conn.execute("SELECT now()").fetchall()
    return now  # type: ignore[no-any-return]


@pytest.fixture
def store(postgres_dsn: str, opened_at: datetime) -> Iterator[Any]:  # noqa: F811
    from lean_core.ledger_store.postgres import PostgresLedgerStore

    s = PostgresLedgerStore(postgres_dsn, schema=f"w_{uuid.uuid4().hex[:10]}", pool_size=1)
    yield s
    s.close()


def _drop_connections(dsn: str, since: datetime) -> int:
    """End the store's sessions (those started ``since``), as a server restart or an idle-timeout proxy would."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        ((ended,),) = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                   " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                                   " AND backend_start >= %s", (since,)).fetchall()
    return int(ended)


def _writer(store: Any, mode: str, dsn: str, since: datetime) -> Callable[[list[Any]], None]:
    """Runs a list of steps (a row to insert, or "drop") in order, on one path; async steps share one loop."""
    def run_sync(steps: list[Any]) -> None:
        for step in steps:
            if step == "drop":
                assert _drop_connections(dsn, since) >= 1
            else:
                store.insert("meta", COLUMNS, step)

    async def run_async(steps: list[Any]) -> None:
        for step in steps:
            if step == "drop":
                assert _drop_connections(dsn, since) >= 1
            else:
                await store.ainsert("meta", COLUMNS, step)

    return run_sync if mode == "sync" else lambda steps: asyncio.run(run_async(steps))


def _probes(store: Any, dsn: str) -> list[tuple[str, str]]:
    """The probe rows, read on a connection of its own (a dropped one may still sit in the store's pools)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        return [(str(k), str(v)) for k, v in conn.execute(
            f"SELECT key, value FROM {store.schema}.meta WHERE key LIKE %s ORDER BY key", ("p%",)).fetchall()]


# Without the retry, asyncio.run's shutdown waits on the async pool's reconnect: fail in a minute, not 15.
@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dropped_connection_is_retried_once_and_the_record_counts_once(
        store: Any, mode: str, postgres_dsn: str, opened_at: datetime) -> None:  # noqa: F811
    run = _writer(store, mode, postgres_dsn, opened_at)
    run([("p1", "a"), "drop", ("p2", "b")])  # the pool's only connection is dead: p2 goes in on the retry
    assert _probes(store, postgres_dsn) == [("p1", "a"), ("p2", "b")]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_duplicates_bad_values_and_read_only_are_refused(
        store: Any, mode: str, postgres_dsn: str, opened_at: datetime) -> None:  # noqa: F811
    from lean_core.ledger_store.postgres import PostgresLedgerStore

    run = _writer(store, mode, postgres_dsn, opened_at)
    run([("p1", "a")])
    with pytest.raises(LedgerError, match="cannot write to the ledger") as duplicate:
        run([("p1", "again")])  # a live connection: a unique violation is a real duplicate, not a retry
    assert not isinstance(duplicate.value, LedgerPathError)
    with pytest.raises(InvalidParameterError, match=r"meta.*NUL"):
        run([("p2", "nul \x00 inside")])
    with pytest.raises(InvalidParameterError, match="meta"):
        run([("p3", "lone \ud800 surrogate")])
    reader = PostgresLedgerStore(postgres_dsn, schema=store.schema, read_only=True)
    try:
        with pytest.raises(LedgerPathError, match="read-only"):
            _writer(reader, mode, postgres_dsn, opened_at)([("p4", "d")])
    finally:
        reader.close()
    assert _probes(store, postgres_dsn) == [("p1", "a")]
