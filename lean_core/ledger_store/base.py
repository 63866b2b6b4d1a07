"""What a cost-ledger store provides, and the filter every read takes.

:class:`~lean_core.ledger.CostLedger` owns pricing, validation, row encoding and reports; a
store owns a database: opening it (and migrating its schema), running statements and
transactions. Statements use ``?`` placeholders whatever the dialect.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from lean_core._validation import check_text, check_time
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import LAYERS, Layer
from lean_core.ledger_store.migrations import Dialect

__all__ = ["LedgerFilter", "LedgerStore", "StatementRunner"]


@dataclass(frozen=True, slots=True)
class LedgerFilter:
    """Which records a read covers: one tenant, a time range ``[since, until)``, one layer.

    ``layer`` narrows savings events only (a call has no layer)."""

    tenant: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    layer: Layer | None = None

    def __post_init__(self) -> None:
        check_text("tenant", self.tenant, optional=True)
        check_time("since", self.since)
        check_time("until", self.until)
        if self.layer is not None and self.layer not in LAYERS:
            raise InvalidParameterError("layer", allowed=f"one of {list(LAYERS)} or None", received=self.layer)

    def where(self, table: str, *, alias: str = "") -> tuple[str, list[Any]]:
        """A ``WHERE ...`` clause (or "") and its parameters for a record table."""
        from lean_core._ledger_sql import ts

        prefix = f"{alias}." if alias else ""
        clauses: list[str] = []
        params: list[Any] = []
        if self.tenant is not None:
            clauses.append(f"{prefix}tenant = ?")
            params.append(self.tenant)
        if self.since is not None:
            clauses.append(f"{prefix}ts >= ?")
            params.append(ts(self.since))
        if self.until is not None:
            clauses.append(f"{prefix}ts < ?")
            params.append(ts(self.until))
        if self.layer is not None and table == "savings":
            clauses.append(f"{prefix}layer = ?")
            params.append(self.layer)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


class StatementRunner(Protocol):
    """One open transaction: run statements with ``?`` placeholders."""

    def execute(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None: ...


class LedgerStore(ABC):
    """A database a :class:`~lean_core.ledger.CostLedger` records into (SQLite file or PostgreSQL)."""

    dialect: Dialect
    read_only: bool
    aggregates_in_database: bool = False
    """Whether summaries are summed by the database rather than from decoded records."""
    path: Path | None = None
    """The SQLite file (None for ``:memory:`` and PostgreSQL)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the ledger is, for messages (a file path, or host:port/db schema; never a password)."""

    @property
    @abstractmethod
    def schema_version(self) -> int:
        """The schema version the ledger is at (older only for a read-only ledger)."""

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        """Store one row as its own committed transaction."""

    async def ainsert(self, table: str, columns: Sequence[str], row: Sequence[Any]) -> None:
        """Async :meth:`insert` (a worker thread unless the store has real async I/O)."""
        await asyncio.to_thread(self.insert, table, columns, row)

    @abstractmethod
    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read statement."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[StatementRunner]:
        """One write transaction, serialised with the ledger's other maintenance (prune)."""

    @abstractmethod
    def tables(self) -> set[str]:
        """The ledger's table names."""

    @abstractmethod
    def columns(self, table: str) -> set[str]:
        """One table's column names."""

    @abstractmethod
    def close(self) -> None:
        """Release connections (idempotent)."""

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()

    def insert_many(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Store many rows in one transaction (bulk loads: benchmarks, imports)."""
        placeholders = ", ".join("?" * len(columns))
        with self.transaction() as runner:
            runner.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)

    def rowid_column(self) -> str:
        """What names a row in messages about damaged rows."""
        return "rowid" if self.dialect == "sqlite" else "id"

