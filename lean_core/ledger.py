"""The cost ledger: every LLM call's tokens and cost, and what each layer saved.

The embedded default is one SQLite file in WAL mode. Every record is its own committed
transaction, so a process killed mid-stream loses at most the record it was writing and never
corrupts the file; other processes may write to the same file at the same time.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from lean_core import _ledger_sql as sql
from lean_core._validation import check_seconds, check_tags, check_text, check_time
from lean_core.errors import InvalidParameterError, LedgerCorruptError, LedgerPathError
from lean_core.ledger_records import LAYERS, CallRecord, OutputLengthRecord, SavingsEvent
from lean_core.pricing import PriceQuote, price_usage
from lean_core.usage import TokenUsage

if TYPE_CHECKING:
    from lean_core.report import LedgerSummary

__all__ = ["CostLedger", "default_ledger_path"]

Pricer = Callable[..., PriceQuote]
_R = TypeVar("_R")


def default_ledger_path() -> Path:
    """``LEAN_INFERENCE_LEDGER`` or ``<user data dir>/lean-inference/ledger.sqlite3``."""
    env = os.environ.get("LEAN_INFERENCE_LEDGER")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lean-inference", appauthor=False)) / "ledger.sqlite3"


class CostLedger:
    """Records LLM calls and per-layer savings; thread-safe, asyncio-safe, multi-process safe.

    A damaged file is detected when it is opened (``PRAGMA quick_check``, about 5 ms for 10k
    calls) or when a read meets a bad page or row, and raised as
    :class:`~lean_core.errors.LedgerCorruptError` naming the file and how to recover; the file is
    never modified. :meth:`summary` skips bad rows and counts them
    (``LedgerSummary.skipped_rows``); :meth:`calls` and friends raise unless ``skip_bad_rows``.

    Args:
        path: SQLite file (created with its parent directory), ``":memory:"`` for a throwaway
            ledger, or None for :func:`default_ledger_path`. Not empty, not a directory.
        read_only: open an existing ledger for reports only (works in read-only directories).
        pricer: prices a :class:`TokenUsage` for (model, provider); defaults to genai-prices.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        pricer: Pricer = price_usage,
    ) -> None:
        if not isinstance(read_only, bool):
            raise InvalidParameterError("read_only", allowed="True or False", received=read_only)
        if not callable(pricer):
            raise InvalidParameterError("pricer", allowed="a callable (usage, model, *, provider, at) -> PriceQuote",
                                        received=pricer)
        self.path: Path | None = _ledger_path(path)
        self.read_only = read_only
        self._pricer = pricer
        self._lock = threading.Lock()
        self._conn = self._open()

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.text_factory = sql.text_factory
            conn.executescript(sql.SCHEMA)
            self._write_meta(conn)
            return conn
        if self.read_only:
            return self._open_read_only(self.path)
        return self._open_writable(self.path)

    def _open_writable(self, path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerPathError(f"cannot create the ledger directory {path.parent}: {exc}") from exc
        existed = path.exists() and path.stat().st_size > 0
        try:
            conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerPathError(f"cannot open the ledger {path} for writing: {exc}") from exc
        conn.text_factory = sql.text_factory
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            fresh = True
            if existed:
                self._check_integrity(conn, path)
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    self._check_meta(conn, path)  # before any write: never adopt a foreign file
                    fresh = False
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Every statement is IF NOT EXISTS: an older ledger gains the tables added since.
            conn.executescript(sql.SCHEMA)
            if fresh:
                self._write_meta(conn)
        except LedgerCorruptError:
            conn.close()
            raise
        except sql.DB_ERRORS as exc:
            conn.close()
            if sql.is_path_problem(exc):
                raise LedgerPathError(
                    f"the ledger {path} cannot be written ({exc}); check the directory's permissions, "
                    "or open it with read_only=True to read reports"
                ) from exc
            raise sql.damaged(path, exc) from exc
        return conn

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        if not path.is_file():
            raise LedgerPathError(f"no ledger at {path}")
        last: sql.DbError | None = None
        # A WAL file in a read-only directory cannot get its -shm file: fall back to immutable mode.
        for query in ("mode=ro", "mode=ro&immutable=1"):
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True,
                                       check_same_thread=False, isolation_level=None)
                conn.text_factory = sql.text_factory
                self._check_integrity(conn, path)
                self._check_meta(conn, path)
                return conn
            except LedgerCorruptError:
                if conn is not None:
                    conn.close()
                raise
            except sql.DB_ERRORS as exc:
                if conn is not None:
                    conn.close()
                if not sql.is_path_problem(exc):
                    raise sql.damaged(path, exc) from exc
                last = exc
        raise LedgerPathError(f"cannot open the ledger {path} for reading: {last}")

    @staticmethod
    def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
        # quick_check reads every page (O(file size): ~5 ms for 10k calls, ~60 ms for 100k) but
        # skips the index-content cross-check of integrity_check (~3x slower).
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sql.DB_ERRORS as exc:
            if sql.is_path_problem(exc):
                raise
            raise sql.damaged(path, f"not a readable SQLite ledger: {exc}") from exc
        if rows != [("ok",)]:
            raise sql.damaged(path, "fails its integrity check: " + "; ".join(str(r[0]) for r in rows[:3]))

    @staticmethod
    def _write_meta(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (sql.SCHEMA_VERSION,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('kind', 'lean-inference-ledger')")

    @staticmethod
    def _check_meta(conn: sqlite3.Connection, path: Path) -> None:
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "calls", "savings"} <= tables:
            raise LedgerCorruptError(
                f"{path} is a SQLite file but not a lean-inference ledger (tables: {sorted(tables)}). "
                "It was left untouched; choose another ledger path."
            )
        meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta").fetchall()}
        if meta.get("kind") != "lean-inference-ledger":
            raise LedgerCorruptError(f"{path} is not a lean-inference ledger (meta: {sql.one_line(meta)}). "
                                     "It was left untouched.")
        if meta.get("schema_version") != sql.SCHEMA_VERSION:
            raise LedgerCorruptError(
                f"{path} has ledger schema {meta.get('schema_version')!r}; this version reads "
                f"{sql.SCHEMA_VERSION!r}. It was left untouched."
            )

    # -- writing -----------------------------------------------------------------------------
    def record_call(
        self,
        *,
        model: str,
        usage: TokenUsage,
        provider: str | None = None,
        latency_s: float | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
        run_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> CallRecord:
        """Price and store one LLM call; returns the stored record.

        ``model`` is a non-empty str; ``latency_s`` finite seconds >= 0; ``provider``,
        ``tenant`` and ``run_id`` non-empty str or None; ``tags`` an iterable of str. Anything
        else raises InvalidParameterError naming the parameter, and nothing is stored."""
        record = self._build_call(model=model, usage=usage, provider=provider, latency_s=latency_s,
                                  tenant=tenant, tags=tags, run_id=run_id, timestamp=timestamp)
        self._insert("calls", sql.CALL_COLUMNS, sql.call_row(record))
        return record

    async def arecord_call(
        self,
        *,
        model: str,
        usage: TokenUsage,
        provider: str | None = None,
        latency_s: float | None = None,
        tenant: str | None = None,
        tags: Iterable[str] = (),
        run_id: str | None = None,
        timestamp: datetime | None = None,
    ) -> CallRecord:
        """Async :meth:`record_call`; the SQLite write runs in a worker thread."""
        record = self._build_call(model=model, usage=usage, provider=provider, latency_s=latency_s,
                                  tenant=tenant, tags=tags, run_id=run_id, timestamp=timestamp)
        await asyncio.to_thread(self._insert, "calls", sql.CALL_COLUMNS, sql.call_row(record))
        return record

    def record(self, event: SavingsEvent) -> SavingsEvent:
        """Price ``event`` (what one layer saved on one request) at its model's prices and store it.

        Layers build a :class:`SavingsEvent` and hand it here; the returned copy carries
        ``cost_saved_usd`` (None when the model is unpriced).
        """
        priced = self._price_savings(event)
        self._insert("savings", sql.SAVINGS_COLUMNS, sql.savings_row(priced))
        return priced

    async def arecord(self, event: SavingsEvent) -> SavingsEvent:
        """Async :meth:`record`; the SQLite write runs in a worker thread."""
        priced = self._price_savings(event)
        await asyncio.to_thread(self._insert, "savings", sql.SAVINGS_COLUMNS, sql.savings_row(priced))
        return priced

    def record_savings(self, **fields: Any) -> SavingsEvent:
        """Keyword form of :meth:`record`: ``record_savings(layer=..., model=..., ...)``.

        The keywords are :class:`SavingsEvent`'s fields; prefer building the event and calling
        :meth:`record`, which type checkers can follow.
        """
        return self.record(_savings_event(fields))

    async def arecord_savings(self, **fields: Any) -> SavingsEvent:
        """Async :meth:`record_savings`."""
        return await self.arecord(_savings_event(fields))

    def record_output_length(self, record: OutputLengthRecord) -> OutputLengthRecord:
        """Store one answer's length and query features (the length predictor's history)."""
        self._insert("output_lengths", sql.LENGTH_COLUMNS, sql.length_row(_length_record(record)))
        return record

    async def arecord_output_length(self, record: OutputLengthRecord) -> OutputLengthRecord:
        """Async :meth:`record_output_length`."""
        row = sql.length_row(_length_record(record))
        await asyncio.to_thread(self._insert, "output_lengths", sql.LENGTH_COLUMNS, row)
        return record

    def _build_call(self, *, model: str, usage: TokenUsage, provider: str | None,
                    latency_s: float | None, tenant: str | None, tags: Iterable[str],
                    run_id: str | None, timestamp: datetime | None) -> CallRecord:
        # Checked here, before pricing: the pricer and CallRecord would blame themselves.
        check_text("model", model, optional=False)
        if not isinstance(usage, TokenUsage):
            raise InvalidParameterError("usage", allowed="a lean_core.TokenUsage", received=type(usage).__name__)
        usage = TokenUsage.model_validate(usage.model_dump())  # one built with model_construct is not checked
        check_text("provider", provider, optional=True)
        latency = check_seconds("latency_s", latency_s)
        check_text("tenant", tenant, optional=True)
        checked_tags = check_tags("tags", tags)
        check_text("run_id", run_id, optional=True)
        check_time("timestamp", timestamp)
        quote = self._pricer(usage, model, provider=provider, at=timestamp)
        extra: dict[str, Any] = {}
        if timestamp is not None:
            extra["timestamp"] = timestamp
        return CallRecord(
            model=model, provider=provider, usage=usage, latency_s=latency, priced=quote.priced,
            input_cost_usd=quote.input_cost_usd, output_cost_usd=quote.output_cost_usd,
            cost_usd=quote.total_cost_usd, unpriced_reason=quote.unpriced_reason, tenant=tenant,
            tags=checked_tags, run_id=run_id, **extra,
        )

    def _price_savings(self, event: SavingsEvent) -> SavingsEvent:
        if not isinstance(event, SavingsEvent):
            raise InvalidParameterError("event", allowed="a lean_core.SavingsEvent", received=type(event).__name__)
        stamp = event.timestamp
        before = self._pricer(TokenUsage(input_tokens=event.input_tokens_before,
                                         output_tokens=event.output_tokens_before),
                              event.model, provider=event.provider, at=stamp)
        after = self._pricer(TokenUsage(input_tokens=event.input_tokens_after,
                                        output_tokens=event.output_tokens_after),
                             event.model, provider=event.provider, at=stamp)
        if before.priced and after.priced and before.total_cost_usd is not None \
                and after.total_cost_usd is not None:
            return event.model_copy(update={"cost_saved_usd": before.total_cost_usd - after.total_cost_usd})
        return event.model_copy(update={"cost_saved_usd": None})

    def _insert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        if self.read_only:
            raise LedgerPathError(f"the ledger {self.path} was opened read-only")
        statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self._lock:
            try:
                self._conn.execute(statement, row)  # autocommit: one durable transaction per record
            except sql.DB_ERRORS as exc:
                raise sql.storage_error(self.path, exc, action="write to") from exc
            except (UnicodeEncodeError, OverflowError) as exc:  # a lone surrogate, an int past 64 bits
                raise InvalidParameterError(table, allowed="UTF-8 text and 64-bit integers",
                                            received=sql.one_line(exc)) from None

    # -- reading -----------------------------------------------------------------------------
    def calls(self, *, tenant: str | None = None, since: datetime | None = None,
              until: datetime | None = None, skip_bad_rows: bool = False) -> list[CallRecord]:
        """Stored calls, oldest first, optionally filtered by tenant and time range.

        A damaged row raises LedgerCorruptError naming it, or is left out with ``skip_bad_rows``
        (:meth:`summary` counts them)."""
        return self._read("calls", sql.CALL_COLUMNS, sql.call_from_row, tenant=tenant, since=since,
                          until=until, skip_bad_rows=skip_bad_rows)[0]

    def savings(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None, skip_bad_rows: bool = False) -> list[SavingsEvent]:
        """Stored savings events, oldest first, optionally filtered (bad rows as :meth:`calls`)."""
        return self._read("savings", sql.SAVINGS_COLUMNS, sql.savings_from_row, tenant=tenant, since=since,
                          until=until, skip_bad_rows=skip_bad_rows)[0]

    def output_lengths(self, *, model: str | None = None, tenant: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       skip_bad_rows: bool = False) -> list[OutputLengthRecord]:
        """Stored answer lengths, oldest first (empty for a read-only ledger older than the table)."""
        check_text("model", model, optional=True)
        present = self._query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='output_lengths'", ())
        if not present:
            return []
        records, _ = self._read("output_lengths", sql.LENGTH_COLUMNS, sql.length_from_row, tenant=tenant,
                                since=since, until=until, skip_bad_rows=skip_bad_rows)
        return [r for r in records if model is None or r.model == model]

    def _read(self, table: str, columns: Sequence[str], decode: Callable[[Sequence[Any]], _R], *,
              tenant: str | None, since: datetime | None, until: datetime | None,
              skip_bad_rows: bool) -> tuple[list[_R], int]:
        if not isinstance(skip_bad_rows, bool):
            raise InvalidParameterError("skip_bad_rows", allowed="True or False", received=skip_bad_rows)
        rows = self._select(table, ("rowid", *columns), tenant=tenant, since=since, until=until)
        return sql.decode_rows(rows, decode, table=table, path=self.path, skip_bad_rows=skip_bad_rows)

    def _select(self, table: str, columns: Sequence[str], *, tenant: str | None,
                since: datetime | None, until: datetime | None) -> list[tuple[Any, ...]]:
        check_text("tenant", tenant, optional=True)
        check_time("since", since)
        check_time("until", until)
        where, params = [], []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if since is not None:
            where.append("ts >= ?")
            params.append(sql.ts(since))
        if until is not None:
            where.append("ts < ?")
            params.append(sql.ts(until))
        statement = f"SELECT {', '.join(columns)} FROM {table}"
        if where:
            statement += " WHERE " + " AND ".join(where)
        return self._query(statement + " ORDER BY ts, rowid", params)

    def _query(self, statement: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(statement, params).fetchall()
            except sql.DB_ERRORS as exc:  # a damaged page past quick_check, a lock, an I/O error
                raise sql.storage_error(self.path, exc, action="read") from exc

    def summary(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None, skip_bad_rows: bool = True) -> LedgerSummary:
        """Totals per model and per layer, baseline vs actual cost, compared like with like
        (unpriced calls at their savings' reference prices, or left out: see ``comparison_basis``).

        Damaged rows are left out and counted (``skipped_rows``) unless ``skip_bad_rows=False``."""
        from lean_core.report import summarize

        calls, bad_calls = self._read("calls", sql.CALL_COLUMNS, sql.call_from_row, tenant=tenant, since=since,
                                      until=until, skip_bad_rows=skip_bad_rows)
        savings, bad_savings = self._read("savings", sql.SAVINGS_COLUMNS, sql.savings_from_row, tenant=tenant,
                                          since=since, until=until, skip_bad_rows=skip_bad_rows)
        return summarize(calls, savings, pricer=self._pricer, skipped_rows=bad_calls + bad_savings)

    # -- export ------------------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike[str], *, skip_bad_rows: bool = False) -> Path:
        """Write ``{"calls": [...], "savings": [...], "skipped_rows": n}`` with exact decimal strings.

        ``skip_bad_rows`` exports every readable record of a damaged ledger (a salvage)."""
        out = Path(path)
        calls, bad_calls = self._read("calls", sql.CALL_COLUMNS, sql.call_from_row, tenant=None, since=None,
                                      until=None, skip_bad_rows=skip_bad_rows)
        savings, bad_savings = self._read("savings", sql.SAVINGS_COLUMNS, sql.savings_from_row, tenant=None,
                                          since=None, until=None, skip_bad_rows=skip_bad_rows)
        payload = {
            "calls": [r.model_dump(mode="json") for r in calls],
            "savings": [e.model_dump(mode="json") for e in savings],
            "skipped_rows": bad_calls + bad_savings,
        }
        out.write_text(json.dumps(payload, indent=2))
        return out

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one CSV with a ``record_type`` column (``call`` or ``savings``) and flat fields.

        The cells are written as stored (a damaged text cell with U+FFFD in place of bad bytes)."""
        out = Path(path)
        call_fields = list(sql.CALL_COLUMNS)
        savings_fields = [c for c in sql.SAVINGS_COLUMNS if c not in call_fields]
        header = ["record_type", *call_fields, *savings_fields]
        calls = self._select("calls", sql.CALL_COLUMNS, tenant=None, since=None, until=None)
        savings = self._select("savings", sql.SAVINGS_COLUMNS, tenant=None, since=None, until=None)
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            for row in calls:
                writer.writerow({"record_type": "call", **dict(zip(sql.CALL_COLUMNS, row, strict=True))})
            for row in savings:
                writer.writerow({"record_type": "savings", **dict(zip(sql.SAVINGS_COLUMNS, row, strict=True))})
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> CostLedger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CostLedger(path={str(self.path) if self.path else ':memory:'!r}, read_only={self.read_only})"


def _ledger_path(path: object) -> Path | None:
    """``path`` checked: None means the default, ``":memory:"`` a throwaway ledger (None here)."""
    if path is None:
        path = default_ledger_path()
    if not isinstance(path, str | os.PathLike):
        raise InvalidParameterError("path", allowed="a str or os.PathLike file path, ':memory:' or None",
                                    received=path)
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise InvalidParameterError("path", allowed="a non-empty str file path (no NUL), ':memory:' or None",
                                    received=path)
    if text == ":memory:":
        return None
    if Path(text).is_dir():
        raise InvalidParameterError("path", allowed="a ledger file path, not a directory", received=text)
    return Path(text)


def _length_record(record: object) -> OutputLengthRecord:
    if not isinstance(record, OutputLengthRecord):
        raise InvalidParameterError("record", allowed="a lean_core.OutputLengthRecord",
                                    received=type(record).__name__)
    return record


def _savings_event(fields: dict[str, Any]) -> SavingsEvent:
    """A :class:`SavingsEvent` from ``record_savings`` keywords; a bad layer names the allowed ones."""
    layer = fields.get("layer")
    if layer not in LAYERS:
        raise InvalidParameterError("layer", allowed=f"one of {list(LAYERS)}", received=layer)
    if fields.get("timestamp") is None:
        fields = {k: v for k, v in fields.items() if k != "timestamp"}
    return SavingsEvent(**fields)
