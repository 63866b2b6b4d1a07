"""OpenTelemetry export of the cost ledger: GenAI spans and metrics (extra ``otel``).

Importing this package imports no OpenTelemetry module; :class:`OTelLedgerExporter` does, when
constructed, and names the extra to install if it is missing.
"""

from lean_core.telemetry.exporter import OperationName, OTelLedgerExporter

__all__ = ["OTelLedgerExporter", "OperationName"]
