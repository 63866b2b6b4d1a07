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
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lean_core.errors import InvalidParameterError, LedgerCorruptError, LedgerPathError
from lean_core.ledger_records import LAYERS, CallRecord, OutputLengthRecord, SavingsEvent
from lean_core.pricing import PriceQuote, price_usage
from lean_core.usage import TokenUsage

if TYPE_CHECKING:
    from lean_core.report import LedgerSummary

__all__ = ["CostLedger", "default_ledger_path"]

_SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, model TEXT NOT NULL, provider TEXT,
    input_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL, usage_source TEXT NOT NULL, latency_s REAL,
    priced INTEGER NOT NULL, input_cost_usd TEXT, output_cost_usd TEXT, cost_usd TEXT,
    unpriced_reason TEXT, tenant TEXT, tags TEXT NOT NULL, run_id TEXT
);
CREATE TABLE IF NOT EXISTS savings (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, layer TEXT NOT NULL, model TEXT NOT NULL, provider TEXT,
    input_tokens_before INTEGER NOT NULL, input_tokens_after INTEGER NOT NULL,
    output_tokens_before INTEGER NOT NULL, output_tokens_after INTEGER NOT NULL,
    cache_hit INTEGER, cost_saved_usd TEXT, tenant TEXT, call_id TEXT
);
CREATE TABLE IF NOT EXISTS output_lengths (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, model TEXT NOT NULL, feature_version TEXT NOT NULL,
    features TEXT NOT NULL, output_tokens INTEGER NOT NULL, max_tokens INTEGER, finish_reason TEXT,
    tenant TEXT
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts);
CREATE INDEX IF NOT EXISTS savings_ts ON savings (ts);
"""
_CALL_COLUMNS = (
    "id", "ts", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens",
    "output_tokens", "reasoning_tokens", "usage_source", "latency_s", "priced", "input_cost_usd",
    "output_cost_usd", "cost_usd", "unpriced_reason", "tenant", "tags", "run_id",
)
_SAVINGS_COLUMNS = (
    "id", "ts", "layer", "model", "provider", "input_tokens_before", "input_tokens_after",
    "output_tokens_before", "output_tokens_after", "cache_hit", "cost_saved_usd", "tenant", "call_id",
)
_LENGTH_COLUMNS = ("id", "ts", "model", "feature_version", "features", "output_tokens", "max_tokens",
                   "finish_reason", "tenant")
_RECOVERY_HINT = (
    "The file was left untouched. Move it aside and start a new ledger, or salvage what is "
    "readable with: sqlite3 BROKEN.sqlite3 .recover | sqlite3 NEW.sqlite3"
)

Pricer = Callable[..., PriceQuote]


def default_ledger_path() -> Path:
    """``LEAN_INFERENCE_LEDGER`` or ``<user data dir>/lean-inference/ledger.sqlite3``."""
    env = os.environ.get("LEAN_INFERENCE_LEDGER")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lean-inference", appauthor=False)) / "ledger.sqlite3"


class CostLedger:
    """Records LLM calls and per-layer savings; thread-safe, asyncio-safe, multi-process safe.

    Args:
        path: SQLite file (created with its parent directory), ``":memory:"`` for a throwaway
            ledger, or None for :func:`default_ledger_path`.
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
        self.path: Path | None = None if str(path) == ":memory:" else Path(path or default_ledger_path())
        self.read_only = read_only
        self._pricer = pricer
        self._lock = threading.Lock()
        self._conn = self._open()

    # -- opening -----------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        if self.path is None:
            conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            conn.executescript(_SCHEMA)
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
            conn.executescript(_SCHEMA)
            if fresh:
                self._write_meta(conn)
        except LedgerCorruptError:
            conn.close()
            raise
        except sqlite3.OperationalError as exc:
            conn.close()
            message = str(exc).lower()
            if "readonly" in message or "unable to open" in message or "disk i/o" in message:
                raise LedgerPathError(
                    f"the ledger {path} cannot be written ({exc}); check the directory's permissions, "
                    "or open it with read_only=True to read reports"
                ) from exc
            raise LedgerCorruptError(f"the ledger {path} cannot be read: {exc}. {_RECOVERY_HINT}") from exc
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise LedgerCorruptError(f"the ledger {path} is damaged: {exc}. {_RECOVERY_HINT}") from exc
        return conn

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        if not path.is_file():
            raise LedgerPathError(f"no ledger at {path}")
        last: sqlite3.Error | None = None
        # A WAL file in a read-only directory cannot get its -shm file: fall back to immutable mode.
        for query in ("mode=ro", "mode=ro&immutable=1"):
            try:
                conn = sqlite3.connect(f"{path.resolve().as_uri()}?{query}", uri=True,
                                       check_same_thread=False, isolation_level=None)
                self._check_integrity(conn, path)
                self._check_meta(conn, path)
                return conn
            except LedgerCorruptError:
                raise
            except sqlite3.OperationalError as exc:
                last = exc
            except sqlite3.DatabaseError as exc:
                raise LedgerCorruptError(f"the ledger {path} is damaged: {exc}. {_RECOVERY_HINT}") from exc
        raise LedgerPathError(f"cannot open the ledger {path} for reading: {last}")

    @staticmethod
    def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
        try:
            rows = conn.execute("PRAGMA quick_check").fetchall()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            raise LedgerCorruptError(f"the ledger {path} is not a SQLite ledger: {exc}. {_RECOVERY_HINT}") from exc
        if rows != [("ok",)]:
            detail = "; ".join(str(r[0]) for r in rows[:3])
            raise LedgerCorruptError(f"the ledger {path} fails its integrity check ({detail}). {_RECOVERY_HINT}")

    @staticmethod
    def _write_meta(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (_SCHEMA_VERSION,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('kind', 'lean-inference-ledger')")

    @staticmethod
    def _check_meta(conn: sqlite3.Connection, path: Path) -> None:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "calls", "savings"} <= tables:
            raise LedgerCorruptError(
                f"{path} is a SQLite file but not a lean-inference ledger (tables: {sorted(tables)}). "
                "It was left untouched; choose another ledger path."
            )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("kind") != "lean-inference-ledger":
            raise LedgerCorruptError(f"{path} is not a lean-inference ledger (meta: {meta}). It was left untouched.")
        if meta.get("schema_version") != _SCHEMA_VERSION:
            raise LedgerCorruptError(
                f"{path} has ledger schema {meta.get('schema_version')!r}; this version reads "
                f"{_SCHEMA_VERSION!r}. It was left untouched."
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
        """Price and store one LLM call; returns the stored record."""
        record = self._build_call(model=model, usage=usage, provider=provider, latency_s=latency_s,
                                  tenant=tenant, tags=tags, run_id=run_id, timestamp=timestamp)
        self._insert("calls", _CALL_COLUMNS, _call_row(record))
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
        await asyncio.to_thread(self._insert, "calls", _CALL_COLUMNS, _call_row(record))
        return record

    def record(self, event: SavingsEvent) -> SavingsEvent:
        """Price ``event`` (what one layer saved on one request) at its model's prices and store it.

        Layers build a :class:`SavingsEvent` and hand it here; the returned copy carries
        ``cost_saved_usd`` (None when the model is unpriced).
        """
        priced = self._price_savings(event)
        self._insert("savings", _SAVINGS_COLUMNS, _savings_row(priced))
        return priced

    async def arecord(self, event: SavingsEvent) -> SavingsEvent:
        """Async :meth:`record`; the SQLite write runs in a worker thread."""
        priced = self._price_savings(event)
        await asyncio.to_thread(self._insert, "savings", _SAVINGS_COLUMNS, _savings_row(priced))
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
        self._insert("output_lengths", _LENGTH_COLUMNS, _length_row(record))
        return record

    async def arecord_output_length(self, record: OutputLengthRecord) -> OutputLengthRecord:
        """Async :meth:`record_output_length`."""
        await asyncio.to_thread(self._insert, "output_lengths", _LENGTH_COLUMNS, _length_row(record))
        return record

    def _build_call(self, *, model: str, usage: TokenUsage, provider: str | None,
                    latency_s: float | None, tenant: str | None, tags: Iterable[str],
                    run_id: str | None, timestamp: datetime | None) -> CallRecord:
        if not isinstance(usage, TokenUsage):
            raise InvalidParameterError("usage", allowed="a lean_core.TokenUsage", received=type(usage).__name__)
        if isinstance(tags, str):
            raise InvalidParameterError("tags", allowed="an iterable of str (not a single str)", received=tags)
        quote = self._pricer(usage, model, provider=provider, at=timestamp)
        extra: dict[str, Any] = {}
        if timestamp is not None:
            extra["timestamp"] = timestamp
        return CallRecord(
            model=model, provider=provider, usage=usage, latency_s=latency_s, priced=quote.priced,
            input_cost_usd=quote.input_cost_usd, output_cost_usd=quote.output_cost_usd,
            cost_usd=quote.total_cost_usd, unpriced_reason=quote.unpriced_reason, tenant=tenant,
            tags=tuple(tags), run_id=run_id, **extra,
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
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        with self._lock:
            try:
                self._conn.execute(sql, row)  # autocommit: one durable transaction per record
            except sqlite3.OperationalError as exc:
                raise LedgerPathError(f"cannot write to the ledger {self.path}: {exc}") from exc

    # -- reading -----------------------------------------------------------------------------
    def calls(self, *, tenant: str | None = None, since: datetime | None = None,
              until: datetime | None = None) -> list[CallRecord]:
        """Stored calls, oldest first, optionally filtered by tenant and time range."""
        rows = self._select("calls", _CALL_COLUMNS, tenant=tenant, since=since, until=until)
        return [_call_from_row(r) for r in rows]

    def savings(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> list[SavingsEvent]:
        """Stored savings events, oldest first, optionally filtered."""
        rows = self._select("savings", _SAVINGS_COLUMNS, tenant=tenant, since=since, until=until)
        return [_savings_from_row(r) for r in rows]

    def output_lengths(self, *, model: str | None = None, tenant: str | None = None,
                       since: datetime | None = None, until: datetime | None = None) -> list[OutputLengthRecord]:
        """Stored answer lengths, oldest first (empty for a read-only ledger older than the table)."""
        with self._lock:
            present = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='output_lengths'").fetchone()
        if not present:
            return []
        rows = self._select("output_lengths", _LENGTH_COLUMNS, tenant=tenant, since=since, until=until)
        records = [_length_from_row(r) for r in rows]
        return [r for r in records if model is None or r.model == model]

    def _select(self, table: str, columns: Sequence[str], *, tenant: str | None,
                since: datetime | None, until: datetime | None) -> list[tuple[Any, ...]]:
        where, params = [], []
        if tenant is not None:
            where.append("tenant = ?")
            params.append(tenant)
        if since is not None:
            where.append("ts >= ?")
            params.append(_ts(since))
        if until is not None:
            where.append("ts < ?")
            params.append(_ts(until))
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, rowid"
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def summary(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None) -> LedgerSummary:
        """Totals per model and per layer, baseline vs actual cost, compared like with like
        (unpriced calls at their savings' reference prices, or left out: see ``comparison_basis``)."""
        from lean_core.report import summarize

        return summarize(self.calls(tenant=tenant, since=since, until=until),
                         self.savings(tenant=tenant, since=since, until=until), pricer=self._pricer)

    # -- export ------------------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike[str]) -> Path:
        """Write ``{"calls": [...], "savings": [...]}`` with exact decimal strings."""
        out = Path(path)
        payload = {
            "calls": [r.model_dump(mode="json") for r in self.calls()],
            "savings": [e.model_dump(mode="json") for e in self.savings()],
        }
        out.write_text(json.dumps(payload, indent=2))
        return out

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one CSV with a ``record_type`` column (``call`` or ``savings``) and flat fields."""
        out = Path(path)
        call_fields = [c for c in _CALL_COLUMNS]
        savings_fields = [c for c in _SAVINGS_COLUMNS if c not in call_fields]
        header = ["record_type", *call_fields, *savings_fields]
        with out.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            for row in self._select("calls", _CALL_COLUMNS, tenant=None, since=None, until=None):
                writer.writerow({"record_type": "call", **dict(zip(_CALL_COLUMNS, row, strict=True))})
            for row in self._select("savings", _SAVINGS_COLUMNS, tenant=None, since=None, until=None):
                writer.writerow({"record_type": "savings", **dict(zip(_SAVINGS_COLUMNS, row, strict=True))})
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


def _ts(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _call_row(r: CallRecord) -> tuple[Any, ...]:
    u = r.usage
    return (
        r.id, _ts(r.timestamp), r.model, r.provider, u.input_tokens, u.cached_input_tokens,
        u.cache_write_tokens, u.output_tokens, u.reasoning_tokens, u.source, r.latency_s,
        int(r.priced), _dec(r.input_cost_usd), _dec(r.output_cost_usd), _dec(r.cost_usd),
        r.unpriced_reason, r.tenant, json.dumps(list(r.tags)), r.run_id,
    )


def _call_from_row(row: tuple[Any, ...]) -> CallRecord:
    d = dict(zip(_CALL_COLUMNS, row, strict=True))
    usage = TokenUsage(
        input_tokens=d["input_tokens"], cached_input_tokens=d["cached_input_tokens"],
        cache_write_tokens=d["cache_write_tokens"], output_tokens=d["output_tokens"],
        reasoning_tokens=d["reasoning_tokens"], source=d["usage_source"],
    )
    return CallRecord(
        id=d["id"], timestamp=datetime.fromisoformat(d["ts"]), model=d["model"], provider=d["provider"],
        usage=usage, latency_s=d["latency_s"], priced=bool(d["priced"]),
        input_cost_usd=_opt_dec(d["input_cost_usd"]), output_cost_usd=_opt_dec(d["output_cost_usd"]),
        cost_usd=_opt_dec(d["cost_usd"]), unpriced_reason=d["unpriced_reason"], tenant=d["tenant"],
        tags=tuple(json.loads(d["tags"])), run_id=d["run_id"],
    )


def _savings_row(e: SavingsEvent) -> tuple[Any, ...]:
    return (
        e.id, _ts(e.timestamp), e.layer, e.model, e.provider, e.input_tokens_before,
        e.input_tokens_after, e.output_tokens_before, e.output_tokens_after,
        None if e.cache_hit is None else int(e.cache_hit), _dec(e.cost_saved_usd), e.tenant, e.call_id,
    )


def _savings_from_row(row: tuple[Any, ...]) -> SavingsEvent:
    d = dict(zip(_SAVINGS_COLUMNS, row, strict=True))
    return SavingsEvent(
        id=d["id"], timestamp=datetime.fromisoformat(d["ts"]), layer=d["layer"], model=d["model"],
        provider=d["provider"], input_tokens_before=d["input_tokens_before"],
        input_tokens_after=d["input_tokens_after"], output_tokens_before=d["output_tokens_before"],
        output_tokens_after=d["output_tokens_after"],
        cache_hit=None if d["cache_hit"] is None else bool(d["cache_hit"]),
        cost_saved_usd=_opt_dec(d["cost_saved_usd"]), tenant=d["tenant"], call_id=d["call_id"],
    )


def _opt_dec(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _length_row(r: OutputLengthRecord) -> tuple[Any, ...]:
    return (r.id, _ts(r.timestamp), r.model, r.feature_version, json.dumps(list(r.features)), r.output_tokens,
            r.max_tokens, r.finish_reason, r.tenant)


def _length_from_row(row: tuple[Any, ...]) -> OutputLengthRecord:
    return OutputLengthRecord(id=row[0], timestamp=datetime.fromisoformat(row[1]), model=row[2],
                              feature_version=row[3], features=tuple(json.loads(row[4])), output_tokens=row[5],
                              max_tokens=row[6], finish_reason=row[7], tenant=row[8])


def _savings_event(fields: dict[str, Any]) -> SavingsEvent:
    """A :class:`SavingsEvent` from ``record_savings`` keywords; a bad layer names the allowed ones."""
    layer = fields.get("layer")
    if layer not in LAYERS:
        raise InvalidParameterError("layer", allowed=f"one of {list(LAYERS)}", received=layer)
    if fields.get("timestamp") is None:
        fields = {k: v for k, v in fields.items() if k != "timestamp"}
    return SavingsEvent(**fields)
