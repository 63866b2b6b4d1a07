"""Typed values of the response cache: namespaces, stored entries, lookups and stats."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from lean_core.errors import CacheStoreError, InvalidParameterError

__all__ = [
    "CacheEntry",
    "CacheLookup",
    "CacheNamespace",
    "CacheStats",
    "HitKind",
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

    @property
    def hit(self) -> bool:
        return self.entry is not None


@dataclass
class CacheStats:
    """Counters since the cache object was created (per process)."""

    lookups: int = 0
    exact_hits: int = 0
    semantic_hits: int = 0
    rejected_candidates: int = 0
    misses: int = 0
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
    explorations: int = 0
    """With an error budget: misses whose answer is compared with a candidate's cached answer
    (also counted in ``misses``). ``audits`` of them were would-be hits checked on purpose."""
    audits: int = 0
    exploration_agreements: int = 0
    """Explorations whose fresh answer was equivalent to the cached one (serving would have been right)."""
    exploration_disagreements: int = 0
    """Explorations whose fresh answer differed (or whose equivalence check failed)."""
    equivalence_failures: int = 0
    """Equivalence checks that raised (counted as "not equivalent")."""
    evidence_rebuilds: int = 0
    """Times a damaged evidence table was found and rebuilt empty (that lookup served nothing)."""

    @property
    def hits(self) -> int:
        return self.exact_hits + self.semantic_hits

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
