"""The storage interface behind :class:`~lean_core.cache.ResponseCache`.

A store keeps entries and their prompt embeddings. Every read is confined to one namespace in the
store's own query (a ``WHERE tenant = ? AND llm_hash = ?`` clause, or a per-namespace index), so a
search can never return another tenant's or another model's entry, whatever the vectors say.
"""

from __future__ import annotations

import asyncio
import threading
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from lean_core.cache.error_budget import BASIS_CODES, ErrorEstimate

if TYPE_CHECKING:
    import numpy as np

    from lean_core.cache.error_budget import Basis, Observation
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

    # -- error-budget evidence (lean_core.cache.error_budget) ----------------------------------
    # The SQLite and PostgreSQL stores persist it beside the entries; this default keeps it in
    # memory for other stores (it is not deleted with entries, and lost on restart).
    def record_evidence(self, namespace: CacheNamespace, prompt_key: str, observation: Observation, *,
                        now: float) -> bool:
        """Append one observation about an entry; False when the entry is gone (nothing recorded)."""
        with self._memory_lock():
            self._memory().setdefault((namespace.key, prompt_key), []).append(observation)
        return True

    def evidence(self, namespace: CacheNamespace, prompt_key: str) -> tuple[Observation, ...]:
        """The entry's observations, oldest first. A store that finds its evidence damaged rebuilds
        it empty and raises :class:`~lean_core.cache.error_budget.EvidenceDamagedError`."""
        with self._memory_lock():
            return tuple(self._memory().get((namespace.key, prompt_key), ()))

    def audited(self, namespace: CacheNamespace, basis: Basis | None, *, confidence: float) -> ErrorEstimate:
        """The namespace's audits of ``basis`` (None: of every basis) as an error estimate."""
        codes = {BASIS_CODES[basis]} if basis is not None else {1, 2}
        audits = wrong = 0
        with self._memory_lock():
            for (key, _), observations in self._memory().items():
                if key != namespace.key:
                    continue
                for o in observations:
                    if BASIS_CODES[o.basis] in codes:
                        audits += 1
                        wrong += not o.correct
        return ErrorEstimate(audits=audits, wrong=wrong, confidence=confidence)

    def _memory(self) -> dict[tuple[str, str], list[Observation]]:
        memory: dict[tuple[str, str], list[Observation]] | None = self.__dict__.get("_evidence_memory")
        if memory is None:
            memory = self.__dict__["_evidence_memory"] = {}
        return memory

    def _memory_lock(self) -> threading.Lock:
        lock: threading.Lock | None = self.__dict__.get("_evidence_memory_lock")
        if lock is None:
            lock = self.__dict__.setdefault("_evidence_memory_lock", threading.Lock())
        return lock

    async def arecord_evidence(self, namespace: CacheNamespace, prompt_key: str, observation: Observation, *,
                               now: float) -> bool:
        return await asyncio.to_thread(self.record_evidence, namespace, prompt_key, observation, now=now)

    async def aevidence(self, namespace: CacheNamespace, prompt_key: str) -> tuple[Observation, ...]:
        return await asyncio.to_thread(self.evidence, namespace, prompt_key)

    async def aaudited(self, namespace: CacheNamespace, basis: Basis | None, *, confidence: float) -> ErrorEstimate:
        return await asyncio.to_thread(self.audited, namespace, basis, confidence=confidence)

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
