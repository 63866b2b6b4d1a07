"""The cost ledger: every LLM call's tokens and cost, and what each layer saved.

The embedded default is one SQLite file in WAL mode; a PostgreSQL database serves a fleet
(:mod:`lean_core.ledger_store`). Every record is its own committed transaction, so a process
killed mid-stream loses at most the record it was writing and never corrupts the ledger; other
processes (and, on PostgreSQL, other hosts) may write to the same ledger at the same time.
"""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lean_core import _ledger_sql as sql
from lean_core._validation import check_seconds, check_tags, check_text, check_time
from lean_core.errors import InvalidParameterError
from lean_core.ledger_listener import LedgerListener
from lean_core.ledger_records import LAYERS, CallRecord, Layer, OutputLengthRecord, SavingsEvent
from lean_core.ledger_store.base import LedgerFilter, LedgerStore
from lean_core.ledger_store.retention import PruneResult, RetentionPolicy
from lean_core.ledger_store.sqlite import SQLiteLedgerStore
from lean_core.pricing import PriceQuote, price_usage
from lean_core.usage import TokenUsage

if TYPE_CHECKING:
    from lean_core.report import LedgerSummary

__all__ = ["CostLedger", "default_ledger_path"]

Pricer = Callable[..., PriceQuote]
_log = logging.getLogger(__name__)
_TABLES: dict[str, tuple[Sequence[str], Callable[[Sequence[Any]], Any]]] = {
    "calls": (sql.CALL_COLUMNS, sql.call_from_row),
    "savings": (sql.SAVINGS_COLUMNS, sql.savings_from_row),
    "output_lengths": (sql.LENGTH_COLUMNS, sql.length_from_row),
}


def default_ledger_path() -> Path:
    """``LEAN_INFERENCE_LEDGER`` or ``<user data dir>/lean-inference/ledger.sqlite3`` (a
    ``postgresql://`` URL in ``LEAN_INFERENCE_LEDGER`` is used by ``CostLedger(None)`` directly)."""
    env = os.environ.get("LEAN_INFERENCE_LEDGER")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lean-inference", appauthor=False)) / "ledger.sqlite3"


