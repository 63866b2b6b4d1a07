"""The ledger's schema versions and the forward migrations between them, for SQLite and PostgreSQL.

A ledger records its version in ``meta`` (``schema_version``) next to ``kind =
lean-inference-ledger``. Opening a ledger applies every step above its version, in one
transaction per ledger (other writers wait), so a file or database from an earlier release opens
and is upgraded, never refused. A ledger newer than this code, or one that is not ours, is never
touched: :func:`check_meta` raises naming the fix.

Versions:
    1. calls, savings, output_lengths, meta (the first release).
    2. ``calls.cache_write_1h_tokens`` (1-hour prompt-cache writes; 0 for older rows).
    3. daily roll-up tables ``rollup_calls`` and ``rollup_savings`` (totals of pruned records).
    4. ``savings.miss_reason`` (why a cache lookup served nothing; NULL for older rows) and
       ``rollup_savings.cache_explorations`` (cache misses that explored; 0 for older roll-ups).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from lean_core.errors import LedgerCorruptError

__all__ = ["LATEST_VERSION", "LEDGER_KIND", "Dialect", "check_meta", "migrate", "steps"]

Dialect = Literal["sqlite", "postgresql"]
LATEST_VERSION = 4
LEDGER_KIND = "lean-inference-ledger"

_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, model TEXT NOT NULL, provider TEXT,
    input_tokens {int} NOT NULL, cached_input_tokens {int} NOT NULL,
    cache_write_tokens {int} NOT NULL, output_tokens {int} NOT NULL,
    reasoning_tokens {int} NOT NULL, usage_source TEXT NOT NULL, latency_s {real},
    priced {flag} NOT NULL, input_cost_usd TEXT, output_cost_usd TEXT, cost_usd TEXT,
    unpriced_reason TEXT, tenant TEXT, tags TEXT NOT NULL, run_id TEXT
);
CREATE TABLE IF NOT EXISTS savings (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, layer TEXT NOT NULL, model TEXT NOT NULL, provider TEXT,
    input_tokens_before {int} NOT NULL, input_tokens_after {int} NOT NULL,
    output_tokens_before {int} NOT NULL, output_tokens_after {int} NOT NULL,
    cache_hit {flag}, cost_saved_usd TEXT, tenant TEXT, call_id TEXT
);
CREATE TABLE IF NOT EXISTS output_lengths (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, model TEXT NOT NULL, feature_version TEXT NOT NULL,
    features TEXT NOT NULL, output_tokens {int} NOT NULL, max_tokens {int}, finish_reason TEXT,
    tenant TEXT
);
CREATE INDEX IF NOT EXISTS calls_ts ON calls (ts);
CREATE INDEX IF NOT EXISTS savings_ts ON savings (ts)
"""
_V2 = "ALTER TABLE calls ADD COLUMN cache_write_1h_tokens {int} NOT NULL DEFAULT 0"
# Roll-ups: '' stands for "no tenant" / "no provider" (a real record never has an empty one), so
# the key has no NULLs. Money is exact decimal text, as in the record tables. ``unlinked`` marks
# savings linked to no call of their day: a summary decides again whether they are compared.
_V3 = """
CREATE TABLE IF NOT EXISTS rollup_calls (
    day TEXT NOT NULL, tenant TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    calls {int} NOT NULL, input_tokens {int} NOT NULL, cached_input_tokens {int} NOT NULL,
    output_tokens {int} NOT NULL, reasoning_tokens {int} NOT NULL, priced_calls {int} NOT NULL,
    cost_usd TEXT NOT NULL, unpriced_calls {int} NOT NULL, estimated_calls {int} NOT NULL,
    reference_priced_calls {int} NOT NULL, reference_cost_usd TEXT NOT NULL, reference_models TEXT NOT NULL,
    left_out_calls {int} NOT NULL,
    PRIMARY KEY (day, tenant, model, provider)
);
CREATE TABLE IF NOT EXISTS rollup_savings (
    day TEXT NOT NULL, tenant TEXT NOT NULL, layer TEXT NOT NULL, model TEXT NOT NULL, provider TEXT NOT NULL,
    unlinked {int} NOT NULL, events {int} NOT NULL, cache_hits {int} NOT NULL, cache_misses {int} NOT NULL,
    input_tokens_saved {int} NOT NULL, output_tokens_saved {int} NOT NULL, cost_saved_usd TEXT NOT NULL,
    unpriced_events {int} NOT NULL, left_out_events {int} NOT NULL, left_out_cost_usd TEXT NOT NULL,
    PRIMARY KEY (day, tenant, layer, model, provider, unlinked)
);
CREATE INDEX IF NOT EXISTS calls_tenant_ts ON calls (tenant, ts);
CREATE INDEX IF NOT EXISTS savings_call_id ON savings (call_id)
"""
_V4 = """
ALTER TABLE savings ADD COLUMN miss_reason TEXT;
ALTER TABLE rollup_savings ADD COLUMN cache_explorations {int} NOT NULL DEFAULT 0
"""
_TYPES: Mapping[Dialect, Mapping[str, str]] = {
    "sqlite": {"int": "INTEGER", "real": "REAL", "flag": "INTEGER"},
    "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION", "flag": "SMALLINT"},
}


