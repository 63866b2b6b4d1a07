"""Ledger retention: prune records by age and count, keeping their totals as daily roll-ups.

Pruning works one UTC day at a time: the day's records are decoded, their compared totals are
added to the roll-up tables (:mod:`lean_core.ledger_store.rollups`) and the records deleted, in
one transaction, so a crash leaves either the records or their roll-up, never both or neither.
Damaged rows are never deleted: they stay where they are and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lean_core import _ledger_sql as sql
from lean_core._comparison import Pricer
from lean_core.errors import InvalidParameterError
from lean_core.ledger_store.base import LedgerStore
from lean_core.ledger_store.rollups import build_rollups, write_rollups

__all__ = ["PruneResult", "RetentionPolicy", "prune"]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What a ledger keeps as records; everything older is rolled up into daily totals.

    ``older_than``: records older than this (a positive timedelta) are pruned. ``max_records``:
    at most this many of each kind (calls, savings events, output lengths) are kept, the newest
    (records sharing the oldest kept timestamp are all kept). At least one must be set."""

    older_than: timedelta | None = None
    max_records: int | None = None

    def __post_init__(self) -> None:
        if self.older_than is not None and (not isinstance(self.older_than, timedelta)
                                            or self.older_than <= timedelta(0)):
            raise InvalidParameterError("older_than", allowed="a positive datetime.timedelta or None",
                                        received=self.older_than)
        if self.max_records is not None and (isinstance(self.max_records, bool)
                                             or not isinstance(self.max_records, int) or self.max_records < 0):
            raise InvalidParameterError("max_records", allowed="an int >= 0 or None", received=self.max_records)
        if self.older_than is None and self.max_records is None:
            raise InvalidParameterError("older_than", allowed="older_than and/or max_records set",
                                        received="neither")


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one prune removed and rolled up."""

    calls_pruned: int
    savings_pruned: int
    output_lengths_pruned: int
    days_rolled_up: int
    """Distinct UTC days whose records were added to the roll-ups."""
    damaged_rows_kept: int
    """Unreadable rows in the pruned range, left in place (see ``LedgerCorruptError``'s hint)."""


def _cutoff(store: LedgerStore, table: str, policy: RetentionPolicy, now: datetime) -> str | None:
    """The ts text below which ``table``'s records go (None: nothing to prune)."""
    cutoffs: list[str] = []
    if policy.older_than is not None:
        cutoffs.append(sql.ts(now - policy.older_than))
    if policy.max_records is not None:
        if policy.max_records == 0:
            newest = store.query(f"SELECT max(ts) FROM {table}")
            if newest and newest[0][0] is not None:
                cutoffs.append(str(newest[0][0]) + "~")  # '~' sorts after every ts character: all rows
        else:
            kept = store.query(f"SELECT ts FROM {table} ORDER BY ts DESC LIMIT 1 OFFSET ?", (policy.max_records - 1,))
            if kept:
                cutoffs.append(str(kept[0][0]))
    return max(cutoffs) if cutoffs else None


def _day_start(ts_text: str) -> datetime:
    return datetime.fromisoformat(ts_text[:10]).replace(tzinfo=UTC)


def prune(store: LedgerStore, policy: RetentionPolicy, *, pricer: Pricer, now: datetime | None = None) -> PruneResult:
    """Apply ``policy`` to ``store`` (see the module docstring)."""
    now = now or datetime.now(UTC)
    call_cut = _cutoff(store, "calls", policy, now)
    savings_cut = _cutoff(store, "savings", policy, now)
    totals = {"calls": 0, "savings": 0}
    days: set[str] = set()
    damaged = 0
    window_start: str | None = None
    while True:
        starts = []
        for table, cut in (("calls", call_cut), ("savings", savings_cut)):
            if cut is None:
                continue
            lower = "" if window_start is None else " AND ts >= ?"
            params = [cut] if window_start is None else [cut, window_start]
            row = store.query(f"SELECT min(ts) FROM {table} WHERE ts < ?{lower}", params)
            if row and row[0][0] is not None:
                starts.append(str(row[0][0]))
        if not starts:
            break
        try:
            day = _day_start(min(starts))
        except ValueError:  # a damaged ts: it cannot be placed in a day
            day = datetime.fromisoformat(window_start) if window_start else datetime(1970, 1, 1, tzinfo=UTC)
        start, end = sql.ts(day), sql.ts(day + timedelta(days=1))
        if window_start is not None and start < window_start:
            start = window_start
        with store.transaction() as runner:
            calls_rows = runner.execute(
                f"SELECT {store.rowid_column()}, {', '.join(sql.CALL_COLUMNS)} FROM calls "
                "WHERE ts >= ? AND ts < ? AND ts < ?", (start, end, call_cut or "")) if call_cut else []
            savings_rows = runner.execute(
                f"SELECT {store.rowid_column()}, {', '.join(sql.SAVINGS_COLUMNS)} FROM savings "
                "WHERE ts >= ? AND ts < ? AND ts < ?", (start, end, savings_cut or "")) if savings_cut else []
            calls, bad_calls = sql.decode_rows(calls_rows, sql.call_from_row, table="calls", path=store.path,
                                               skip_bad_rows=True)
            savings, bad_savings = sql.decode_rows(savings_rows, sql.savings_from_row, table="savings",
                                                   path=store.path, skip_bad_rows=True)
            damaged += bad_calls + bad_savings
            if calls or savings:
                write_rollups(runner, *build_rollups(calls, savings, pricer=pricer))
                runner.executemany("DELETE FROM calls WHERE id = ?", [(c.id,) for c in calls])
                runner.executemany("DELETE FROM savings WHERE id = ?", [(e.id,) for e in savings])
                days.add(start[:10])
                totals["calls"] += len(calls)
                totals["savings"] += len(savings)
        window_start = end
    lengths = 0
    length_cut = _cutoff(store, "output_lengths", policy, now) if "output_lengths" in store.tables() else None
    if length_cut is not None:
        with store.transaction() as runner:
            lengths = len(runner.execute("DELETE FROM output_lengths WHERE ts < ? RETURNING id", (length_cut,)))
    return PruneResult(calls_pruned=totals["calls"], savings_pruned=totals["savings"],
                       output_lengths_pruned=lengths, days_rolled_up=len(days), damaged_rows_kept=damaged)
