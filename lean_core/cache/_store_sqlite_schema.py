"""The SQLite cache file's schema, its migration, and how a row is read back and checked.

Private to :mod:`lean_core.cache.sqlite_store`. A row is returned only after its types and its
CRC-32 match what a store writes; anything else raises :class:`Damaged`, which the store reports
as :class:`~lean_core.errors.CacheCorruptError`.
"""

from __future__ import annotations

import sqlite3
import zlib
from typing import Any

from lean_core.cache._store_codec import Damaged, StoredEntry, decode_text, row_checksum
from lean_core.cache.types import CacheEntry

__all__ = ["COLUMNS", "SCHEMA", "SCHEMA_V2", "SCHEMA_VERSION", "as_int", "as_text", "entry_of", "migrate",
           "stored_row", "user_version", "vector_of"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    llm_hash TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    prompt TEXT NOT NULL,
    payload TEXT NOT NULL,
    vector BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,
    last_access REAL NOT NULL,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    vector_crc INTEGER,
    checksum INTEGER,
    UNIQUE (tenant, llm_hash, prompt_key)
);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS namespaces (
    tenant TEXT NOT NULL,
    llm_hash TEXT NOT NULL,
    inserts INTEGER NOT NULL DEFAULT 0,
    deletes INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, llm_hash)
);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO totals VALUES ('entries', 0);
CREATE TRIGGER IF NOT EXISTS entries_ai AFTER INSERT ON entries BEGIN
    INSERT INTO namespaces (tenant, llm_hash, inserts) VALUES (NEW.tenant, NEW.llm_hash, 1)
        ON CONFLICT (tenant, llm_hash) DO UPDATE SET inserts = inserts + 1;
    UPDATE totals SET value = value + 1 WHERE name = 'entries';
END;
CREATE TRIGGER IF NOT EXISTS entries_ad AFTER DELETE ON entries BEGIN
    UPDATE namespaces SET deletes = deletes + 1 WHERE tenant = OLD.tenant AND llm_hash = OLD.llm_hash;
    UPDATE totals SET value = value - 1 WHERE name = 'entries';
END;
"""
# Version 2 (per-tenant eviction, checksums), applied once per file in one write transaction after
# the columns exist and every row has its checksums. Files of version 1 are migrated in place.
SCHEMA_VERSION = 2
SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS tenants (tenant TEXT PRIMARY KEY, entries INTEGER NOT NULL) WITHOUT ROWID;
DELETE FROM tenants;
INSERT INTO tenants (tenant, entries) SELECT tenant, count(*) FROM entries GROUP BY tenant;
CREATE INDEX IF NOT EXISTS tenants_size ON tenants (entries);
CREATE TRIGGER IF NOT EXISTS entries_tenant_ai AFTER INSERT ON entries BEGIN
    INSERT INTO tenants (tenant, entries) VALUES (NEW.tenant, 1)
        ON CONFLICT (tenant) DO UPDATE SET entries = entries + 1;
END;
CREATE TRIGGER IF NOT EXISTS entries_tenant_ad AFTER DELETE ON entries BEGIN
    UPDATE tenants SET entries = entries - 1 WHERE tenant = OLD.tenant;
    DELETE FROM tenants WHERE tenant = OLD.tenant AND entries <= 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_checked BEFORE INSERT ON entries WHEN NEW.checksum IS NULL BEGIN
    SELECT RAISE(ABORT, 'an entry without a checksum: upgrade every lean-inference sharing this cache file');
END;
DROP INDEX IF EXISTS entries_last_access;
CREATE INDEX IF NOT EXISTS entries_tenant_lru ON entries (tenant, last_access);
PRAGMA user_version = 2;
"""
COLUMNS = ("id, tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens,"
            " vector_crc, checksum")


def user_version(conn: sqlite3.Connection) -> int:
    return as_int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a version-1 (or new) file to version 2 in one write transaction: checksum columns
    filled for every row, per-tenant counters, the per-tenant LRU index."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if user_version(conn) < SCHEMA_VERSION:  # not done by another connection meanwhile
            columns = {row[1] for row in conn.execute("PRAGMA table_info(entries)")}
            for column in ("vector_crc", "checksum"):
                if column not in columns:
                    conn.execute(f"ALTER TABLE entries ADD COLUMN {column} INTEGER")
            last = 0
            while True:  # in slices: a large file's payloads need not fit in memory at once
                rows = conn.execute(f"SELECT {COLUMNS}, vector FROM entries WHERE id > ? AND checksum IS NULL"
                                    " ORDER BY id LIMIT 512", (last,)).fetchall()
                if not rows:
                    break
                for row in rows:
                    vector_crc = None if row[-1] is None else zlib.crc32(row[-1])
                    conn.execute("UPDATE entries SET vector_crc = ?, checksum = ? WHERE id = ?",
                                 (vector_crc, row_checksum(stored_row(row), vector_crc), row[0]))
                last = rows[-1][0]
            statement = ""
            for line in SCHEMA_V2.splitlines(keepends=True):  # executescript would commit first
                statement += line
                if sqlite3.complete_statement(statement):
                    conn.execute(statement)
                    statement = ""
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def as_int(value: object) -> int:
    """A count or number read from the file: an int, else the file is damaged."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Damaged(f"a number stored as {type(value).__name__}")
    return value


def as_text(value: object) -> str:
    if not isinstance(value, str):
        raise Damaged(f"a text value stored as {type(value).__name__}")
    return value


def vector_of(blob: object, crc: object) -> Any:
    import numpy as np

    if not isinstance(blob, bytes) or not blob or len(blob) % 4 or zlib.crc32(blob) != crc:
        raise Damaged("an embedding that does not match its checksum")
    return np.frombuffer(blob, dtype=np.float32)


def stored_row(row: tuple[Any, ...]) -> StoredEntry:
    """The stored values of a row (``COLUMNS`` order), type-checked."""
    _, tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens = row[:10]
    if not isinstance(created_at, float) or not (expires_at is None or isinstance(expires_at, float)):
        raise Damaged("a time stored as another type")
    return StoredEntry(tenant=as_text(tenant), llm_hash=as_text(llm_hash), prompt_key=as_text(prompt_key),
                       prompt=as_text(prompt), payload=as_text(payload), created_at=created_at, expires_at=expires_at,
                       input_tokens=as_int(input_tokens), output_tokens=as_int(output_tokens))


def entry_of(row: tuple[Any, ...]) -> CacheEntry:
    """The entry of a row (``COLUMNS`` order) after its checksum matched, else :class:`Damaged`."""
    stored = stored_row(row)
    vector_crc, checksum = row[10], row[11]
    if vector_crc is not None:
        as_int(vector_crc)
    if row_checksum(stored, vector_crc) != as_int(checksum):
        raise Damaged(f"entry {row[0]} does not match its checksum")
    return CacheEntry(tenant=decode_text(stored.tenant), llm_hash=decode_text(stored.llm_hash),
                      prompt_key=decode_text(stored.prompt_key), prompt=decode_text(stored.prompt),
                      payload=decode_text(stored.payload), created_at=stored.created_at,
                      expires_at=stored.expires_at, input_tokens=stored.input_tokens,
                      output_tokens=stored.output_tokens)
