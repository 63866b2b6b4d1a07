from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from lean_core import (
    CostLedger,
    InvalidParameterError,
    LedgerCorruptError,
    LedgerPathError,
    TokenUsage,
)

REPO = Path(__file__).resolve().parents[2]


def _usage(i: int = 0) -> TokenUsage:
    return TokenUsage(input_tokens=1_000 + i, cached_input_tokens=200, output_tokens=50, reasoning_tokens=5)


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with CostLedger(path) as ledger:
        written = ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(), latency_s=0.25,
                                     tenant="acme", tags=["rag", "eu"], run_id="run-1")
        event = ledger.record_savings(layer="cache", model="gpt-4o", provider="openai",
                                      input_tokens_before=1_000, output_tokens_before=50, cache_hit=True,
                                      tenant="acme")
    with CostLedger(path, read_only=True) as ledger:
        assert ledger.calls() == [written]
        assert ledger.savings() == [event]
        assert ledger.calls(tenant="other") == []


def test_threads_and_tasks_lose_nothing(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "ledger.sqlite3")

    def writer(n: int) -> None:
        for i in range(100):
            ledger.record_call(model="gpt-4o-mini", provider="openai", usage=_usage(i), tenant=f"t{n}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]

    async def tasks() -> None:
        await asyncio.gather(*(ledger.arecord_call(model="gpt-4o", provider="openai", usage=_usage(i),
                                                   tenant="async") for i in range(150)),
                             *(ledger.arecord_savings(layer="output", model="gpt-4o", provider="openai",
                                                      output_tokens_before=100, output_tokens_after=40)
                               for _ in range(50)))

    for t in threads:
        t.start()
    asyncio.run(tasks())
    for t in threads:
        t.join()
    calls = ledger.calls()
    assert len(calls) == 6 * 100 + 150
    assert len({c.id for c in calls}) == len(calls)
    assert len(ledger.calls(tenant="async")) == 150
    assert len(ledger.savings()) == 50
    ledger.close()


def test_two_processes_share_one_ledger(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    CostLedger(path).close()
    code = ("import sys; from lean_core import CostLedger, TokenUsage; l = CostLedger(sys.argv[1]); "
            "[l.record_call(model='gpt-4o', usage=TokenUsage(input_tokens=i)) for i in range(200)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with CostLedger(path, read_only=True) as ledger:
        assert len(ledger.calls()) == 400


def test_killed_writer_leaves_an_intact_ledger(tmp_path: Path) -> None:
    path = tmp_path / "killed.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "tests.support.ledger_writer", str(path)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # let it write mid-stream; the kill lands at an arbitrary point of a write
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    with CostLedger(path) as ledger:  # reopens for writing: recovery of the WAL is clean
        calls = ledger.calls()
        assert len(calls) >= 50
        assert all(c.priced and c.cost_usd is not None for c in calls)
        assert len(ledger.savings()) >= 17
        ledger.record_call(model="gpt-4o", usage=_usage())
        assert len(ledger.calls()) == len(calls) + 1


def test_garbage_file_is_reported_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    with pytest.raises(LedgerCorruptError, match="left untouched") as info:
        CostLedger(path)
    assert isinstance(info.value, ValueError)
    with pytest.raises(LedgerCorruptError):
        CostLedger(path, read_only=True)
    assert path.read_bytes() == garbage


def test_damaged_pages_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with CostLedger(path) as ledger:
        for i in range(400):
            ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(i), tenant="x" * 50)
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[5 * 4096: 7 * 4096] = os.urandom(2 * 4096)  # smash two pages in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerCorruptError, match=r"sqlite3 .* \.recover"):
        CostLedger(path)
    assert path.read_bytes() == bytes(data)


def test_foreign_sqlite_file_is_not_adopted(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(LedgerCorruptError, match="not a lean-inference ledger"):
        CostLedger(path)
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"customers"}


_READ_ONLY_SCRIPT = """
import os, sys, json
from lean_core import CostLedger, LedgerPathError, TokenUsage
import lean_core.report, sqlite3, platformdirs
if os.geteuid() == 0:  # root ignores permissions: drop to nobody so the directory really is read-only
    os.setgid(65534); os.setuid(65534)
new_path, old_path = sys.argv[1], sys.argv[2]
out = {}
try:
    CostLedger(new_path)
except LedgerPathError as exc:
    out["new"] = str(exc)
try:
    CostLedger(old_path).record_call(model="gpt-4o", usage=TokenUsage(input_tokens=1))
except LedgerPathError as exc:
    out["old_write"] = str(exc)
with CostLedger(old_path, read_only=True) as ledger:
    out["old_calls"] = len(ledger.calls())
print(json.dumps(out))
"""


def test_read_only_directory_gives_a_clear_error_and_keeps_records() -> None:
    # Not tmp_path: pytest's base temp dir is private to its owner, and the check may run as nobody.
    base = Path(tempfile.mkdtemp(prefix="lean-ro-"))
    base.chmod(0o755)
    locked = base / "locked"
    locked.mkdir()
    old = locked / "old.sqlite3"
    try:
        with CostLedger(old) as ledger:
            for i in range(5):
                ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(i))
        old.chmod(0o444)
        locked.chmod(0o555)
        out = subprocess.run(
            [sys.executable, "-c", _READ_ONLY_SCRIPT, str(locked / "sub" / "new.sqlite3"), str(old)],
            capture_output=True, text=True, cwd="/", env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert "cannot create the ledger directory" in result["new"]
        assert "cannot" in result["old_write"] and "old.sqlite3" in result["old_write"]
        assert result["old_calls"] == 5
        with CostLedger(old, read_only=True) as ledger:
            assert len(ledger.calls()) == 5
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base)


def test_invalid_records_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with CostLedger(tmp_path / "l.sqlite3") as ledger:
        ledger.record_call(model="gpt-4o", usage=_usage())
        with pytest.raises(InvalidParameterError, match="layer"):
            ledger.record_savings(layer="magic", model="gpt-4o")  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError, match="input_tokens_before"):
            ledger.record_savings(layer="compression", model="gpt-4o", input_tokens_before=-3)
        with pytest.raises(InvalidParameterError, match="usage"):
            ledger.record_call(model="gpt-4o", usage={"input_tokens": 3})  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError, match="tags"):
            ledger.record_call(model="gpt-4o", usage=_usage(), tags="rag")
        with pytest.raises(InvalidParameterError, match="model"):
            ledger.record_call(model="", usage=_usage())
        assert len(ledger.calls()) == 1 and ledger.savings() == []


