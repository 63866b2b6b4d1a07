"""The hook a cost ledger calls after each record it stores (e.g. an OpenTelemetry exporter)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lean_core.ledger_records import CallRecord, SavingsEvent

__all__ = ["LedgerListener"]


@runtime_checkable
class LedgerListener(Protocol):
    """Told about every call and savings event after the ledger stored it.

    ``CostLedger(..., listeners=[...])`` calls these on the sync and the async recording paths,
    after the record is committed, with the stored (priced) record. A listener that raises is
    logged once and never breaks recording (fail open); keep them fast, they run inline.
    """

    def on_call(self, record: CallRecord) -> None:
        """One LLM call was stored."""
        ...

    def on_savings(self, event: SavingsEvent) -> None:
        """One savings event was stored (``cost_saved_usd`` priced)."""
        ...
