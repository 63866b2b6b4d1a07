"""Ledger schema 4 on both stores (SQLite and a real PostgreSQL): a schema-3 ledger, roll-ups
included, is read as it is when read-only and migrated on open, and a cache miss's reason
(``SavingsEvent.miss_reason``) and the exploration count survive storage, summaries and pruning."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lean_core import CostLedger
from lean_core.ledger_records import SavingsEvent
from lean_core.ledger_store.migrations import LATEST_VERSION, steps
from lean_core.report import LayerSavings, summarize
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

# A schema-3 ledger's content: two cache events (a miss, a hit) and one day of rolled-up cache
# savings (3 events: 1 hit, 2 misses), written with the columns of that schema.
_V3_ROWS = [
    "INSERT INTO meta (key, value) VALUES ('kind', 'lean-inference-ledger'), ('schema_version', '3')",
    "INSERT INTO savings VALUES ('s1', '2026-03-10T12:00:00+00:00', 'cache', 'gpt-4o', NULL, 0, 0, 0, 0, 0, "
    "NULL, 'acme', NULL)",
    "INSERT INTO savings VALUES ('s2', '2026-03-10T12:01:00+00:00', 'cache', 'gpt-4o', NULL, 100, 0, 20, 0, 1, "
    "'0.0005', 'acme', NULL)",
    "INSERT INTO rollup_savings VALUES ('2026-03-01', 'acme', 'cache', 'gpt-4o', '', 1, 3, 1, 2, 50, 10, "
    "'0.0002', 0, 0, '0')",
]

Opener = Callable[[bool], CostLedger]


@pytest.fixture(params=["sqlite", "postgresql"])
def schema3_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Writes a schema-3 ledger on the store under test; yields ``open(read_only)``."""
    opened: list[CostLedger] = []
    if request.param == "sqlite":
        path = tmp_path / "v3.sqlite3"
        with sqlite3.connect(path) as conn:
            for version in (1, 2, 3):
                for statement in steps("sqlite")[version]:
                    conn.execute(statement)
            for statement in _V3_ROWS:
                conn.execute(statement)

        def opener(read_only: bool) -> CostLedger:
            opened.append(CostLedger(path, read_only=read_only))
            return opened[-1]
    else:
        import psycopg

        from lean_core.ledger_store.postgres import PostgresLedgerStore

        dsn = request.getfixturevalue("postgres_dsn")
        schema = f"v3_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(dsn, autocommit=True, options=f"-c search_path={schema}") as pg:
            pg.execute(f"CREATE SCHEMA {schema}")
            for version in (1, 2, 3):
                for statement in steps("postgresql")[version]:
                    pg.execute(statement)
            for statement in _V3_ROWS:
                pg.execute(statement)

        def opener(read_only: bool) -> CostLedger:
            opened.append(CostLedger(PostgresLedgerStore(dsn, schema=schema, read_only=read_only)))
            return opened[-1]
    yield opener
    for ledger in opened:
        ledger.close()


def _cache_layer(ledger: CostLedger) -> LayerSavings:
    (layer,) = [layer for layer in ledger.summary().by_layer if layer.layer == "cache"]
    return layer


def test_a_schema3_ledger_is_read_as_it_is_then_migrated_to_keep_miss_reasons(schema3_ledger: Opener) -> None:
    old = schema3_ledger(True)
    assert old.store.schema_version == 3
    assert [(e.cache_hit, e.miss_reason) for e in old.savings()] == [(False, None), (True, None)]
    before = _cache_layer(old)
    assert (before.events, before.cache_hits, before.cache_misses, before.cache_explorations) == (5, 2, 3, 0)
    old.close()
    assert schema3_ledger(True).store.schema_version == 3  # read-only opening migrated nothing

    ledger = schema3_ledger(False)
    assert ledger.store.schema_version == LATEST_VERSION == 4
    assert {"miss_reason"} <= ledger.store.columns("savings")
    assert {"cache_explorations"} <= ledger.store.columns("rollup_savings")
    assert _cache_layer(ledger) == before  # the migration changed no total
    ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False, miss_reason="exploration",
                               tenant="acme"))
    ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False, miss_reason="vetoed", tenant="acme"))
    assert [e.miss_reason for e in ledger.savings()] == [None, None, "exploration", "vetoed"]
    ledger.prune(max_records=0)  # every record into the roll-ups: the exploration count stays
    assert ledger.savings() == []
    after = _cache_layer(ledger)
    assert (after.events, after.cache_misses, after.cache_explorations) == (7, 5, 1)
    assert schema3_ledger(True).store.schema_version == LATEST_VERSION


def test_live_summary_counts_explorations_like_the_records(schema3_ledger: Opener) -> None:
    """PostgreSQL sums live records in SQL (ledger_store/_summary.aggregate_part): explorations too."""
    ledger = schema3_ledger(False)
    for reason in ("exploration", "exploration", "no_entry"):
        ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False, miss_reason=reason))
    records = summarize(ledger.calls(), ledger.savings())
    (expected,) = [layer for layer in records.by_layer if layer.layer == "cache"]
    assert expected.cache_explorations == 2
    assert _cache_layer(ledger).cache_explorations == 2  # live records only: the roll-up day counted none
