"""Where a cost ledger keeps its records: a SQLite file or a PostgreSQL database, with versioned
schemas, forward migrations, retention and daily roll-ups."""

from lean_core.ledger_store.base import LedgerFilter, LedgerStore
from lean_core.ledger_store.retention import PruneResult, RetentionPolicy
from lean_core.ledger_store.sqlite import SQLiteLedgerStore

__all__ = ["LedgerFilter", "LedgerStore", "PostgresLedgerStore", "PruneResult", "RetentionPolicy",
           "SQLiteLedgerStore"]


def __getattr__(name: str) -> object:
    # psycopg is optional: the PostgreSQL store's module imports only when it is asked for.
    if name == "PostgresLedgerStore":
        from lean_core.ledger_store.postgres import PostgresLedgerStore

        return PostgresLedgerStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
