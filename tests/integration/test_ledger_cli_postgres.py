"""``lean-inference report`` and ``lean-inference ledger prune`` on both stores."""

from __future__ import annotations

import csv
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lean_cli.app import main
from lean_core import CostLedger, TokenUsage
from tests.integration.postgres_fixture import postgres_dsn  # noqa: F401

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def _fill(ledger: CostLedger) -> None:
    for age_days, tenant in ((40, "acme"), (40, "beta"), (1, "acme"), (1, "beta")):
        stamp = NOW - timedelta(days=age_days)
        call = ledger.record_call(model="gpt-4o", provider="openai", usage=TokenUsage(input_tokens=1_000, output_tokens=20),
                                  tenant=tenant, timestamp=stamp)
        ledger.record_savings(layer="compression", model="gpt-4o", provider="openai", input_tokens_before=2_000,
                              input_tokens_after=1_000, tenant=tenant, call_id=call.id, timestamp=stamp)
        ledger.record_savings(layer="cache", model="gpt-4o", provider="openai", input_tokens_before=500,
                              cache_hit=True, tenant=tenant, timestamp=stamp)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_source(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        source = str(tmp_path / "cli.sqlite3")
    else:
        import psycopg

        source = request.getfixturevalue("postgres_dsn")
        with psycopg.connect(source, autocommit=True) as conn:  # the URL form uses the default schema
            conn.execute("DROP SCHEMA IF EXISTS lean_ledger CASCADE")
    with CostLedger(source) as ledger:
        _fill(ledger)
    return source


def test_report_filters_and_exports(ledger_source: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, out_json, out_csv = tmp_path / "r.png", tmp_path / "r.json", tmp_path / "r.csv"
    since = (NOW - timedelta(days=7)).date().isoformat()
    code = main(["report", "--ledger", ledger_source, "--since", since, "--tenant", "acme", "--layer", "cache",
                 "--png", str(png), "--json", str(out_json), "--csv", str(out_csv)])
    assert code == 0
    text = capsys.readouterr().out
    assert "calls 1 |" in text and "compression" not in text
    assert png.stat().st_size > 1_000
    payload = json.loads(out_json.read_text())
    assert len(payload["calls"]) == 1 and [e["layer"] for e in payload["savings"]] == ["cache"]
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["record_type"] for r in rows} == {"call", "savings"} and {r["tenant"] for r in rows} == {"acme"}


def test_prune_command_keeps_report_totals(ledger_source: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with CostLedger(ledger_source, read_only=True) as ledger:
        before = ledger.summary()
    assert main(["ledger", "prune", "--ledger", ledger_source, "--older-than", "30d"]) == 0
    assert "pruned 2 calls, 4 savings events" in capsys.readouterr().out
    with CostLedger(ledger_source, read_only=True) as ledger:
        assert len(ledger.calls()) == 2
        assert ledger.summary() == before
    assert main(["report", "--ledger", ledger_source, "--png", str(tmp_path / f"{uuid.uuid4().hex}.png")]) == 0
    assert "calls 4 |" in capsys.readouterr().out


def test_bad_flags_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ledger", "prune", "--ledger", "x.sqlite3", "--older-than", "30 days"],
                 ["report", "--since", "yesterday"], ["report", "--layer", "magic"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "expected a positive duration" in capsys.readouterr().err
    assert main(["ledger", "prune", "--ledger", "/tmp/never-created-ledger.sqlite3"]) == 2
    assert "older_than" in capsys.readouterr().err
