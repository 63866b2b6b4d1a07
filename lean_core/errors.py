"""The exception hierarchy of lean-inference.

    LeanInferenceError
    ├── InvalidParameterError (ValueError)     bad option or input value: names parameter, allowed, received
    ├── MissingExtraError (ImportError)        an optional dependency is not installed: names the extra
    ├── MissingAssetError (FileNotFoundError)  a bundled model/data file is missing: names the pip command
    ├── LedgerError
    │   ├── LedgerPathError (OSError)          the ledger path cannot be created or written
    │   └── LedgerCorruptError (ValueError)    the ledger file is not a readable SQLite ledger
    └── CacheStoreError                        a response-cache store cannot be used
        └── CacheCorruptError (ValueError)     the cache file is damaged: names the rebuild command
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CacheCorruptError",
    "CacheStoreError",
    "InvalidParameterError",
    "LeanInferenceError",
    "LedgerCorruptError",
    "LedgerError",
    "LedgerPathError",
    "MissingAssetError",
    "MissingExtraError",
]


class LeanInferenceError(Exception):
    """Base class of every error raised by lean-inference."""


class InvalidParameterError(LeanInferenceError, ValueError):
    """A parameter got a value outside what it accepts."""

    def __init__(self, parameter: str, *, allowed: str, received: Any) -> None:
        self.parameter = parameter
        self.allowed = allowed
        self.received = received
        super().__init__(f"invalid {parameter!s}: expected {allowed}, received {received!r}")


class MissingExtraError(LeanInferenceError, ImportError):
    """An optional dependency is needed for this feature but is not installed."""

    def __init__(self, module: str, *, extra: str, feature: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{feature} needs the Python package {module!r}, which is not installed. "
            f"Install it with: pip install 'lean-inference[{extra}]'",
            name=module,
        )


class MissingAssetError(LeanInferenceError, FileNotFoundError):
    """A bundled offline asset (model, tokenizer data) cannot be found or fails verification."""

    def __init__(self, asset: str, *, detail: str, install: str) -> None:
        self.asset = asset
        self.install = install
        super().__init__(f"{asset}: {detail}. It is provided by: {install}")


class LedgerError(LeanInferenceError):
    """Base class of cost-ledger storage errors."""


class LedgerPathError(LedgerError, OSError):
    """The ledger file cannot be created, opened or written at the given path."""


class LedgerCorruptError(LedgerError, ValueError):
    """The ledger file exists but is not a readable lean-inference ledger. It is left untouched."""


class CacheStoreError(LeanInferenceError):
    """A response-cache store cannot be opened or used."""


class CacheCorruptError(CacheStoreError, ValueError):
    """The cache store is damaged. A cache holds nothing that cannot be recomputed, so the fix is to rebuild it."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"the response cache at {path} is damaged ({detail}); rebuild it with "
                         f"`lean-inference cache rebuild {path}` (moves the damaged file aside and starts "
                         "an empty cache) or delete the file")
