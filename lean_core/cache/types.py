"""Typed values of the response cache: namespaces, stored entries, lookups and stats."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from lean_core.cache.error_budget import ErrorEstimate
from lean_core.errors import CacheStoreError, InvalidParameterError

if TYPE_CHECKING:
    from lean_core.cache.error_budget import Basis
    from lean_core.ledger_records import CacheMissReason

__all__ = [
    "CacheEntry",
    "CacheLookup",
    "CacheNamespace",
    "CacheStats",
    "HitKind",
    "NamespaceCacheStats",
    "SemanticCandidate",
    "UnstorableEntryError",
    "check_tenant",
]

HitKind = Literal["exact", "semantic"]
_MAX_TENANT_CHARS = 256


class UnstorableEntryError(CacheStoreError, ValueError):
    """An entry a store cannot hold: a text field longer than 64 Mi characters as stored, or a token
    count above 2**31 - 1. Nothing was written; callers treat the answer as "not cached".

    Any str is storable otherwise (NUL and lone surrogates included): the stores escape what their
    database cannot hold and read it back exactly.
    """


def check_tenant(tenant: object, *, parameter: str = "tenant") -> str:
    """``tenant`` if it is a valid tenant id (a non-empty str of at most 256 characters), else a named error."""
    if not isinstance(tenant, str) or not tenant or len(tenant) > _MAX_TENANT_CHARS:
        raise InvalidParameterError(parameter, allowed=f"a non-empty str of at most {_MAX_TENANT_CHARS} characters",
                                    received=tenant)
    return tenant


@dataclass(frozen=True)
class CacheNamespace:
    """Where an answer may be served: one tenant, one model identity with its generation parameters.

    Every lookup is confined to its namespace *before* any similarity search (stores filter on the
    namespace in the same query), so no tenant or model can be served another's answer.
    """

    tenant: str
    """Who owns the entry (user, organisation, API key id). Non-empty, at most 256 characters."""
    llm: str
    """The model identity and generation parameters, e.g. LangChain's ``llm_string``."""

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        if not isinstance(self.llm, str) or not self.llm:
            raise InvalidParameterError("llm", allowed="a non-empty str naming the model and its parameters",
                                        received=self.llm)

    @property
    def llm_hash(self) -> str:
        """A fixed-length digest of ``llm`` (stores index this, not the long string)."""
        return hashlib.sha256(self.llm.encode("utf-8")).hexdigest()

    @property
    def key(self) -> str:
        """A digest of (tenant, llm): the namespace's identity in stores."""
        return hashlib.sha256(json.dumps([self.tenant, self.llm]).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cached response as stored."""

    tenant: str
    llm_hash: str
    prompt_key: str
    """sha256 of the normalised prompt: the exact-lookup key within the namespace."""
    prompt: str
    payload: str
    """The cached response, serialised by the adapter (JSON text for LangChain and LlamaIndex)."""
    created_at: float
    """Unix time of the write."""
    expires_at: float | None = None
    """Unix time after which the entry is never served; None keeps it until evicted."""
    input_tokens: int = 0
    """Prompt tokens of the original call: what a hit saves on input."""
    output_tokens: int = 0
    """Response tokens of the original call: what a hit saves on output."""

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True)
class SemanticCandidate:
    """A same-namespace entry returned by vector search, before verification."""

    entry: CacheEntry
    similarity: float
    """Cosine similarity of the two prompts' embeddings, in [-1, 1]."""


@dataclass(frozen=True)
class CacheLookup:
    """The outcome of one lookup."""

    entry: CacheEntry | None
    """The entry served, or None on a miss."""
    kind: HitKind | None = None
    """"exact" (same normalised prompt) or "semantic" (verified near-duplicate); None on a miss."""
    similarity: float | None = None
    """Embedding cosine of the served semantic hit (1.0 for exact hits)."""
    probability: float | None = None
    """The verifier's calibrated probability that the prompts ask the same thing (semantic hits)."""
    rejected: int = 0
    """Semantic candidates the verifier refused during this lookup."""
    rejection_reasons: tuple[str, ...] = ()
    """Why each rejected candidate was refused (e.g. "numbers differ", "roles swapped")."""
    seconds: float = 0.0
    """Wall time of the lookup, embedding included."""
    exploration: bool = False
    """With an error budget: this miss doubles as an exploration (the answer the caller stores
    next is compared with the candidate's cached answer, and the outcome kept as evidence)."""
    audit: bool = False
    """The exploration checks a would-be hit on purpose (the random sample behind the error estimate)."""
    miss_reason: CacheMissReason | None = None
    """Why nothing was served (None on a hit); recorded with the ledger's cache miss."""
    vetoes: int = 0
    """Candidates a hard veto refused (numbers, entities, negation, roles, ...; also in ``rejected``)."""

    @property
    def hit(self) -> bool:
        return self.entry is not None


@dataclass(kw_only=True)
class _LookupCounts:
    """What :class:`CacheStats` and :class:`NamespaceCacheStats` count alike for one lookup."""

    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    miss_reasons: dict[CacheMissReason, int] = field(default_factory=dict)
    """Misses by reason (:data:`~lean_core.ledger_records.CacheMissReason`: ``exploration``,
    ``vetoed``, ``no_entry``, ...), as the ledger records them."""
    explorations: int = 0
    """With an error budget: misses whose answer is compared with a candidate's cached answer
    (also counted in ``misses``). ``audits`` of them were would-be hits checked on purpose."""
    audits: int = 0
    vetoes: int = 0
    """Candidates a hard veto refused."""
    exploration_agreements: int = 0
    """Explorations whose fresh answer was equivalent to the cached one (serving would have been right)."""
    exploration_disagreements: int = 0
    """Explorations whose fresh answer differed (or whose equivalence check failed)."""

    @property
    def hits(self) -> int:
        return self.exact_hits + self.semantic_hits

    def count_lookup(self, result: CacheLookup) -> None:
        """Count one lookup's outcome (not thread-safe: the cache holds its stats lock)."""
        self.lookups += 1
        self.explorations += result.exploration
        self.audits += result.audit
        self.vetoes += result.vetoes
        if result.kind == "exact":
            self.exact_hits += 1
        elif result.kind == "semantic":
            self.semantic_hits += 1
        else:
            self.misses += 1
            if result.miss_reason is not None:
                self.miss_reasons[result.miss_reason] = self.miss_reasons.get(result.miss_reason, 0) + 1


@dataclass
class NamespaceCacheStats(_LookupCounts):
    """One namespace's counters since the cache object was created (per process), and its audited
    error as this cache last saw it."""

    tenant: str
    llm: str
    """The namespace's model identity (:attr:`CacheNamespace.llm`)."""
    audited: dict[Basis, ErrorEstimate] = field(default_factory=dict)
    """With an error budget: the namespace's audits per basis (the evidence that certifies it,
    shared by every process on the store), read from the store when a lookup consults that basis,
    plus the audits this cache settled since."""

    @property
    def error_estimate(self) -> ErrorEstimate | None:
        """The audited error of the namespace's semantic hits, every basis seen pooled; None before
        a lookup consulted a basis (or without an error budget)."""
        if not self.audited:
            return None
        estimates = list(self.audited.values())
        return ErrorEstimate(audits=sum(e.audits for e in estimates), wrong=sum(e.wrong for e in estimates),
                             confidence=estimates[0].confidence)

    @property
    def estimated_error_rate(self) -> float | None:
        """The one-sided upper bound (at the budget's confidence) of the share of wrong semantic hits,
        the number the budget keeps at or below δ; None before the first audit."""
        estimate = self.error_estimate
        return None if estimate is None or not estimate.audits else estimate.upper_bound


@dataclass
class CacheStats(_LookupCounts):
    """Counters since the cache object was created (per process); ``vetoes`` are also in
    ``rejected_candidates``, by reason in ``rejection_reasons``."""

    MAX_NAMESPACES: ClassVar[int] = 1024
    """How many namespaces ``by_namespace`` keeps (the least recently looked-up one goes first)."""

    rejected_candidates: int = 0
    writes: int = 0
    rejection_reasons: dict[str, int] = field(default_factory=dict)
    no_tenant: int = 0
    """Lookups neither served nor followed by a write because no tenant could be resolved (also
    counted in ``lookups`` and ``misses``): the cache fails closed rather than share a namespace."""
    lookup_errors: int = 0
    """Lookups in which the store, the embedder or encoding failed; each was answered as a miss."""
    store_errors: int = 0
    """Writes that failed (store, embedder, encoding, or an entry the store cannot hold); the answer
    still reached the caller, it was only not cached."""
    equivalence_failures: int = 0
    """Equivalence checks that raised (counted as "not equivalent")."""
    evidence_rebuilds: int = 0
    """Times a damaged evidence table was found and rebuilt empty (that lookup served nothing)."""
    by_namespace: dict[str, NamespaceCacheStats] = field(default_factory=dict)
    """The same per namespace, keyed by :attr:`CacheNamespace.key` (see :meth:`namespace`), with its
    estimated error rate: the ``MAX_NAMESPACES`` most recently looked-up namespaces (a lookup
    without a tenant has none)."""

    def namespace(self, namespace: CacheNamespace) -> NamespaceCacheStats | None:
        """``namespace``'s counters, or None when it was not looked up (or was let go)."""
        return self.by_namespace.get(namespace.key)

    def namespace_counters(self, namespace: CacheNamespace) -> NamespaceCacheStats:
        """``namespace``'s counters, created if needed and made the most recently used (the
        ``MAX_NAMESPACES`` most recent are kept; not thread-safe: the cache holds its stats lock)."""
        kept = self.by_namespace
        counters = kept.pop(namespace.key, None) or NamespaceCacheStats(tenant=namespace.tenant, llm=namespace.llm)
        kept[namespace.key] = counters
        while len(kept) > self.MAX_NAMESPACES:
            del kept[next(iter(kept))]
        return counters

    def count(self, result: CacheLookup, namespace: CacheNamespace | None) -> None:
        """Count one lookup, overall and in its namespace (not thread-safe, as above)."""
        self.no_tenant += namespace is None
        self.rejected_candidates += result.rejected
        for reason in result.rejection_reasons:
            self.rejection_reasons[reason] = self.rejection_reasons.get(reason, 0) + 1
        self.count_lookup(result)
        if namespace is not None:
            self.namespace_counters(namespace).count_lookup(result)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.lookups if self.lookups else 0.0

    def __str__(self) -> str:
        """One line for logs and reports: every counter, and why candidates were rejected."""
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.rejection_reasons.items()))
        return (f"lookups {self.lookups}, exact hits {self.exact_hits}, semantic hits {self.semantic_hits}, "
                f"rejected candidates {self.rejected_candidates}{f' ({reasons})' if reasons else ''}, "
                f"misses {self.misses}, writes {self.writes}{self._troubles()}")

    def _troubles(self) -> str:
        # Only counters that are not zero (failures, the error budget's work), so the usual line stays short.
        parts = [f"{label} {n}" for label, n in (
            ("no tenant", self.no_tenant), ("lookup errors", self.lookup_errors), ("store errors", self.store_errors),
            ("explorations", self.explorations), ("audits", self.audits),
            ("exploration agreements", self.exploration_agreements),
            ("exploration disagreements", self.exploration_disagreements),
            ("equivalence failures", self.equivalence_failures), ("evidence rebuilds", self.evidence_rebuilds)) if n]
        return "".join(f", {part}" for part in parts)