class CostLedger:
    """Records LLM calls and per-layer savings; thread-safe, asyncio-safe, multi-process safe.

    The records live in a store: one SQLite file (the embedded default,
    :class:`~lean_core.ledger_store.SQLiteLedgerStore`) or a PostgreSQL database shared by many
    processes and hosts (:class:`~lean_core.ledger_store.PostgresLedgerStore`, extra ``postgres``).
    A ledger from an earlier release is migrated when it is opened; a damaged, foreign or newer
    one is never modified: :class:`~lean_core.errors.LedgerCorruptError` names the fix.
    :meth:`summary` skips damaged rows and counts them (``LedgerSummary.skipped_rows``);
    :meth:`calls` and friends raise unless ``skip_bad_rows``. :meth:`prune` keeps old records'
    totals as daily roll-ups that :meth:`summary` includes.

    Args:
        path: SQLite file (created with its parent directory), ``":memory:"`` for a throwaway
            ledger, a ``postgresql://`` URL, a :class:`~lean_core.ledger_store.LedgerStore`, or
            None for :func:`default_ledger_path`. Not empty, not a directory.
        read_only: open an existing ledger for reports only (works in read-only directories).
            Ignored for a store object (it was opened already).
        pricer: prices a :class:`TokenUsage` for (model, provider); defaults to genai-prices.
        listeners: told about every stored call and savings event
            (:class:`~lean_core.ledger_listener.LedgerListener`); one that raises is logged once
            and never stops recording.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | LedgerStore | None = None,
        *,
        read_only: bool = False,
        pricer: Pricer = price_usage,
        listeners: Sequence[LedgerListener] = (),
    ) -> None:
        if not isinstance(read_only, bool):
            raise InvalidParameterError("read_only", allowed="True or False", received=read_only)
        if not callable(pricer):
            raise InvalidParameterError("pricer", allowed="a callable (usage, model, *, provider, at) -> PriceQuote",
                                        received=pricer)
        if isinstance(listeners, str | bytes) or not isinstance(listeners, Sequence) \
                or not all(isinstance(listener, LedgerListener) for listener in listeners):
            raise InvalidParameterError("listeners", allowed="a sequence of LedgerListener (on_call, on_savings)",
                                        received=listeners)
        self._pricer = pricer
        self._listeners = tuple(listeners)
        self._failed_listeners: set[int] = set()
        self.store = _open_store(path, read_only=read_only)
        self.path: Path | None = self.store.path
        self.read_only = self.store.read_only

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
        self.store.insert("calls", sql.CALL_COLUMNS, sql.call_row(record))
        self._notify("on_call", record)
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
        """Async :meth:`record_call` (PostgreSQL: async I/O; SQLite: the write runs in a worker thread)."""
        record = self._build_call(model=model, usage=usage, provider=provider, latency_s=latency_s,
                                  tenant=tenant, tags=tags, run_id=run_id, timestamp=timestamp)
        await self.store.ainsert("calls", sql.CALL_COLUMNS, sql.call_row(record))
        self._notify("on_call", record)
        return record

    def record(self, event: SavingsEvent) -> SavingsEvent:
        """Price ``event`` (what one layer saved on one request) at its model's prices and store it.

        Layers build a :class:`SavingsEvent` and hand it here; the returned copy carries
        ``cost_saved_usd`` (None when the model is unpriced).
        """
        priced = self._price_savings(event)
        self.store.insert("savings", sql.SAVINGS_COLUMNS, sql.savings_row(priced))
        self._notify("on_savings", priced)
        return priced

    async def arecord(self, event: SavingsEvent) -> SavingsEvent:
        """Async :meth:`record` (PostgreSQL: async I/O; SQLite: the write runs in a worker thread)."""
        priced = self._price_savings(event)
        await self.store.ainsert("savings", sql.SAVINGS_COLUMNS, sql.savings_row(priced))
        self._notify("on_savings", priced)
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
        self.store.insert("output_lengths", sql.LENGTH_COLUMNS, sql.length_row(_length_record(record)))
        return record

    async def arecord_output_length(self, record: OutputLengthRecord) -> OutputLengthRecord:
        """Async :meth:`record_output_length`."""
        row = sql.length_row(_length_record(record))
        await self.store.ainsert("output_lengths", sql.LENGTH_COLUMNS, row)
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

    def _notify(self, hook: str, record: CallRecord | SavingsEvent) -> None:
        """Tell the listeners; one that raises is logged (once) and never breaks recording."""
        for listener in self._listeners:
            try:
                getattr(listener, hook)(record)
            except Exception:
                if id(listener) in self._failed_listeners:
                    _log.debug("ledger listener %r failed again in %s", listener, hook, exc_info=True)
                else:
                    self._failed_listeners.add(id(listener))
                    _log.warning("ledger listener %r failed in %s; recording goes on (further failures are "
                                 "logged at DEBUG)", listener, hook, exc_info=True)

    # -- reading -----------------------------------------------------------------------------
    def calls(self, *, tenant: str | None = None, since: datetime | None = None,
              until: datetime | None = None, skip_bad_rows: bool = False) -> list[CallRecord]:
        """Stored calls, oldest first, optionally filtered by tenant and time range ``[since, until)``.

        A damaged row raises LedgerCorruptError naming it, or is left out with ``skip_bad_rows``
        (:meth:`summary` counts them). Pruned calls are only in the roll-ups (:meth:`summary`)."""
        flt = LedgerFilter(tenant=tenant, since=since, until=until)
        return self._read("calls", flt, skip_bad_rows=skip_bad_rows)[0]

    def savings(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None, layer: Layer | None = None,
                skip_bad_rows: bool = False) -> list[SavingsEvent]:
        """Stored savings events, oldest first, optionally filtered by tenant, time range and
        layer (bad rows as :meth:`calls`)."""
        flt = LedgerFilter(tenant=tenant, since=since, until=until, layer=layer)
        return self._read("savings", flt, skip_bad_rows=skip_bad_rows)[0]

    def output_lengths(self, *, model: str | None = None, tenant: str | None = None,
                       since: datetime | None = None, until: datetime | None = None,
                       skip_bad_rows: bool = False) -> list[OutputLengthRecord]:
        """Stored answer lengths, oldest first (empty for a read-only ledger older than the table)."""
        check_text("model", model, optional=True)
        flt = LedgerFilter(tenant=tenant, since=since, until=until)
        if "output_lengths" not in self.store.tables():
            return []
        records, _ = self._read("output_lengths", flt, skip_bad_rows=skip_bad_rows)
        return [r for r in records if model is None or r.model == model]

    def _read(self, table: str, flt: LedgerFilter, *, skip_bad_rows: bool, condition: str = "",
              params: Sequence[Any] = ()) -> tuple[list[Any], int]:
        if not isinstance(skip_bad_rows, bool):
            raise InvalidParameterError("skip_bad_rows", allowed="True or False", received=skip_bad_rows)
        columns, decode = _TABLES[table]
        rows = self._select(table, (self.store.rowid_column(), *columns), flt, condition=condition, params=params)
        return sql.decode_rows(rows, decode, table=table, path=self.path or self.store.location,
                               skip_bad_rows=skip_bad_rows)

    def _select(self, table: str, columns: Sequence[str], flt: LedgerFilter, *, condition: str = "",
                params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        where, values = flt.where(table)
        if condition:
            where = f"{where} AND {condition}" if where else f" WHERE {condition}"
            values = [*values, *params]
        selected = ", ".join(self._column_sql(table, c) for c in columns)
        return self.store.query(f"SELECT {selected} FROM {table}{where} ORDER BY ts, {self.store.rowid_column()}",
                                values)

    def _column_sql(self, table: str, column: str) -> str:
        # A read-only ledger from the first release is read as it is: its calls wrote no 1-hour count.
        if table == "calls" and column == "cache_write_1h_tokens" and self.store.schema_version < 2:
            return "0 AS cache_write_1h_tokens"
        # ... and a read-only ledger older than schema 4 recorded no reason for its cache misses.
        if table == "savings" and column == "miss_reason" and self.store.schema_version < 4:
            return "NULL AS miss_reason"
        return column

    def summary(self, *, tenant: str | None = None, since: datetime | None = None,
                until: datetime | None = None, layer: Layer | None = None,
                skip_bad_rows: bool = True) -> LedgerSummary:
        """Totals per model and per layer, baseline vs actual cost, compared like with like
        (unpriced calls at their savings' reference prices, or left out: see ``comparison_basis``).

        Includes the daily roll-ups of pruned records (:meth:`prune`; a rolled-up day counts whole
        when ``[since, until)`` touches it). ``layer`` narrows the savings events (calls have no
        layer). Damaged rows are left out and counted (``skipped_rows``) unless
        ``skip_bad_rows=False``. On PostgreSQL the server sums the records."""
        from lean_core.ledger_store._summary import (
            aggregate_part,
            combine,
            record_part,
            rollup_part,
        )

        flt = LedgerFilter(tenant=tenant, since=since, until=until, layer=layer)
        skipped = [0]

        def read(table: str) -> Callable[[str, Sequence[Any]], list[Any]]:
            def rows(condition: str, params: Sequence[Any]) -> list[Any]:
                records, bad = self._read(table, flt, skip_bad_rows=skip_bad_rows, condition=condition, params=params)
                skipped[0] += bad
                return records
            return rows

        if self.store.aggregates_in_database:
            live = aggregate_part(self.store, flt, pricer=self._pricer, read_calls=read("calls"),
                                  read_savings=read("savings"), skipped_rows=lambda: skipped[0])
        else:
            calls = read("calls")("", ())
            savings = read("savings")("", ())
            live = record_part(calls, savings, pricer=self._pricer, skipped_rows=skipped[0])
        rolled = rollup_part(self.store, flt)
        return live.summary if rolled is None else combine([live, rolled])

    # -- retention ---------------------------------------------------------------------------
    def prune(self, older_than: timedelta | None = None, max_records: int | None = None, *,
              policy: RetentionPolicy | None = None, now: datetime | None = None) -> PruneResult:
        """Delete old records, keeping their totals as daily roll-ups (see :class:`RetentionPolicy`).

        Give ``older_than`` and/or ``max_records``, or a ``policy``; ``now`` (aware datetime)
        defaults to the current time. :meth:`summary` stays the same over any period."""
        from lean_core.ledger_store.retention import prune

        if policy is None:
            policy = RetentionPolicy(older_than=older_than, max_records=max_records)
        elif not isinstance(policy, RetentionPolicy) or older_than is not None or max_records is not None:
            raise InvalidParameterError("policy", allowed="a RetentionPolicy, without older_than/max_records",
                                        received=policy)
        check_time("now", now)
        return prune(self.store, policy, pricer=self._pricer, now=now)

    async def aprune(self, older_than: timedelta | None = None, max_records: int | None = None, *,
                     policy: RetentionPolicy | None = None, now: datetime | None = None) -> PruneResult:
        """Async :meth:`prune` (runs in a worker thread: it is maintenance, not the hot path)."""
        return await asyncio.to_thread(self.prune, older_than, max_records, policy=policy, now=now)

    # -- export ------------------------------------------------------------------------------
    def export_json(self, path: str | os.PathLike[str], *, skip_bad_rows: bool = False, tenant: str | None = None,
                    since: datetime | None = None, until: datetime | None = None,
                    layer: Layer | None = None) -> Path:
        """Write ``{"calls": [...], "savings": [...], "skipped_rows": n}`` with exact decimal strings.

        ``skip_bad_rows`` exports every readable record of a damaged ledger (a salvage); the
        filters are :meth:`summary`'s (records only: pruned records live on as roll-ups)."""
        out = Path(path)
        flt = LedgerFilter(tenant=tenant, since=since, until=until, layer=layer)
        calls, bad_calls = self._read("calls", flt, skip_bad_rows=skip_bad_rows)
        savings, bad_savings = self._read("savings", flt, skip_bad_rows=skip_bad_rows)
        payload = {
            "calls": [r.model_dump(mode="json") for r in calls],
            "savings": [e.model_dump(mode="json") for e in savings],
            "skipped_rows": bad_calls + bad_savings,
        }
        out.write_text(json.dumps(payload, indent=2))
        return out

    def export_csv(self, path: str | os.PathLike[str], *, tenant: str | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   layer: Layer | None = None) -> Path:
        """Write one CSV with a ``record_type`` column (``call`` or ``savings``) and flat fields.

        The cells are written as stored (a damaged text cell with U+FFFD in place of bad bytes)."""
        out = Path(path)
        flt = LedgerFilter(tenant=tenant, since=since, until=until, layer=layer)
        call_fields = list(sql.CALL_COLUMNS)
        savings_fields = [c for c in sql.SAVINGS_COLUMNS if c not in call_fields]
        header = ["record_type", *call_fields, *savings_fields]
        calls = self._select("calls", sql.CALL_COLUMNS, flt)
        savings = self._select("savings", sql.SAVINGS_COLUMNS, flt)
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
        self.store.close()

    async def aclose(self) -> None:
        """Async :meth:`close` (closes this event loop's PostgreSQL connections too)."""
        await self.store.aclose()

    def __enter__(self) -> CostLedger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> CostLedger:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        if isinstance(self.store, SQLiteLedgerStore):
            return f"CostLedger(path={str(self.path) if self.path else ':memory:'!r}, read_only={self.read_only})"
        return f"CostLedger(store={self.store!r})"


def _open_store(path: object, *, read_only: bool) -> LedgerStore:
    if isinstance(path, LedgerStore):
        return path
    if path is None and os.environ.get("LEAN_INFERENCE_LEDGER", "").startswith(("postgresql://", "postgres://")):
        path = os.environ["LEAN_INFERENCE_LEDGER"]
    if isinstance(path, str) and path.startswith(("postgresql://", "postgres://")):
        from lean_core.ledger_store.postgres import PostgresLedgerStore

        return PostgresLedgerStore(path, read_only=read_only)
    return SQLiteLedgerStore(_ledger_path(path), read_only=read_only)


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
