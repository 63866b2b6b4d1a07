"""The embedded default store: one SQLite file (WAL) plus an in-memory vector index per namespace.

Many threads and processes may share one file. SQLite serialises writers and every write is one
transaction, so a process killed mid-write leaves the last committed state. Each process keeps a
per-namespace matrix of embeddings that it refreshes from the file when the namespace's version
counters (kept by triggers, in the same transactions) move, so entries written by other processes
are found too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from time import monotonic, sleep  # by name: callers may fake this module's wall clock (`time`)
from typing import TYPE_CHECKING, Any

from lean_core.cache.store import CacheStore
from lean_core.cache.types import CacheEntry, CacheNamespace, SemanticCandidate
from lean_core.errors import CacheCorruptError, CacheStoreError, InvalidParameterError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SQLiteCacheStore", "default_cache_path", "rebuild_sqlite_store"]

_SCHEMA = """
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
    UNIQUE (tenant, llm_hash, prompt_key)
);
CREATE INDEX IF NOT EXISTS entries_last_access ON entries (last_access);
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
_COLUMNS = "id, tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens"
# Rebuild a namespace's matrix from scratch once this share of its rows is stale (deleted/replaced).
_STALE_SHARE = 0.1


def default_cache_path() -> Path:
    """``$LEAN_INFERENCE_CACHE`` or ``~/.cache/lean-inference/responses.sqlite3``."""
    env = os.environ.get("LEAN_INFERENCE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "lean-inference" / "responses.sqlite3"


def rebuild_sqlite_store(path: str | os.PathLike[str]) -> Path | None:
    """Move a damaged cache file (and its WAL) aside and leave an empty path. Returns where it went."""
    source = Path(path)
    if not source.exists():
        return None
    target = source.with_name(f"{source.name}.damaged-{int(time.time())}")
    shutil.move(source, target)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{source}{suffix}")
        if side.exists():
            shutil.move(side, Path(f"{target}{suffix}"))
    return target


@dataclass
class _NamespaceIndex:
    inserts: int
    deletes: int
    deletes_at_build: int
    max_id: int
    ids: Any  # np.ndarray[int64]
    matrix: Any  # np.ndarray[float32], rows unit length
    ann: Any = None  # faiss HNSW over matrix's rows, for large namespaces
    ann_rows: int = 0


class SQLiteCacheStore(CacheStore):
    """Entries in SQLite; nearest-neighbour search by exact cosine over the namespace's vectors."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, max_entries: int | None = 100_000,
                 busy_timeout_s: float = 30.0, ann_min_entries: int = 20_000) -> None:
        if max_entries is not None and (not isinstance(max_entries, int) or max_entries < 1):
            raise InvalidParameterError("max_entries", allowed="an int >= 1 or None", received=max_entries)
        self.path = Path(path) if path is not None else default_cache_path()
        self.max_entries = max_entries
        self.ann_min_entries = ann_min_entries
        """Namespaces with at least this many vectors are searched through an HNSW graph (faiss)."""
        self._busy_timeout_s = busy_timeout_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self._indexes: dict[tuple[str, str], _NamespaceIndex] = {}

    # -- connection ---------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheStoreError(f"cannot create the cache directory {self.path.parent}: {exc}") from exc
        # SQLite answers "database is locked" at once, without its busy handler, when several
        # connections switch a fresh file to WAL or create its schema together: retry until the
        # busy timeout instead (the set-up is idempotent).
        deadline = monotonic() + self._busy_timeout_s
        pause = 0.002
        while True:
            try:
                conn = self._open_prepared()
                break
            except sqlite3.OperationalError as exc:
                locked = "locked" in str(exc) or "busy" in str(exc)
                if locked and monotonic() < deadline:
                    sleep(pause)
                    pause = min(pause * 2, 0.1)
                    continue
                if locked:
                    raise CacheStoreError(f"the cache at {self.path} stayed locked: {exc}") from exc
                raise CacheCorruptError(str(self.path), str(exc)) from exc
            except sqlite3.DatabaseError as exc:
                raise CacheCorruptError(str(self.path), str(exc)) from exc
        self._conn = conn
        return conn

    def _open_prepared(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, check_same_thread=False,
                               isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _guard(self) -> Any:
        with self._lock:
            try:
                yield self._connection()
            except (CacheStoreError, InvalidParameterError):
                raise
            except sqlite3.OperationalError as exc:
                if "malformed" in str(exc) or "not a database" in str(exc):
                    raise CacheCorruptError(str(self.path), str(exc)) from exc
                raise CacheStoreError(f"cache store {self.path}: {exc}") from exc
            except sqlite3.DatabaseError as exc:
                raise CacheCorruptError(str(self.path), str(exc)) from exc

    @contextlib.contextmanager
    def _write(self) -> Any:
        with self._guard() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- CacheStore ---------------------------------------------------------------------------
    def put(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        blob = None if vector is None else _as_blob(vector)
        with self._write() as conn:
            conn.execute("DELETE FROM entries WHERE tenant = ? AND llm_hash = ? AND prompt_key = ?",
                         (entry.tenant, entry.llm_hash, entry.prompt_key))
            conn.execute(
                "INSERT INTO entries (tenant, llm_hash, prompt_key, prompt, payload, vector, created_at, expires_at,"
                " last_access, input_tokens, output_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (entry.tenant, entry.llm_hash, entry.prompt_key, entry.prompt, entry.payload, blob,
                 entry.created_at, entry.expires_at, entry.created_at, entry.input_tokens, entry.output_tokens))
            if self.max_entries is not None:
                (total,) = conn.execute("SELECT value FROM totals WHERE name = 'entries'").fetchone()
                if total > self.max_entries:
                    conn.execute("DELETE FROM entries WHERE id IN (SELECT id FROM entries ORDER BY last_access, id"
                                 " LIMIT ?)", (total - self.max_entries,))

    def get(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        with self._guard() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE tenant = ? AND llm_hash = ? AND prompt_key = ?"
                               " AND (expires_at IS NULL OR expires_at > ?)",
                               (namespace.tenant, namespace.llm_hash, prompt_key, now)).fetchone()
        if row is None:
            return None
        self.touch(namespace, prompt_key, now=now)
        return _entry(row)

    def search(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
               now: float) -> list[SemanticCandidate]:
        import numpy as np

        with self._guard() as conn:
            index = self._refresh(conn, namespace)
            if index is None or not len(index.ids):
                return []
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
            # Stale rows (deleted elsewhere) are skipped below; ask for extra to keep k live ones.
            want = min(len(index.ids), k + 8 + (index.deletes - index.deletes_at_build))
            top, sims = self._nearest(index, query, want)
            keep = sims >= min_similarity
            top, sims = top[keep], sims[keep]
            if not len(top):
                return []
            ids = [int(index.ids[i]) for i in top]
            marks = ",".join("?" * len(ids))
            rows = conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE id IN ({marks}) AND tenant = ? AND llm_hash = ?"
                                " AND (expires_at IS NULL OR expires_at > ?)",
                                (*ids, namespace.tenant, namespace.llm_hash, now)).fetchall()
        by_id = {row[0]: row for row in rows}
        out = [SemanticCandidate(entry=_entry(by_id[i]), similarity=float(sim))
               for i, sim in zip(ids, sims, strict=True) if i in by_id]
        return out[:k]

    def touch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        with self._guard() as conn:
            conn.execute("UPDATE entries SET last_access = ? WHERE tenant = ? AND llm_hash = ? AND prompt_key = ?",
                         (now, namespace.tenant, namespace.llm_hash, prompt_key))

    def invalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                   prompt_key: str | None = None) -> int:
        if prompt_key is not None and namespace is None:
            raise InvalidParameterError("prompt_key", allowed="a key together with its namespace",
                                        received=prompt_key)
        where: str = "1"
        args: tuple[str, ...] = ()
        if namespace is not None:
            where, args = "tenant = ? AND llm_hash = ?", (namespace.tenant, namespace.llm_hash)
            if prompt_key is not None:
                where, args = f"{where} AND prompt_key = ?", (*args, prompt_key)
        elif tenant is not None:
            where, args = "tenant = ?", (tenant,)
        with self._write() as conn:
            return conn.execute(f"DELETE FROM entries WHERE {where}", args).rowcount

    def count(self, *, tenant: str | None = None) -> int:
        with self._guard() as conn:
            if tenant is None:
                return int(conn.execute("SELECT value FROM totals WHERE name = 'entries'").fetchone()[0])
            return int(conn.execute("SELECT count(*) FROM entries WHERE tenant = ?", (tenant,)).fetchone()[0])

    def purge_expired(self, *, now: float) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM entries WHERE expires_at IS NOT NULL AND expires_at <= ?",
                                (now,)).rowcount

    def integrity_check(self) -> str:
        """SQLite's ``PRAGMA integrity_check`` verdict ("ok" when the file is sound)."""
        with self._guard() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._indexes.clear()

    # -- vector index -------------------------------------------------------------------------
    def _nearest(self, index: _NamespaceIndex, query: Any, want: int) -> tuple[Any, Any]:
        """Row positions of the ``want`` nearest vectors, best first, and their cosines.

        Exact below ``ann_min_entries``; above, a faiss HNSW graph (the cache extra) kept in step
        with the matrix, because an exact scan of 100k x 384 floats is memory-bound at ~7 ms here.
        """
        import numpy as np

        rows = len(index.ids)
        if rows >= self.ann_min_entries and _faiss() is not None:
            faiss = _faiss()
            if index.ann is None:
                index.ann = faiss.IndexHNSWFlat(index.matrix.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
                index.ann.hnsw.efConstruction = 64
                index.ann_rows = 0
            if index.ann_rows < rows:
                index.ann.add(np.ascontiguousarray(index.matrix[index.ann_rows:]))
                index.ann_rows = rows
            index.ann.hnsw.efSearch = max(64, 4 * want)
            sims, top = index.ann.search(query.reshape(1, -1), want)
            found = top[0] >= 0
            return top[0][found], sims[0][found]
        sims = _similarities(index.matrix, query)
        top = np.argpartition(-sims, want - 1)[:want] if want < rows else np.arange(rows)
        top = top[np.argsort(-sims[top])]
        return top, sims[top]

    def _refresh(self, conn: sqlite3.Connection, namespace: CacheNamespace) -> _NamespaceIndex | None:
        import numpy as np

        key = (namespace.tenant, namespace.llm_hash)
        row = conn.execute("SELECT inserts, deletes FROM namespaces WHERE tenant = ? AND llm_hash = ?", key).fetchone()
        if row is None:
            self._indexes.pop(key, None)
            return None
        inserts, deletes = row
        index = self._indexes.get(key)
        if index is not None and (index.inserts, index.deletes) == (inserts, deletes):
            return index
        stale = deletes - (index.deletes_at_build if index else 0)
        if index is None or stale > _STALE_SHARE * max(len(index.ids), 1):
            rows = conn.execute("SELECT id, vector FROM entries WHERE tenant = ? AND llm_hash = ? AND vector IS NOT NULL"
                                " ORDER BY id", key).fetchall()
            index = _NamespaceIndex(inserts=inserts, deletes=deletes, deletes_at_build=deletes,
                                    max_id=max((r[0] for r in rows), default=0), ids=np.zeros(0, dtype=np.int64),
                                    matrix=np.zeros((0, 0), dtype=np.float32))
        else:
            rows = conn.execute("SELECT id, vector FROM entries WHERE tenant = ? AND llm_hash = ? AND id > ?"
                                " AND vector IS NOT NULL ORDER BY id", (*key, index.max_id)).fetchall()
            index.inserts, index.deletes = inserts, deletes
        if rows:
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            if index.matrix.size and index.matrix.shape[1] != matrix.shape[1]:
                raise InvalidParameterError("vector", allowed=f"{index.matrix.shape[1]} dimensions (this store's)",
                                            received=f"{matrix.shape[1]} dimensions")
            index.ids = np.concatenate([index.ids, ids]) if len(index.ids) else ids
            index.matrix = np.vstack([index.matrix, matrix]) if index.matrix.size else matrix
            index.max_id = int(ids[-1])
        self._indexes[key] = index
        return index


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _similarities(matrix: Any, query: Any) -> Any:
    """matrix @ query on one BLAS thread: the product is memory-bound (one thread is as fast), and
    idle BLAS threads spin against the embedder's torch threads on small CPUs (measured: lookups
    2x slower back to back)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the models extra
        return matrix @ query
    with threadpool_limits(limits=1, user_api="blas"):
        return matrix @ query


def _as_blob(vector: Any) -> bytes:
    import numpy as np

    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise InvalidParameterError("vector", allowed="finite floats", received="NaN or infinity")
    return array.tobytes()


def _entry(row: tuple[Any, ...]) -> CacheEntry:
    _, tenant, llm_hash, prompt_key, prompt, payload, created_at, expires_at, input_tokens, output_tokens = row
    return CacheEntry(tenant=tenant, llm_hash=llm_hash, prompt_key=prompt_key, prompt=prompt, payload=payload,
                      created_at=created_at, expires_at=expires_at, input_tokens=input_tokens,
                      output_tokens=output_tokens)
