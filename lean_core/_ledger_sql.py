"""The cost ledger's row layer: row encoding, strict row decoding and error naming (the schema
and its migrations are in :mod:`lean_core.ledger_store.migrations`).

Rows are decoded strictly: a stored value of the wrong type, a text that is not UTF-8, a bad
decimal, JSON or timestamp makes the whole row bad (:class:`BadRow`), never a half-read record.
:class:`~lean_core.ledger.CostLedger` decides whether a bad row is an error or skipped and counted.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar, get_args

from lean_core.errors import LedgerCorruptError, LedgerError, LedgerPathError
from lean_core.ledger_records import (
    CACHE_MISS_REASONS,
    LAYERS,
    CallRecord,
    OutputLengthRecord,
    SavingsEvent,
)
from lean_core.usage import TokenUsage, UsageSource

CALL_COLUMNS = (
    "id", "ts", "model", "provider", "input_tokens", "cached_input_tokens", "cache_write_tokens",
    "cache_write_1h_tokens", "output_tokens", "reasoning_tokens", "usage_source", "latency_s", "priced", "input_cost_usd",
    "output_cost_usd", "cost_usd", "unpriced_reason", "tenant", "tags", "run_id",
)
SAVINGS_COLUMNS = (
    "id", "ts", "layer", "model", "provider", "input_tokens_before", "input_tokens_after",
    "output_tokens_before", "output_tokens_after", "cache_hit", "cost_saved_usd", "tenant", "call_id", "miss_reason",
)
LENGTH_COLUMNS = ("id", "ts", "model", "feature_version", "features", "output_tokens", "max_tokens",
                  "finish_reason", "tenant")

T = TypeVar("T")


def recovery_hint(path: Path | str | None) -> str:
    """What to do with a damaged ledger file (every LedgerCorruptError about damage ends with it)."""
    name = str(path) if path is not None else "LEDGER"
    return (f"The file was left untouched. To keep recording, move it aside (mv {name} {name}.damaged): "
            f"a new ledger starts on next use. To keep what is readable, run sqlite3 {name}.damaged .recover "
            f"| sqlite3 {name}; if the file still opens, `lean-inference report --ledger {name} --json OUT.json` "
            "exports every readable record and skips (and counts) damaged rows.")


def one_line(text: object) -> str:
    """SQLite and quick_check details can hold newlines and control bytes: keep messages one line."""
    return " ".join(str(text).split())[:300]


def damaged(path: Path | None, detail: object) -> LedgerCorruptError:
    return LedgerCorruptError(f"the ledger {path} is damaged ({one_line(detail)}). {recovery_hint(path)}")


DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)
"""What a query on a damaged file raises: sqlite3 decodes SQLite's error message strictly, and a
message that quotes damaged bytes (a malformed schema) raises UnicodeDecodeError instead."""
DbError = sqlite3.Error | UnicodeDecodeError

_PATH_PROBLEMS = ("locked", "busy", "readonly", "read-only", "unable to open", "disk i/o", "disk is full",
                  "permission", "access")


def is_path_problem(exc: DbError) -> bool:
    """A lock, permission, space or I/O problem (about the path, not the file's content)."""
    return isinstance(exc, sqlite3.OperationalError) and any(word in str(exc).lower() for word in _PATH_PROBLEMS)


def storage_error(path: Path | None, exc: DbError, *, action: str) -> LedgerError:
    """A SQLite error while reading or writing an open ledger, as the ledger error it means."""
    if is_path_problem(exc):
        return LedgerPathError(f"cannot {action} the ledger {path}: {one_line(exc)}")
    return damaged(path, exc)


# -- text cells -----------------------------------------------------------------------------------
class BadText:
    """A TEXT cell that is not valid UTF-8 (damage): kept so the row can be named and skipped."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def __str__(self) -> str:  # what a raw CSV export writes
        return self.raw.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"BadText({self.raw[:40]!r})"


def text_factory(raw: bytes) -> str | BadText:
    """The connections' text factory: the default raises for the whole query on one bad cell."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadText(raw)


# -- encoding -------------------------------------------------------------------------------------
def ts(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _dec_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def call_row(r: CallRecord) -> tuple[Any, ...]:
    u = r.usage
    return (
        r.id, ts(r.timestamp), r.model, r.provider, u.input_tokens, u.cached_input_tokens,
        u.cache_write_tokens, u.cache_write_1h_tokens, u.output_tokens, u.reasoning_tokens, u.source, r.latency_s,
        int(r.priced), _dec_text(r.input_cost_usd), _dec_text(r.output_cost_usd), _dec_text(r.cost_usd),
        r.unpriced_reason, r.tenant, json.dumps(list(r.tags)), r.run_id,
    )


def savings_row(e: SavingsEvent) -> tuple[Any, ...]:
    return (
        e.id, ts(e.timestamp), e.layer, e.model, e.provider, e.input_tokens_before,
        e.input_tokens_after, e.output_tokens_before, e.output_tokens_after,
        None if e.cache_hit is None else int(e.cache_hit), _dec_text(e.cost_saved_usd), e.tenant, e.call_id,
        e.miss_reason,
    )


def length_row(r: OutputLengthRecord) -> tuple[Any, ...]:
    return (r.id, ts(r.timestamp), r.model, r.feature_version, json.dumps(list(r.features)), r.output_tokens,
            r.max_tokens, r.finish_reason, r.tenant)


# -- strict decoding ------------------------------------------------------------------------------
class BadRow(Exception):
    """One stored row cannot be read back as a record."""


class _Cells:
    """Typed access to one row's cells; every getter raises BadRow on a value the writer never stores."""

    def __init__(self, columns: Sequence[str], row: Sequence[Any]) -> None:
        self._d = dict(zip(columns, row, strict=True))

    def _raw(self, name: str, optional: bool) -> Any:
        value = self._d[name]
        if value is None and not optional:
            raise BadRow(f"{name} is NULL")
        if isinstance(value, BadText):
            raise BadRow(f"{name} is not UTF-8 text")
        return value

    def text(self, name: str) -> str:
        value = self._raw(name, False)
        if not isinstance(value, str):
            raise BadRow(f"{name} is {type(value).__name__}, not text")
        return value

    def choice(self, name: str, allowed: Sequence[str]) -> Any:
        value = self.text(name)
        if value not in allowed:
            raise BadRow(f"{name} is {value[:40]!r}, not one of {list(allowed)}")
        return value

    def opt_choice(self, name: str, allowed: Sequence[str]) -> Any:
        return None if self._raw(name, True) is None else self.choice(name, allowed)

    def opt_text(self, name: str) -> str | None:
        value = self._raw(name, True)
        return None if value is None else self.text(name)

    def count(self, name: str) -> int:
        value = self._raw(name, False)
        if not isinstance(value, int) or value < 0:
            raise BadRow(f"{name} is {value!r}, not a count")
        return value

    def opt_count(self, name: str) -> int | None:
        return None if self._raw(name, True) is None else self.count(name)

    def flag(self, name: str, *, optional: bool = True) -> bool | None:
        value = self._raw(name, optional)
        if value not in (None, 0, 1) or isinstance(value, float):
            raise BadRow(f"{name} is {value!r}, not 0/1")
        return None if value is None else bool(value)

    def seconds(self, name: str) -> float | None:
        value = self._raw(name, True)
        if value is None:
            return None
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise BadRow(f"{name} is {value!r}, not seconds")
        return float(value)

    def decimal(self, name: str) -> Decimal | None:
        text = self.opt_text(name)
        if text is None:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            raise BadRow(f"{name} is {text[:40]!r}, not a decimal") from None
        if not value.is_finite():
            raise BadRow(f"{name} is {text[:40]!r}, not a finite decimal")
        return value

    def stamp(self, name: str) -> datetime:
        text = self.text(name)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise BadRow(f"{name} is {text[:40]!r}, not a timestamp") from None
        if value.tzinfo is None:  # the writer always stores UTC; a naive one would break comparisons
            raise BadRow(f"{name} is {text[:40]!r}, a timestamp without a time zone")
        return value

    def json_list(self, name: str, item: type | tuple[type, ...]) -> tuple[Any, ...]:
        text = self.text(name)
        try:
            value = json.loads(text)
        except ValueError:
            raise BadRow(f"{name} is {text[:40]!r}, not JSON") from None
        if not isinstance(value, list) or not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
            raise BadRow(f"{name} is {text[:40]!r}, not a JSON list of {item}")
        return tuple(value)


def _built(build: Callable[[], T]) -> T:
    try:
        return build()
    except (ValueError, TypeError, ArithmeticError) as exc:  # the records' own validation
        raise BadRow(one_line(exc)) from None


def call_from_row(row: Sequence[Any]) -> CallRecord:
    c = _Cells(CALL_COLUMNS, row)
    usage = _built(lambda: TokenUsage(
        input_tokens=c.count("input_tokens"), cached_input_tokens=c.count("cached_input_tokens"),
        cache_write_tokens=c.count("cache_write_tokens"),
        cache_write_1h_tokens=c.count("cache_write_1h_tokens"), output_tokens=c.count("output_tokens"),
        reasoning_tokens=c.count("reasoning_tokens"), source=c.choice("usage_source", get_args(UsageSource)),
    ))
    return _built(lambda: CallRecord(
        id=c.text("id"), timestamp=c.stamp("ts"), model=c.text("model"), provider=c.opt_text("provider"),
        usage=usage, latency_s=c.seconds("latency_s"), priced=bool(c.flag("priced", optional=False)),
        input_cost_usd=c.decimal("input_cost_usd"), output_cost_usd=c.decimal("output_cost_usd"),
        cost_usd=c.decimal("cost_usd"), unpriced_reason=c.opt_text("unpriced_reason"), tenant=c.opt_text("tenant"),
        tags=c.json_list("tags", str), run_id=c.opt_text("run_id"),
    ))


def savings_from_row(row: Sequence[Any]) -> SavingsEvent:
    c = _Cells(SAVINGS_COLUMNS, row)
    return _built(lambda: SavingsEvent(
        id=c.text("id"), timestamp=c.stamp("ts"), layer=c.choice("layer", LAYERS),
        model=c.text("model"), provider=c.opt_text("provider"), input_tokens_before=c.count("input_tokens_before"),
        input_tokens_after=c.count("input_tokens_after"), output_tokens_before=c.count("output_tokens_before"),
        output_tokens_after=c.count("output_tokens_after"), cache_hit=c.flag("cache_hit"),
        cost_saved_usd=c.decimal("cost_saved_usd"), tenant=c.opt_text("tenant"), call_id=c.opt_text("call_id"),
        miss_reason=c.opt_choice("miss_reason", CACHE_MISS_REASONS),
    ))


def length_from_row(row: Sequence[Any]) -> OutputLengthRecord:
    c = _Cells(LENGTH_COLUMNS, row)
    return _built(lambda: OutputLengthRecord(
        id=c.text("id"), timestamp=c.stamp("ts"), model=c.text("model"), feature_version=c.text("feature_version"),
        features=c.json_list("features", (int, float)), output_tokens=c.count("output_tokens"),
        max_tokens=c.opt_count("max_tokens"), finish_reason=c.opt_text("finish_reason"), tenant=c.opt_text("tenant"),
    ))


def decode_rows(rows: Sequence[Sequence[Any]], decode: Callable[[Sequence[Any]], T], *, table: str,
                path: Path | str | None, skip_bad_rows: bool) -> tuple[list[T], int]:
    """``rows`` are ``(rowid, *columns)``; returns the records and how many bad rows were skipped.

    Without ``skip_bad_rows`` the first bad row raises LedgerCorruptError naming it."""
    records: list[T] = []
    skipped = 0
    for rowid, *cells in rows:
        try:
            records.append(decode(cells))
        except BadRow as exc:
            if not skip_bad_rows:
                raise LedgerCorruptError(
                    f"the ledger {path} has a damaged row (table {table}, rowid {rowid}: {exc}). "
                    "Reports skip and count such rows (summary(), `lean-inference report`); "
                    f"pass skip_bad_rows=True to read the rest. {recovery_hint(path)}") from None
            skipped += 1
    return records, skipped
