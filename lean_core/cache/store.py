"""The storage interface behind :class:`~lean_core.cache.ResponseCache`.

A store keeps entries and their prompt embeddings. Every read is confined to one namespace in the
store's own query (a ``WHERE tenant = ? AND llm_hash = ?`` clause, or a per-namespace index), so a
search can never return another tenant's or another model's entry, whatever the vectors say.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from lean_core.cache.types import CacheEntry, CacheNamespace, SemanticCandidate

__all__ = ["CacheStore"]


class CacheStore(ABC):
    """Entries plus a vector index, namespaced, with TTL and LRU eviction.

    Sync methods are the contract; the async ones run them in a worker thread unless a store has
    real async I/O (the PostgreSQL store does).
    """

    max_entries: int | None
    """The store-wide size bound, or None. Beyond it the tenant holding the most entries loses its
    least recently used ones (ties: the writing tenant, then the first by name), so one tenant's
    writes never evict a tenant holding at most ``max_entries / tenants present`` entries."""
    max_entries_per_tenant: int | None = None
    """The size bound of one tenant, or None; beyond it the writing tenant loses its own least
    recently used entries."""

    @abstractmethod
    def put(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        """Insert or replace the entry with the same (namespace, prompt_key), then evict fairly
        beyond ``max_entries_per_tenant`` and ``max_entries``. Any str is stored exactly; an entry
        beyond the store's limits raises :class:`~lean_core.cache.types.UnstorableEntryError`."""

    @abstractmethod
    def get(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        """The live entry for an exact key in this namespace (and mark it used), or None."""

    @abstractmethod
    def search(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
               now: float) -> list[SemanticCandidate]:
        """Up to ``k`` live entries of this namespace whose embeddings are nearest, best first."""

    @abstractmethod
    def touch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        """Mark an entry used (LRU)."""

    @abstractmethod
    def invalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                   prompt_key: str | None = None) -> int:
        """Delete entries: everything, a tenant's, a namespace's, or one key in a namespace. Returns the count."""

    @abstractmethod
    def count(self, *, tenant: str | None = None) -> int:
        """Stored entries (expired ones not yet purged included)."""

    @abstractmethod
    def purge_expired(self, *, now: float) -> int:
        """Delete expired entries; returns how many."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    def integrity_check(self) -> str:
        """"ok" when the store is sound, else a description of the damage."""
        return "ok"

    async def aput(self, entry: CacheEntry, vector: np.ndarray | None) -> None:
        await asyncio.to_thread(self.put, entry, vector)

    async def aget(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> CacheEntry | None:
        return await asyncio.to_thread(self.get, namespace, prompt_key, now=now)

    async def asearch(self, namespace: CacheNamespace, vector: np.ndarray, *, k: int, min_similarity: float,
                      now: float) -> list[SemanticCandidate]:
        return await asyncio.to_thread(self.search, namespace, vector, k=k, min_similarity=min_similarity, now=now)

    async def atouch(self, namespace: CacheNamespace, prompt_key: str, *, now: float) -> None:
        await asyncio.to_thread(self.touch, namespace, prompt_key, now=now)

    async def ainvalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                          prompt_key: str | None = None) -> int:
        return await asyncio.to_thread(self.invalidate, tenant=tenant, namespace=namespace, prompt_key=prompt_key)

    def __enter__(self) -> CacheStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
