"""Fast, offline checks of the ledger's store layer on SQLite: options, retention, roll-ups,
the database-summed summary, listeners and the CLI's time flags (both stores: tests/integration)."""

from __future__ import annotations

import argparse
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lean_cli.ledger_commands import duration, point_in_time
from lean_core import CostLedger, InvalidParameterError, TokenUsage
from lean_core import _ledger_sql as sql
from lean_core.ledger_store import LedgerFilter, RetentionPolicy
from lean_core.ledger_store._summary import aggregate_part

T0 = datetime(2026, 5, 1, 9, tzinfo=UTC)


def _fill(ledger: CostLedger) -> None:
    for i in range(12):
        stamp = T0 + timedelta(hours=7 * i)
        tenant = ("acme", "beta", None)[i % 3]
        if i % 4 == 3:
            local = ledger.record_call(model="local-model", usage=TokenUsage(input_tokens=300, output_tokens=9),
                                       tenant=tenant, timestamp=stamp)
            ledger.record_savings(layer="compression", model="gpt-4o-mini", provider="openai",
                                  input_tokens_before=900, input_tokens_after=300, tenant=tenant, call_id=local.id,
                                  timestamp=stamp)
            continue
        if i % 5 == 0:  # unpriced, no savings of its own: left out, which makes unlinked savings subtle
            ledger.record_call(model="other-local", usage=TokenUsage(input_tokens=50, output_tokens=5), tenant=tenant,
                               timestamp=stamp)
        call = ledger.record_call(model="gpt-4o", provider="openai",
                                  usage=TokenUsage(input_tokens=1_000 + i, output_tokens=30), tenant=tenant,
                                  timestamp=stamp)
        ledger.record_savings(layer="output", model="gpt-4o", provider="openai", output_tokens_before=90,
                              output_tokens_after=30, tenant=tenant, call_id=call.id, timestamp=stamp)
        ledger.record_savings(layer="cache", model=("gpt-4o", "claude-3-5-haiku")[i % 2], input_tokens_before=400,
                              cache_hit=i % 2 == 0, tenant=tenant, timestamp=stamp)


@pytest.mark.parametrize("flt", [LedgerFilter(), LedgerFilter(tenant="acme"), LedgerFilter(layer="cache"),
                                 LedgerFilter(since=T0 + timedelta(days=1), until=T0 + timedelta(days=2))])
def test_database_summed_summary_equals_the_record_summary(flt: LedgerFilter) -> None:
    with CostLedger(":memory:") as ledger:
        _fill(ledger)
        store = ledger.store

        def reader(table: str):  # type: ignore[no-untyped-def]
            return lambda condition, params: ledger._read(table, flt, skip_bad_rows=False, condition=condition,
                                                          params=params)[0]

        summed = aggregate_part(store, flt, pricer=ledger._pricer, read_calls=reader("calls"),
                                read_savings=reader("savings"), skipped_rows=lambda: 0).summary
        assert summed == ledger.summary(tenant=flt.tenant, since=flt.since, until=flt.until, layer=flt.layer)
        assert summed.left_out_calls > 0 or flt.layer or flt.tenant or flt.since  # the hard case is covered


def test_prune_rolls_up_and_keeps_damaged_rows(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with CostLedger(path) as ledger:
        _fill(ledger)
        before = ledger.summary()
    with sqlite3.connect(path) as raw:  # one call older than all, with a cost that is not a decimal
        columns = ", ".join(sql.CALL_COLUMNS)
        cells = columns.replace("id, ts,", "'bad', '2026-04-01T00:00:00+00:00',", 1).replace(" cost_usd,", " 'oops',")
        raw.execute(f"INSERT INTO calls ({columns}) SELECT {cells} FROM calls WHERE priced = 1 LIMIT 1")
    with CostLedger(path) as ledger:
        result = ledger.prune(max_records=2)
        assert result.damaged_rows_kept == 1
        # The newest 2, plus the call that shares the oldest kept timestamp (ties are kept).
        assert result.calls_pruned == 12 and len(ledger.calls(skip_bad_rows=True)) == 3
        after = ledger.summary()
        assert after.skipped_rows == 1
        assert after.model_copy(update={"skipped_rows": 0}) == before
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM calls WHERE id = 'bad'").fetchone()[0] == 1
        assert raw.execute("SELECT count(*) FROM rollup_calls").fetchone()[0] > 0


def test_retention_policy_and_filter_validate() -> None:
    for kwargs, name in (({}, "older_than"), ({"older_than": timedelta(0)}, "older_than"),
                         ({"older_than": 30}, "older_than"), ({"max_records": -1}, "max_records"),
                         ({"max_records": True}, "max_records")):
        with pytest.raises(InvalidParameterError, match=name):
            RetentionPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="layer"):
        LedgerFilter(layer="magic")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="tenant"):
        LedgerFilter(tenant="")
    with CostLedger(":memory:") as ledger, pytest.raises(InvalidParameterError, match="policy"):
        ledger.prune(timedelta(days=1), policy=RetentionPolicy(max_records=1))


def test_listeners_are_checked() -> None:
    with pytest.raises(InvalidParameterError, match="listeners"):
        CostLedger(":memory:", listeners=[object()])  # type: ignore[list-item]
    with pytest.raises(InvalidParameterError, match="listeners"):
        CostLedger(":memory:", listeners=print)  # type: ignore[arg-type]


def test_cli_time_flags() -> None:
    assert duration("30d") == timedelta(days=30) and duration("12h") == timedelta(hours=12)
    assert duration("2w") == timedelta(weeks=2)
    for bad in ("0d", "30", "d", "1y", "-3d"):
        with pytest.raises(argparse.ArgumentTypeError):
            duration(bad)
    assert point_in_time("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC)
    assert point_in_time("2026-01-31T12:00:00+02:00").utcoffset() == timedelta(hours=2)
    ago = point_in_time("7d")
    assert abs((datetime.now(UTC) - ago) - timedelta(days=7)) < timedelta(seconds=5)
    with pytest.raises(argparse.ArgumentTypeError, match="ISO date"):
        point_in_time("last tuesday")
