"""The SQL of the PostgreSQL cache store: schema, migration and the statements of one table.

Private to :mod:`lean_core.cache.postgres_store` (its module docstring describes the layout).
Identifiers are validated by the store before they are formatted in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COLUMNS", "PROBE", "SCHEMA_LOCK_KEY", "SEARCH_SETTINGS", "Sql", "ddl", "pgvector_version"]

# Any fixed key: schema creation (CREATE EXTENSION included) is serialised per database.
SCHEMA_LOCK_KEY = 0x6C65616E_63616368
COLUMNS = "tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens"

_DDL = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS {t} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    llm_hash text NOT NULL,
    prompt_key text NOT NULL,
    prompt text NOT NULL,
    payload text NOT NULL,
    embedding vector({dim}),
    created_at double precision NOT NULL,
    expires_at double precision,
    input_tokens integer NOT NULL DEFAULT 0,
    output_tokens integer NOT NULL DEFAULT 0,
    UNIQUE (tenant, llm_hash, prompt_key)
);
-- Writers wait until the counters below are created and filled in this same transaction.
LOCK TABLE {t} IN SHARE ROW EXCLUSIVE MODE;
CREATE INDEX IF NOT EXISTS {t}_namespace ON {t} (tenant, llm_hash);
CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops);
CREATE TABLE IF NOT EXISTS {t}_totals (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    entries bigint NOT NULL
);
INSERT INTO {t}_totals (singleton, entries) SELECT true, count(*) FROM {t} ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS {t}_lru (
    id bigint PRIMARY KEY REFERENCES {t} (id) ON DELETE CASCADE,
    tenant text NOT NULL,
    last_access double precision NOT NULL
);
-- Tables made before per-tenant eviction: their LRU rows learn their tenant.
ALTER TABLE {t}_lru ADD COLUMN IF NOT EXISTS tenant text;
UPDATE {t}_lru AS lru SET tenant = e.tenant FROM {t} AS e WHERE lru.id = e.id AND lru.tenant IS NULL;
ALTER TABLE {t}_lru ALTER COLUMN tenant SET NOT NULL;
DROP INDEX IF EXISTS {t}_lru_last_access;
CREATE INDEX IF NOT EXISTS {t}_lru_tenant ON {t}_lru (tenant, last_access, id);
CREATE TABLE IF NOT EXISTS {t}_tenants (
    tenant text PRIMARY KEY,
    entries bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS {t}_tenants_size ON {t}_tenants (entries);
DELETE FROM {t}_tenants;
INSERT INTO {t}_tenants (tenant, entries) SELECT tenant, count(*) FROM {t} GROUP BY tenant;
CREATE OR REPLACE FUNCTION {t}_count() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        UPDATE {t}_totals SET entries = 0;
        DELETE FROM {t}_tenants;
        RETURN NULL;
    END IF;
    SELECT count(*) INTO n FROM changed;
    IF n = 0 THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        UPDATE {t}_totals SET entries = entries + n;
        INSERT INTO {t}_tenants AS c (tenant, entries) SELECT tenant, count(*) FROM changed GROUP BY tenant
            ON CONFLICT (tenant) DO UPDATE SET entries = c.entries + EXCLUDED.entries;
    ELSE
        UPDATE {t}_totals SET entries = entries - n;
        UPDATE {t}_tenants AS c SET entries = c.entries - d.n
            FROM (SELECT tenant, count(*) AS n FROM changed GROUP BY tenant) AS d WHERE c.tenant = d.tenant;
        DELETE FROM {t}_tenants AS c USING (SELECT DISTINCT tenant FROM changed) AS d
            WHERE c.tenant = d.tenant AND c.entries <= 0;
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER {t}_counted_insert AFTER INSERT ON {t}
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
CREATE OR REPLACE TRIGGER {t}_counted_delete AFTER DELETE ON {t}
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
CREATE OR REPLACE TRIGGER {t}_counted_truncate AFTER TRUNCATE ON {t}
    FOR EACH STATEMENT EXECUTE FUNCTION {t}_count();
"""
# {t}_tenants is filled last, in the same transaction, so its existence means the whole schema
# (this version's) is there; a table of the previous version lacks it and is migrated.
PROBE = """
SELECT to_regclass(%(tenants)s) IS NOT NULL,
       (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
       (SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%(table)s) AND attname = 'embedding')
"""
# set_config(..., true) is SET LOCAL: it ends with the search's transaction. strict_order makes a
# filtered HNSW scan keep going until k rows of *this* namespace are found, in exact distance order
# (relaxed_order would need a re-sort and k is small). A forced custom plan lets the planner see
# each namespace's real size: small ones are searched exactly via the (tenant, llm_hash) btree.
SEARCH_SETTINGS = ("SELECT set_config('hnsw.iterative_scan', 'strict_order', true),"
                   " set_config('hnsw.ef_search', %(ef_search)s, true),"
                   " set_config('plan_cache_mode', 'force_custom_plan', true)")


