"""How the stores keep the error budget's evidence: one row per observation, checked on read.

Private to the stores. Each comparison of a fresh answer with an entry's cached answer is one
appended row keyed by (tenant, llm_hash, prompt_key): an append is one INSERT, so concurrent
observations of one entry from many threads, processes or hosts never overwrite each other.
Rows go with their entry (a trigger in SQLite, a cascading foreign key in PostgreSQL) and when the
entry is replaced (its answer changed, so what was learnt about it no longer holds).

A row carries a CRC-32 of its values; a row that does not match, or a table of the wrong shape,
means the evidence is damaged: the store empties the table and raises
:class:`~lean_core.cache.error_budget.EvidenceDamagedError`, so nothing is served from it.
"""

from __future__ import annotations

import sqlite3
import zlib
from typing import Any

from lean_core.cache._store_codec import Damaged
from lean_core.cache.error_budget import BASIS_CODES, Basis, ErrorEstimate, Observation

__all__ = ["MAX_OBSERVATIONS", "PG_COLUMNS", "SQLITE_COLUMNS", "checksum", "ensure_sqlite_evidence", "estimate_of",
           "observations_of", "pg_evidence_ddl", "pg_evidence_sql", "sqlite_evidence_ddl"]

MAX_OBSERVATIONS = 512
"""Observations read per entry (the most recent): bounds the lookup's work on a hot entry."""
_BASES: dict[int, Basis | None] = {code: basis for basis, code in BASIS_CODES.items()}

SQLITE_COLUMNS = ("id", "tenant", "llm_hash", "prompt_key", "similarity", "correct", "basis", "recorded_at",
                  "checksum")
_SQLITE_DDL = """
CREATE TABLE IF NOT EXISTS evidence (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    llm_hash TEXT NOT NULL,
    prompt_key TEXT NOT NULL,
    similarity REAL NOT NULL,
    correct INTEGER NOT NULL,
    basis INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_entry ON evidence (tenant, llm_hash, prompt_key);
CREATE INDEX IF NOT EXISTS evidence_audits ON evidence (tenant, llm_hash, basis) WHERE basis > 0;
CREATE TRIGGER IF NOT EXISTS entries_evidence_ad AFTER DELETE ON entries BEGIN
    DELETE FROM evidence WHERE tenant = OLD.tenant AND llm_hash = OLD.llm_hash AND prompt_key = OLD.prompt_key;
END;
"""

PG_COLUMNS = ("id", "tenant", "llm_hash", "prompt_key", "similarity", "correct", "basis", "recorded_at", "checksum")
_PG_DDL = """
CREATE TABLE IF NOT EXISTS {t}_ev (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    llm_hash text NOT NULL,
    prompt_key text NOT NULL,
    similarity double precision NOT NULL,
    correct boolean NOT NULL,
    basis smallint NOT NULL,
    recorded_at double precision NOT NULL,
    checksum bigint NOT NULL,
    FOREIGN KEY (tenant, llm_hash, prompt_key) REFERENCES {t} (tenant, llm_hash, prompt_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS {t}_ev_entry ON {t}_ev (tenant, llm_hash, prompt_key);
CREATE INDEX IF NOT EXISTS {t}_ev_audit ON {t}_ev (tenant, llm_hash, basis) WHERE basis > 0;
"""


def sqlite_evidence_ddl() -> str:
    return _SQLITE_DDL


def pg_evidence_ddl(table: str) -> str:
    """The evidence table beside ``table`` (validated identifier), idempotent."""
    return _PG_DDL.format(t=table)


def ensure_sqlite_evidence(conn: sqlite3.Connection) -> bool:
    """Create the evidence table if missing (files of earlier versions), or rebuild it empty when
    its shape is not this version's. True when it had to be rebuilt. Runs in one write transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(evidence)"))
        rebuilt = bool(columns) and columns != SQLITE_COLUMNS
        if rebuilt:
            conn.execute("DROP TABLE evidence")
        for statement in _statements(_SQLITE_DDL):
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return rebuilt


def _statements(script: str) -> list[str]:
    out, statement = [], ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            out.append(statement)
            statement = ""
    return out


def checksum(tenant: str, llm_hash: str, prompt_key: str, similarity: float, correct: bool, basis: int) -> int:
    """CRC-32 of an observation's stored values."""
    text = "\x1f".join((tenant, llm_hash, prompt_key, repr(float(similarity)), str(int(correct)), str(basis)))
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def observations_of(rows: list[tuple[Any, ...]], tenant: str, llm_hash: str,
                    prompt_key: str) -> tuple[Observation, ...]:
    """Rows (similarity, correct, basis, checksum) of one entry as observations, oldest first;
    :class:`Damaged` when a row's values or checksum are not what a store writes."""
    out = []
    for similarity, correct, basis, crc in rows:
        if not isinstance(similarity, float) or isinstance(correct, str) or basis not in _BASES \
                or not isinstance(crc, int) or isinstance(crc, bool):
            raise Damaged("an evidence row holding values of the wrong type")
        if checksum(tenant, llm_hash, prompt_key, similarity, bool(correct), int(basis)) != crc:
            raise Damaged("an evidence row that does not match its checksum")
        out.append(Observation(similarity=similarity, correct=bool(correct), basis=_BASES[int(basis)]))
    return tuple(reversed(out))  # queried newest first


def estimate_of(rows: list[tuple[Any, ...]], bases: tuple[int, ...], confidence: float) -> ErrorEstimate:
    """The audits of ``bases`` among rows (basis, audits, wrong)."""
    audits = wrong = 0
    for basis, n, bad in rows:
        if not isinstance(n, int) or not isinstance(bad, int | None):
            raise Damaged("evidence counts of the wrong type")
        if basis in bases:
            audits += n
            wrong += bad or 0
    return ErrorEstimate(audits=audits, wrong=wrong, confidence=confidence)


def pg_evidence_sql(table: str) -> dict[str, str]:
    """The evidence statements of the PostgreSQL store's ``table`` (validated identifier)."""
    t = table
    where = "tenant = %(tenant)s AND llm_hash = %(llm_hash)s"
    return {
        "insert": f"""INSERT INTO {t}_ev (tenant, llm_hash, prompt_key, similarity, correct, basis, recorded_at,
                                            checksum)
                      SELECT %(tenant)s, %(llm_hash)s, %(prompt_key)s, %(similarity)s, %(correct)s, %(basis)s,
                             %(now)s, %(checksum)s
                      WHERE EXISTS (SELECT 1 FROM {t} WHERE {where} AND prompt_key = %(prompt_key)s)""",
        "select": f"""SELECT similarity, correct, basis, checksum FROM {t}_ev WHERE {where}
                      AND prompt_key = %(prompt_key)s ORDER BY id DESC LIMIT {MAX_OBSERVATIONS}""",
        "audited": f"""SELECT basis, count(*), count(*) FILTER (WHERE NOT correct) FROM {t}_ev
                       WHERE {where} AND basis > 0 GROUP BY basis""",
        "clear": f"DELETE FROM {t}_ev WHERE {where} AND prompt_key = %(prompt_key)s",
        "drop": f"DROP TABLE IF EXISTS {t}_ev",
    }