def steps(dialect: Dialect) -> dict[int, list[str]]:
    """Version -> the statements that bring a ledger at ``version - 1`` to ``version``."""
    types = _TYPES[dialect]

    def split(script: str) -> list[str]:
        return [s.strip() for s in script.format(**types).split(";") if s.strip()]

    return {1: split(_V1), 2: split(_V2), 3: split(_V3), 4: split(_V4)}


def check_meta(meta: Mapping[str, str], *, location: str, tables: set[str]) -> int:
    """The ledger's schema version; raises LedgerCorruptError for a foreign or newer ledger.

    ``meta`` is the ``meta`` table's rows and ``tables`` the names present (checked before any
    write, so a foreign file or schema is never adopted)."""
    if not {"meta", "calls", "savings"} <= tables:
        raise LedgerCorruptError(
            f"{location} is not a lean-inference ledger (tables: {sorted(tables)}). "
            "It was left untouched; choose another ledger path (or PostgreSQL schema)."
        )
    if meta.get("kind") != LEDGER_KIND:
        shown = " ".join(str(dict(meta)).split())[:300]
        raise LedgerCorruptError(f"{location} is not a lean-inference ledger (meta: {shown}). It was left untouched.")
    raw = meta.get("schema_version", "")
    if not raw.isdigit() or int(raw) < 1:
        raise LedgerCorruptError(f"{location} has an unreadable ledger schema version {raw!r}. It was left untouched.")
    version = int(raw)
    if version > LATEST_VERSION:
        raise LedgerCorruptError(
            f"{location} has ledger schema {version}, newer than this lean-inference reads "
            f"({LATEST_VERSION}). It was left untouched: upgrade lean-inference "
            "(pip install -U lean-inference) to use it, or choose another ledger."
        )
    return version


def migrate(execute: Callable[[str, tuple[Any, ...]], object], *, dialect: Dialect, current: int) -> int:
    """Apply every step above ``current`` (0: a fresh ledger) through ``execute``; the caller holds
    the transaction and a lock that serialises concurrent openers. Returns the new version."""
    for version, statements in sorted(steps(dialect).items()):
        if version <= current and version != 1:  # version 1 is all IF NOT EXISTS: a first-release
            continue  # ledger without output_lengths gains it
        for statement in statements:
            execute(statement, ())
    if current == 0:
        execute("INSERT INTO meta (key, value) VALUES ('kind', ?)", (LEDGER_KIND,))
        execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(LATEST_VERSION),))
    elif current < LATEST_VERSION:
        execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LATEST_VERSION),))
    return LATEST_VERSION