def ddl(table: str, dimensions: int) -> str:
    """The schema of ``table`` (idempotent; migrates a table of the previous version)."""
    return _DDL.format(t=table, dim=dimensions)


@dataclass(frozen=True)
class Sql:
    """The statements of one table (identifiers validated, so formatting them in is safe)."""

    lock_totals: str
    totals: str
    put: str
    sizes: str
    largest: str
    evict: str
    get: str
    touch: str
    search: str
    count_tenant: str
    delete: str
    purge: str

    @classmethod
    def build(cls, t: str, *, iterative_scan: bool) -> Sql:
        # Without iterative scans (pgvector < 0.8) a filtered HNSW scan can return fewer than k rows,
        # so "+ 0" keeps the planner off the HNSW index: exact search within the namespace.
        order = "embedding <=> %(query)b" if iterative_scan else "(embedding <=> %(query)b) + 0"
        return cls(
            lock_totals=f"SELECT entries FROM {t}_totals FOR UPDATE",
            totals=f"SELECT entries FROM {t}_totals",
            put=f"""
                WITH written AS (
                    INSERT INTO {t} (tenant, llm_hash, prompt_key, prompt, payload, embedding, created_at,
                                     expires_at, input_tokens, output_tokens)
                    VALUES (%(tenant)s, %(llm_hash)s, %(prompt_key)s, %(prompt)s, %(payload)s, %(embedding)b,
                            %(created_at)s, %(expires_at)s, %(input_tokens)s, %(output_tokens)s)
                    ON CONFLICT (tenant, llm_hash, prompt_key) DO UPDATE SET
                        prompt = EXCLUDED.prompt, payload = EXCLUDED.payload, embedding = EXCLUDED.embedding,
                        created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
                        input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens
                    RETURNING id)
                INSERT INTO {t}_lru (id, tenant, last_access) SELECT id, %(tenant)s, %(created_at)s FROM written
                ON CONFLICT (id) DO UPDATE SET last_access = EXCLUDED.last_access""",
            sizes=f"""SELECT (SELECT entries FROM {t}_totals),
                             (SELECT entries FROM {t}_tenants WHERE tenant = %(tenant)s)""",
            # COLLATE "C": byte order, as SQLite's, so both stores break ties between tenants alike.
            largest=f"""SELECT tenant, entries FROM {t}_tenants
                        ORDER BY entries DESC, (tenant = %(writer)s) DESC, tenant COLLATE "C" LIMIT 2""",
            evict=f"""DELETE FROM {t} WHERE id IN (
                          SELECT id FROM {t}_lru WHERE tenant = %(tenant)s ORDER BY last_access, id LIMIT %(n)s)""",
            get=f"""
                UPDATE {t}_lru AS lru SET last_access = %(now)s FROM {t} AS e
                WHERE lru.id = e.id AND e.tenant = %(tenant)s AND e.llm_hash = %(llm_hash)s
                  AND e.prompt_key = %(prompt_key)s AND (e.expires_at IS NULL OR e.expires_at > %(now)s)
                RETURNING {", ".join(f"e.{c.strip()}" for c in COLUMNS.split(","))}""",
            touch=f"""
                UPDATE {t}_lru SET last_access = %(now)s WHERE id = (
                    SELECT id FROM {t} WHERE tenant = %(tenant)s AND llm_hash = %(llm_hash)s
                      AND prompt_key = %(prompt_key)s)""",
            search=f"""
                SELECT * FROM (
                    SELECT {COLUMNS}, 1 - (embedding <=> %(query)b) AS similarity FROM {t}
                    WHERE tenant = %(tenant)s AND llm_hash = %(llm_hash)s AND embedding IS NOT NULL
                      AND (expires_at IS NULL OR expires_at > %(now)s)
                    ORDER BY {order} LIMIT %(k)s
                ) AS nearest WHERE similarity >= %(min_similarity)s ORDER BY similarity DESC""",
            count_tenant=f"SELECT count(*) FROM {t} WHERE tenant = %(tenant)s",
            delete=f"DELETE FROM {t} WHERE {{where}}",
            purge=f"DELETE FROM {t} WHERE expires_at IS NOT NULL AND expires_at <= %(now)s",
        )


def pgvector_version(text: str | None) -> tuple[int, ...]:
    """``"0.8.1"`` as ``(0, 8, 1)``; None (no extension) as ``(0,)``."""
    parts = []
    for part in (text or "0").split("."):
        digits = re.match(r"\d+", part)
        parts.append(int(digits.group()) if digits else 0)
    return tuple(parts)
