"""Damaged ledger files: seeded random garbage written into real ledgers (the main file, and with a
WAL present), and bad values written into single rows.

Every read either succeeds with valid records, skips and counts bad rows (reports), or raises
LedgerCorruptError naming the file; never a raw sqlite3, pydantic or decoding error, and
``lean-inference report`` never prints a traceback.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lean_cli import main
from lean_core import CostLedger, TokenUsage
from lean_core.errors import LedgerCorruptError
from lean_core.ledger_records import CallRecord, SavingsEvent
from lean_core.report import render_table

pytestmark = pytest.mark.integration

CALLS = 120
SAVINGS = 40
TRIALS = 60  # per layout
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Pristine:
    """A recorded ledger's files and the records that went in."""

    files: dict[str, bytes]
    """File suffix ("" for the main file, "-wal") to its bytes."""
    calls: dict[str, CallRecord]
    savings: dict[str, SavingsEvent]


def _record(ledger: CostLedger, first: int, last: int, calls: dict[str, CallRecord],
            savings: dict[str, SavingsEvent]) -> None:
    for i in range(first, last):
        model = "gpt-4o-mini" if i % 4 else "local-model"
        call = ledger.record_call(model=model, provider="openai" if i % 4 else None,
                                  usage=TokenUsage(input_tokens=200 + i, cached_input_tokens=i % 7,
                                                   output_tokens=20 + i % 9),
                                  latency_s=0.25 + i / 100, tenant=f"t{i % 3}", tags=("rag", f"n{i}"),
                                  run_id=f"run-{i}", timestamp=START + timedelta(seconds=i))
        calls[call.id] = call
        if i % 3 == 0:
            event = ledger.record_savings(layer=("compression", "template", "output")[i // 3 % 3],
                                          model="gpt-4o-mini", provider="openai", input_tokens_before=900 + i,
                                          input_tokens_after=200 + i, tenant=f"t{i % 3}", call_id=call.id,
                                          cache_hit=None, timestamp=START + timedelta(seconds=i))
            savings[event.id] = event


@pytest.fixture(scope="module")
def checkpointed(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """Closed after recording: every row is in the main file."""
    path = tmp_path_factory.mktemp("main") / "ledger.sqlite3"
    calls: dict[str, CallRecord] = {}
    savings: dict[str, SavingsEvent] = {}
    with CostLedger(path) as ledger:
        _record(ledger, 0, CALLS, calls, savings)
    assert not Path(f"{path}-wal").exists()
    return Pristine(files={"": path.read_bytes()}, calls=calls, savings=savings)


@pytest.fixture(scope="module")
def with_wal(tmp_path_factory: pytest.TempPathFactory) -> Pristine:
    """Half the rows checkpointed into the main file, half only in the WAL (copied while open)."""
    path = tmp_path_factory.mktemp("wal") / "ledger.sqlite3"
    calls: dict[str, CallRecord] = {}
    savings: dict[str, SavingsEvent] = {}
    with CostLedger(path) as ledger:
        _record(ledger, 0, CALLS // 2, calls, savings)
    with CostLedger(path) as ledger:
        _record(ledger, CALLS // 2, CALLS, calls, savings)
        # Copied while the ledger is open and idle: closing would checkpoint and delete the WAL.
        files = {"": path.read_bytes(), "-wal": Path(f"{path}-wal").read_bytes()}
    assert len(files["-wal"]) > 4096
    return Pristine(files=files, calls=calls, savings=savings)


def _damaged(pristine: Pristine, rng: random.Random, target: str) -> dict[str, bytes]:
    """Garbage at 1-4 random offsets of ``target``, lengths from 1 byte to a few pages."""
    files = dict(pristine.files)
    data = bytearray(files[target])
    for _ in range(rng.randint(1, 4)):
        length = rng.randint(1, rng.choice((4, 64, 512, 4096)))
        offset = rng.randrange(len(data))
        data[offset:offset + length] = rng.randbytes(min(length, len(data) - offset))
    files[target] = bytes(data)
    return files


def _write(files: dict[str, bytes], directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    path = directory / "ledger.sqlite3"
    for suffix, data in files.items():
        Path(f"{path}{suffix}").write_bytes(data)
    return path


def _strict(path: Path, pristine: Pristine, *, exact: bool) -> str:
    """Writable open and strict reads: valid records or LedgerCorruptError (anything else propagates)."""
    try:
        with CostLedger(path) as ledger:
            calls, savings = ledger.calls(), ledger.savings()
    except LedgerCorruptError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return "corrupt"
    assert len(calls) <= len(pristine.calls) and len(savings) <= len(pristine.savings)
    assert all(isinstance(c, CallRecord) for c in calls) and all(isinstance(e, SavingsEvent) for e in savings)
    # WAL frames are checksummed: SQLite drops a damaged frame and those after it (as for a write
    # torn by a crash, which it cannot tell apart), and never reads one back altered.
    if exact:
        assert all(pristine.calls.get(c.id) == c for c in calls)
        assert all(pristine.savings.get(e.id) == e for e in savings)
    return "read"


def _report(path: Path, pristine: Pristine) -> str:
    """Read-only report: a summary (bad rows skipped and counted) or LedgerCorruptError; file untouched."""
    before = path.read_bytes()
    try:
        with CostLedger(path, read_only=True) as ledger:
            summary = ledger.summary()
    except LedgerCorruptError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        outcome = "corrupt"
    else:
        assert summary.calls + summary.skipped_rows <= len(pristine.calls) + len(pristine.savings)
        assert summary.calls <= len(pristine.calls)
        outcome = "skipped" if summary.skipped_rows else "read"
    assert path.read_bytes() == before, "a read-only report modified the ledger"
    return outcome


@pytest.mark.parametrize("layout", ["checkpointed", "with_wal"])
def test_random_garbage_never_gives_a_raw_error(layout: str, request: pytest.FixtureRequest,
                                                tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pristine: Pristine = request.getfixturevalue(layout)
    targets = ("",) if layout == "checkpointed" else ("", "-wal")
    rng = random.Random(2201 if layout == "checkpointed" else 2202)
    outcomes: Counter[tuple[str, str, str]] = Counter()
    raw: list[str] = []
    cli_cases: dict[str, dict[str, bytes]] = {}
    for trial in range(TRIALS):
        target = targets[trial % len(targets)]
        files = _damaged(pristine, rng, target)
        try:
            report = _report(_write(files, tmp_path / "ro"), pristine)
            strict = _strict(_write(files, tmp_path / "rw"), pristine, exact=target == "-wal")
        except Exception as exc:  # collected, so one run shows every raw error
            raw.append(f"trial {trial} ({target or 'main'}): {type(exc).__name__}: {exc}"[:300])
            continue
        outcomes[(target, report, strict)] += 1
        cli_cases.setdefault(report, files)
    assert raw == [], raw
    # The trials reach every path: intact reads, skipped rows and detected damage.
    reports = Counter(report for (_, report, _), n in outcomes.items() for _ in range(n))
    assert reports["corrupt"] >= 5 and reports["read"] >= 3, outcomes
    if layout == "checkpointed":
        assert reports["skipped"] >= 1, outcomes
    # The same damage through the command line: a table (rc 0) or one clear line (rc 2).
    for expected, files in cli_cases.items():
        path = _write(files, tmp_path / f"cli-{expected}")
        code = main(["report", "--ledger", str(path), "--png", str(tmp_path / f"{expected}.png")])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        if expected == "corrupt":
            assert code == 2 and err.count("\n") == 1 and str(path) in err and "damaged" in err, err
        else:
            assert code == 0 and "baseline" in out, err
            assert ("damaged ledger row" in out) == (expected == "skipped"), out


# -- bad values in one row ------------------------------------------------------------------------
BAD_CELLS = [
    ("calls", "cost_usd", "'12.3.4'"),
    ("calls", "cost_usd", "'NaN'"),
    ("calls", "ts", "'yesterday'"),
    ("calls", "ts", "'2026-01-05T09:00:00'"),  # no time zone
    ("calls", "tags", "'[\"rag\",'"),
    ("calls", "tags", "'[1, 2]'"),
    ("calls", "input_tokens", "-5"),
    ("calls", "input_tokens", "'many'"),
    ("calls", "model", "CAST(x'c3283a' AS TEXT)"),  # not UTF-8
    ("calls", "usage_source", "'guessed'"),
    ("calls", "priced", "7"),
    ("calls", "latency_s", "-1.5"),
    ("savings", "layer", "'magic'"),
    ("savings", "cost_saved_usd", "'lots'"),
    ("savings", "cache_hit", "2"),
    ("savings", "id", "CAST(x'ff' AS TEXT)"),
]


def _one_bad_row(path: Path, table: str, column: str, value: str) -> None:
    with CostLedger(path) as ledger:
        _record(ledger, 0, 6, {}, {})
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f"UPDATE {table} SET {column} = {value} WHERE rowid = 2")
    conn.close()


@pytest.mark.parametrize(("table", "column", "value"), BAD_CELLS)
def test_a_bad_value_is_named_strictly_and_skipped_in_reports(tmp_path: Path, table: str, column: str,
                                                               value: str) -> None:
    path = tmp_path / "ledger.sqlite3"
    _one_bad_row(path, table, column, value)
    read = CostLedger.calls if table == "calls" else CostLedger.savings
    with CostLedger(path, read_only=True) as ledger:
        with pytest.raises(LedgerCorruptError) as info:
            read(ledger)
        message = str(info.value)
        assert str(path) in message and f"table {table}, rowid 2" in message and column in message
        assert "skip_bad_rows" in message and ".damaged" in message  # what to do
        assert len(read(ledger, skip_bad_rows=True)) == (5 if table == "calls" else 1)
        summary = ledger.summary()
        assert summary.skipped_rows == 1
        assert summary.calls == (5 if table == "calls" else 6)
        assert "skipped: 1 damaged ledger row" in render_table(summary)
        with pytest.raises(LedgerCorruptError):
            ledger.summary(skip_bad_rows=False)


def test_report_command_skips_counts_and_exports_what_is_readable(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ledger.sqlite3"
    _one_bad_row(path, "calls", "cost_usd", "'garbage'")
    out_json, out_csv = tmp_path / "salvage.json", tmp_path / "raw.csv"
    code = main(["report", "--ledger", str(path), "--png", str(tmp_path / "c.png"), "--json", str(out_json),
                 "--csv", str(out_csv)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "skipped: 1 damaged ledger row" in out
    payload = json.loads(out_json.read_text())
    assert (len(payload["calls"]), len(payload["savings"]), payload["skipped_rows"]) == (5, 2, 1)
    assert "garbage" in out_csv.read_text()  # the raw export keeps the bad row as stored


def test_report_on_a_file_that_is_not_a_ledger_is_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ledger.sqlite3"
    with CostLedger(path) as ledger:
        _record(ledger, 0, 30, {}, {})
    data = bytearray(path.read_bytes())
    data[4096:4096 + 2048] = random.Random(7).randbytes(2048)  # a whole b-tree page of garbage
    path.write_bytes(bytes(data))
    assert main(["report", "--ledger", str(path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("lean-inference report: the ledger") and err.count("\n") == 1
    assert "damaged" in err and "mv " in err and ".recover" in err
    assert "Traceback" not in out + err
    with pytest.raises(LedgerCorruptError, match="damaged"):
        CostLedger(path)