def test_read_only_ledger_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    CostLedger(path).close()
    with CostLedger(path, read_only=True) as ledger, pytest.raises(LedgerPathError, match="read-only"):
        ledger.record_call(model="gpt-4o", usage=_usage())


def test_exports_json_and_csv(tmp_path: Path) -> None:
    with CostLedger(tmp_path / "l.sqlite3") as ledger:
        ledger.record_call(model="gpt-4o", provider="openai", usage=_usage(), tenant="a", tags=["x"])
        ledger.record_call(model="mystery-model", usage=TokenUsage(input_tokens=5, source="estimate"))
        ledger.record_savings(layer="compression", model="gpt-4o", provider="openai",
                              input_tokens_before=900, input_tokens_after=300)
        data = json.loads(ledger.export_json(tmp_path / "l.json").read_text())
        rows = list(csv.DictReader(ledger.export_csv(tmp_path / "l.csv").open()))
    assert len(data["calls"]) == 2 and len(data["savings"]) == 1
    assert Decimal(data["calls"][0]["cost_usd"]) > 0
    assert data["calls"][1]["cost_usd"] is None and data["calls"][1]["usage"]["source"] == "estimate"
    assert [r["record_type"] for r in rows] == ["call", "call", "savings"]
    assert rows[2]["layer"] == "compression" and rows[2]["input_tokens_before"] == "900"


def test_summary_attributes_savings_to_layers() -> None:
    with CostLedger(":memory:") as ledger:
        ledger.record_call(model="gpt-4o", provider="openai", usage=TokenUsage(input_tokens=1_000, output_tokens=100))
        ledger.record_savings(layer="compression", model="gpt-4o", provider="openai",
                              input_tokens_before=3_000, input_tokens_after=1_000)
        ledger.record_savings(layer="cache", model="gpt-4o", provider="openai",
                              input_tokens_before=1_000, output_tokens_before=100, cache_hit=True)
        ledger.record_savings(layer="cache", model="gpt-4o", provider="openai", cache_hit=False)
        summary = ledger.summary()
    actual = Decimal("0.0035")  # 1,000 in at $2.50/M + 100 out at $10/M
    assert summary.actual_cost_usd == actual
    by_layer = {layer.layer: layer for layer in summary.by_layer}
    assert by_layer["compression"].cost_saved_usd == Decimal("0.005")
    assert by_layer["cache"].cost_saved_usd == actual
    assert (by_layer["cache"].cache_hits, by_layer["cache"].cache_misses) == (1, 1)
    assert summary.baseline_cost_usd == actual + Decimal("0.005") + actual
    assert summary.cost_reduction == pytest.approx(float((Decimal("0.005") + actual) / summary.baseline_cost_usd))
