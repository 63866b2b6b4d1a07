"""lean-inference core: framework-free primitives (tokens, prices, ledger, assets)."""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from lean_core.errors import (
    InvalidParameterError,
    LeanInferenceError,
    LedgerCorruptError,
    LedgerError,
    LedgerPathError,
    MissingAssetError,
    MissingExtraError,
)
from lean_core.ledger import CostLedger, default_ledger_path
from lean_core.ledger_records import CallRecord, Layer, SavingsEvent
from lean_core.pricing import PriceQuote, price_usage
from lean_core.report import LayerSavings, LedgerSummary, ModelTotals
from lean_core.tokens import EstimatedTokensWarning, TokenCount, TokenCounter, count_tokens
from lean_core.usage import TokenUsage, UsageSource

try:
    __version__ = _version("lean-inference")
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CallRecord",
    "CostLedger",
    "EstimatedTokensWarning",
    "InvalidParameterError",
    "Layer",
    "LayerSavings",
    "LeanInferenceError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerPathError",
    "LedgerSummary",
    "MissingAssetError",
    "MissingExtraError",
    "ModelTotals",
    "PriceQuote",
    "SavingsEvent",
    "TokenCount",
    "TokenCounter",
    "TokenUsage",
    "UsageSource",
    "count_tokens",
    "default_ledger_path",
    "price_usage",
]
