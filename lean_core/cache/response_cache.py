"""The response cache: exact lookup, then verified semantic lookup, inside one namespace.

Frameworks adapt this class (``lean_chain.LeanCache``, ``lean_index.LeanCachedLLM``); it knows
nothing about LangChain or LlamaIndex. Payloads are opaque strings that the adapter serialises.

Two rules from issue 22 live here, so every adapter gets them:

* **No tenant, no sharing.** ``namespace=None`` (the adapter could not resolve a tenant) is a
  miss that touches no store, and an update that stores nothing; it is counted in
  ``CacheStats.no_tenant`` and recorded in the ledger as a miss without a tenant.
* **An error budget instead of a threshold** (``max_error_rate=δ``, :mod:`lean_core.cache.error_budget`):
  behind the hard vetoes, a semantic candidate is served only where the evidence of explorations
  (fresh answers compared with cached ones) bounds the share of wrong hits by δ. A miss that
  explores is remembered here, in memory, until the adapter stores the model's answer with
  :meth:`ResponseCache.update`, which compares the two answers and records the outcome.
* **The cache never breaks a call.** Any failure of the store, the embedder or the encoding of a
  prompt makes a lookup a miss and an update a no-op; it is counted (``lookup_errors``,
  ``store_errors``) and logged once per kind of failure, never raised. Only misuse of this API
  (a prompt that is not a str, a bad ``ttl_s``) still raises.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from lean_core._validation import check_count
from lean_core.cache._inputs import brief, check_prompt, check_ttl, embeddable
from lean_core.cache.error_budget import (
    LOOK_ALIKE,
    ErrorBudget,
    ErrorEstimate,
    EvidenceDamagedError,
    Observation,
    PendingExploration,
    PendingExplorations,
    RecentAudits,
    async_equivalence,
    check_max_error_rate,
    resolve_equivalence,
)
from lean_core.cache.normalize import normalize_prompt, prompt_key
from lean_core.cache.types import (
    CacheEntry,
    CacheLookup,
    CacheNamespace,
    CacheStats,
)
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import SavingsEvent

if TYPE_CHECKING:
    from collections.abc import Callable

    from lean_core.cache.answer_equivalence import AnswerEquivalence
    from lean_core.cache.error_budget import Basis, BudgetDecision
    from lean_core.cache.store import CacheStore
    from lean_core.cache.types import SemanticCandidate
    from lean_core.cache.verifier import SemanticVerifier, Verdict
    from lean_core.embeddings import Embedder
    from lean_core.ledger import CostLedger
    from lean_core.ledger_records import CacheMissReason

__all__ = ["CacheMode", "ResponseCache", "check_ttl", "embeddable"]

CacheMode = Literal["exact", "semantic"]
_Operation = Literal["lookup", "store"]
_RECENT_VECTORS = 256
_log = logging.getLogger(__name__)


class ResponseCache:
    """Exact and verified semantic response caching with tenant isolation, TTL and LRU eviction.

    Args:
        store: where entries live; default an embedded :class:`SQLiteCacheStore` at
            ``$LEAN_INFERENCE_CACHE`` or ``~/.cache/lean-inference/responses.sqlite3``.
        mode: ``"semantic"`` (exact first, then verified near-duplicates) or ``"exact"`` only.
        ttl_s: default time to live in seconds for new entries; None keeps them until evicted.
        embedder: the sentence embedder (default the bundled MiniLM).
        verifier: the semantic-hit verifier (default the calibration shipped for MiniLM).
        candidates: how many nearest same-namespace entries the verifier may examine per lookup.
        ledger: where hits and misses are recorded as layer "cache".
        max_error_rate: δ in (0, 0.5]: serve a semantic hit only where the evidence bounds the share
            of wrong semantic hits by δ (:mod:`lean_core.cache.error_budget`). None (default): the
            verifier's static threshold decides, as before.
        answer_equivalence: with ``max_error_rate``, how a fresh answer is compared with a cached
            one: an :class:`~lean_core.cache.answer_equivalence.AnswerEquivalence` or a callable
            ``(cached_payload, fresh_payload) -> bool``; None: ``default_answer_equivalence()``.
        confidence: the one-sided confidence, in (0.5, 1), of the bound kept under δ (default 0.9).
        seed: seeds the exploration coin, so a replayed stream decides identically (None: unseeded).
    """

    def __init__(self, store: CacheStore | None = None, *, mode: CacheMode = "semantic", ttl_s: float | None = None,
                 embedder: Embedder | None = None, verifier: SemanticVerifier | None = None, candidates: int = 4,
                 ledger: CostLedger | None = None, max_error_rate: float | None = None,
                 answer_equivalence: AnswerEquivalence | Callable[[str, str], bool] | None = None,
                 confidence: float = 0.9, seed: int | None = None) -> None:
        if mode not in ("exact", "semantic"):
            raise InvalidParameterError("mode", allowed="'exact' or 'semantic'", received=mode)
        check_ttl(ttl_s)
        if not isinstance(candidates, int) or not 1 <= candidates <= 64:
            raise InvalidParameterError("candidates", allowed="an int in [1, 64]", received=candidates)
        self._store = store
        self.mode: CacheMode = mode
        self.ttl_s = ttl_s
        self._embedder = embedder
        self._verifier = verifier
        self.candidates = candidates
        self.ledger = ledger
        self.stats = CacheStats()
        self._stats_lock = threading.Lock()
        self._recent_vectors: dict[str, Any] = {}
        self._warned: set[tuple[_Operation, str]] = set()
        delta = check_max_error_rate(max_error_rate)
        self.error_budget: ErrorBudget | None = None
        """The error budget's decision (None without ``max_error_rate``)."""
        budget = ErrorBudget(delta if delta is not None else 0.5, confidence=confidence, seed=seed)  # validates
        if delta is not None:
            self.error_budget = budget
        if answer_equivalence is not None:
            resolve_equivalence(answer_equivalence)  # validates the type now
        self._equivalence_object: object = answer_equivalence
        self._equivalent: Callable[[str, str], bool] | None = None
        self._pending = PendingExplorations()
        self._audits = RecentAudits()

    # -- lazily built parts (constructors do no I/O) --------------------------------------------
    @property
    def store(self) -> CacheStore:
        if self._store is None:
            from lean_core.cache.sqlite_store import SQLiteCacheStore

            self._store = SQLiteCacheStore()
        return self._store

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from lean_core.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    @property
    def verifier(self) -> SemanticVerifier:
        if self._verifier is None:
            from lean_core.cache.verifier import SemanticVerifier

            self._verifier = SemanticVerifier()
        return self._verifier

    # -- lookups --------------------------------------------------------------------------------
    def lookup(self, prompt: str, *, namespace: CacheNamespace | None, model: str | None = None,
               exact_only: bool = False) -> CacheLookup:
        """Serve an exact or verified semantic hit from ``namespace``, or report a miss.

        ``namespace`` None: no tenant could be resolved, so nothing is looked up (a "no tenant"
        miss). ``exact_only``: this prompt may only be served exactly, whatever the mode (a key that
        :class:`~lean_core.cache.ConversationKey` marks ``semantic=False``). A failing store or
        embedder makes this a miss, counted in ``stats.lookup_errors``; it never raises."""
        started = time.perf_counter()
        check_prompt(prompt)
        if namespace is None:
            return self._finish(CacheLookup(entry=None, miss_reason="no_tenant"), started, None, model)
        try:
            result = self._find(prompt, namespace, exact_only)
        except Exception as exc:  # the cache must never break the call it serves
            self.report_failure("lookup", exc)
            result = CacheLookup(entry=None, miss_reason="lookup_error")
        return self._finish(result, started, namespace, model)

    async def alookup(self, prompt: str, *, namespace: CacheNamespace | None, model: str | None = None,
                      exact_only: bool = False) -> CacheLookup:
        """Async :meth:`lookup`: store I/O is awaited (native on PostgreSQL), embedding runs off the loop."""
        started = time.perf_counter()
        check_prompt(prompt)
        if namespace is None:
            return await self._afinish(CacheLookup(entry=None, miss_reason="no_tenant"), started, None, model)
        try:
            result = await self._afind(prompt, namespace, exact_only)
        except Exception as exc:
            self.report_failure("lookup", exc)
            result = CacheLookup(entry=None, miss_reason="lookup_error")
        return await self._afinish(result, started, namespace, model)

    def _find(self, prompt: str, namespace: CacheNamespace, exact_only: bool) -> CacheLookup:
        now = time.time()
        entry = self.store.get(namespace, prompt_key(prompt), now=now)
        if entry is not None:
            return CacheLookup(entry=entry, kind="exact", similarity=1.0, probability=1.0)
        if self.mode == "exact" or exact_only:
            return CacheLookup(entry=None, miss_reason="no_entry")
        vector = self._vector(prompt)
        found = self.store.search(namespace, vector, k=self.candidates,
                                  min_similarity=self.verifier.min_similarity, now=now)
        if self.error_budget is None:
            result = self._verify(prompt, found)
        else:
            result = self._budget_verify(prompt, namespace, found)
        if result.entry is not None:
            self.store.touch(namespace, result.entry.prompt_key, now=now)
        return result

    async def _afind(self, prompt: str, namespace: CacheNamespace, exact_only: bool) -> CacheLookup:
        now = time.time()
        entry = await self.store.aget(namespace, prompt_key(prompt), now=now)
        if entry is not None:
            return CacheLookup(entry=entry, kind="exact", similarity=1.0, probability=1.0)
        if self.mode == "exact" or exact_only:
            return CacheLookup(entry=None, miss_reason="no_entry")
        vector = await asyncio.to_thread(self._vector, prompt)
        found = await self.store.asearch(namespace, vector, k=self.candidates,
                                         min_similarity=self.verifier.min_similarity, now=now)
        if self.error_budget is None:
            result = self._verify(prompt, found)
        else:
            result = await self._abudget_verify(prompt, namespace, found)
        if result.entry is not None:
            await self.store.atouch(namespace, result.entry.prompt_key, now=now)
        return result

    def _vector(self, prompt: str) -> Any:
        """The prompt's embedding; the last few are kept, since a miss is usually followed by an
        update of the same prompt (the answer arriving), which would embed it again."""
        text = embeddable(normalize_prompt(prompt))
        with self._stats_lock:
            vector = self._recent_vectors.pop(text, None)
            if vector is not None:
                self._recent_vectors[text] = vector
                return vector
        vector = self.embedder.encode([text])[0]
        with self._stats_lock:
            self._recent_vectors[text] = vector
            while len(self._recent_vectors) > _RECENT_VECTORS:
                self._recent_vectors.pop(next(iter(self._recent_vectors)))
        return vector

    def _verify(self, prompt: str, found: list[Any]) -> CacheLookup:
        reasons: list[str] = []
        for candidate in found:
            verdict = self.verifier.verdict(prompt, candidate.entry.prompt, candidate.similarity)
            if verdict.accepted:
                return CacheLookup(entry=candidate.entry, kind="semantic", similarity=candidate.similarity,
                                   probability=verdict.probability, rejected=len(reasons),
                                   rejection_reasons=tuple(reasons), vetoes=_vetoes(reasons))
            reasons.append(verdict.reason)
        # As with a budget, the nearest candidate no hard veto refused decides: here the threshold did.
        reason: CacheMissReason = ("below_threshold" if any(r in _SOFT_REASONS for r in reasons)
                                   else "vetoed" if reasons else "no_entry")
        return CacheLookup(entry=None, rejected=len(reasons), rejection_reasons=tuple(reasons), miss_reason=reason,
                           vetoes=_vetoes(reasons))

    # -- the error budget (lean_core.cache.error_budget) ----------------------------------------
    # The sync and async paths share every line but the store's I/O: _budget_candidate picks the
    # candidate, _budget_basis and _certified decide, _decided turns the decision into a lookup.
    def _budget_candidate(self, prompt: str, found: list[SemanticCandidate]
                          ) -> tuple[SemanticCandidate, Verdict, list[str]] | CacheLookup:
        """The best candidate that no hard veto refuses (the budget decides the rest) with the
        vetoes met before it, or the miss when there is none."""
        reasons: list[str] = []
        for candidate in found:
            verdict = self.verifier.verdict(prompt, candidate.entry.prompt, candidate.similarity)
            if verdict.accepted or verdict.reason in _SOFT_REASONS:
                return candidate, verdict, reasons
            reasons.append(verdict.reason)
        return CacheLookup(entry=None, rejected=len(reasons), rejection_reasons=tuple(reasons),
                           miss_reason="vetoed" if reasons else "no_entry", vetoes=len(reasons))

    def _budget_basis(self, candidate: SemanticCandidate, verdict: Verdict,
                      observations: tuple[Observation, ...]) -> BudgetDecision | Basis:
        assert self.error_budget is not None
        return self.error_budget.basis(similarity=candidate.similarity, prior=verdict.probability,
                                       similarity_floor=self.verifier.calibration.similarity_floor,
                                       observations=observations)

    def _certified(self, namespace: CacheNamespace, basis: Basis, audited: ErrorEstimate) -> BudgetDecision:
        assert self.error_budget is not None
        with self._stats_lock:
            self.stats.namespace_counters(namespace).audited[basis] = audited
        return self.error_budget.certify(basis, audited)

    def _budget_verify(self, prompt: str, namespace: CacheNamespace, found: list[SemanticCandidate]) -> CacheLookup:
        picked = self._budget_candidate(prompt, found)
        if isinstance(picked, CacheLookup):
            return picked
        candidate, verdict, reasons = picked
        try:
            decision = self._budget_basis(candidate, verdict, self.store.evidence(namespace, candidate.entry.prompt_key))
            if isinstance(decision, str):
                decision = self._certified(namespace, decision, self._audited(namespace, decision))
        except EvidenceDamagedError as exc:
            return self._evidence_damaged(exc, reasons)
        return self._decided(prompt, namespace, candidate, verdict.probability, decision, reasons)

    async def _abudget_verify(self, prompt: str, namespace: CacheNamespace,
                              found: list[SemanticCandidate]) -> CacheLookup:
        picked = self._budget_candidate(prompt, found)
        if isinstance(picked, CacheLookup):
            return picked
        candidate, verdict, reasons = picked
        try:
            decision = self._budget_basis(candidate, verdict,
                                          await self.store.aevidence(namespace, candidate.entry.prompt_key))
            if isinstance(decision, str):
                decision = self._certified(namespace, decision, await self._aaudited(namespace, decision))
        except EvidenceDamagedError as exc:
            return self._evidence_damaged(exc, reasons)
        return self._decided(prompt, namespace, candidate, verdict.probability, decision, reasons)

    def _audited(self, namespace: CacheNamespace, basis: Basis) -> ErrorEstimate:
        assert self.error_budget is not None
        recent = self._audits.get(namespace, basis)
        return recent or self._audits.keep(namespace, basis, self.store.audited(
            namespace, basis, confidence=self.error_budget.confidence))

    async def _aaudited(self, namespace: CacheNamespace, basis: Basis) -> ErrorEstimate:
        assert self.error_budget is not None
        recent = self._audits.get(namespace, basis)
        return recent or self._audits.keep(namespace, basis, await self.store.aaudited(
            namespace, basis, confidence=self.error_budget.confidence))

    def _decided(self, prompt: str, namespace: CacheNamespace, candidate: SemanticCandidate, probability: float,
                 decision: BudgetDecision, reasons: list[str]) -> CacheLookup:
        vetoes = len(reasons)  # so far only hard vetoes (see _budget_candidate)
        if decision.serve:
            return CacheLookup(entry=candidate.entry, kind="semantic", similarity=candidate.similarity,
                               probability=probability, rejected=vetoes, rejection_reasons=tuple(reasons),
                               vetoes=vetoes)
        reasons.append(decision.reason)
        if decision.explore:
            self._pending.remember(namespace, prompt_key(prompt), PendingExploration(
                candidate_key=candidate.entry.prompt_key, cached_payload=candidate.entry.payload,
                similarity=candidate.similarity, basis=decision.basis, remembered_at=time.monotonic()))
        reason: CacheMissReason = ("exploration" if decision.explore
                                   else "look_alike" if decision.reason == LOOK_ALIKE else "uncertain")
        return CacheLookup(entry=None, rejected=len(reasons), rejection_reasons=tuple(reasons),
                           exploration=decision.explore, audit=decision.audit, miss_reason=reason, vetoes=vetoes)

    def _evidence_damaged(self, exc: EvidenceDamagedError, reasons: list[str]) -> CacheLookup:
        """The store found its evidence damaged and rebuilt it: this lookup serves nothing."""
        with self._stats_lock:
            self.stats.evidence_rebuilds += 1
        _log.warning("%s; this lookup is answered as a miss", brief(exc))
        vetoes = len(reasons)
        reasons.append("evidence rebuilt")
        return CacheLookup(entry=None, rejected=len(reasons), rejection_reasons=tuple(reasons),
                           miss_reason="evidence_rebuilt", vetoes=vetoes)

    def _equivalence(self) -> Callable[[str, str], bool]:
        if self._equivalent is None:
            self._equivalent = resolve_equivalence(self._equivalence_object)
        return self._equivalent

    def _settle(self, namespace: CacheNamespace, key: str, payload: str) -> tuple[PendingExploration, bool] | None:
        """The exploration waiting for this answer and whether the answers agree, or None."""
        pending = self._pending.take(namespace, key) if self.error_budget is not None else None
        if pending is None:
            return None
        try:
            return pending, bool(self._equivalence()(pending.cached_payload, payload))
        except Exception as exc:  # a failing check is "not equivalent", and counted
            return pending, self._equivalence_failed(exc)

    async def _asettle(self, namespace: CacheNamespace, key: str,
                       payload: str) -> tuple[PendingExploration, bool] | None:
        pending = self._pending.take(namespace, key) if self.error_budget is not None else None
        if pending is None:
            return None
        if self._equivalence_object is None:
            self._equivalence_object = _default_equivalence()
        check = async_equivalence(self._equivalence_object)
        try:
            if check is not None:
                return pending, bool(await check(pending.cached_payload, payload))
            return pending, bool(await asyncio.to_thread(self._equivalence(), pending.cached_payload, payload))
        except Exception as exc:
            return pending, self._equivalence_failed(exc)

    def _equivalence_failed(self, exc: Exception) -> bool:
        with self._stats_lock:
            self.stats.equivalence_failures += 1
        _log.warning("answer equivalence failed (%s: %s); counted as not equivalent", type(exc).__name__, brief(exc))
        return False

    def _observed(self, namespace: CacheNamespace, settled: tuple[PendingExploration, bool]) -> Observation:
        pending, correct = settled
        with self._stats_lock:
            for counters in (self.stats, self.stats.namespace_counters(namespace)):
                if correct:
                    counters.exploration_agreements += 1
                else:
                    counters.exploration_disagreements += 1
        return Observation(similarity=pending.similarity, correct=correct, basis=pending.basis)

    def _recorded(self, namespace: CacheNamespace, observation: Observation, stored: bool) -> None:
        """A stored audit moves the namespace's error estimate at once (the next lookup re-reads it)."""
        if not stored or observation.basis is None:
            return
        with self._stats_lock:
            audited = self.stats.namespace_counters(namespace).audited
            seen = audited.get(observation.basis)
            if seen is not None:
                audited[observation.basis] = replace(seen, audits=seen.audits + 1,
                                                     wrong=seen.wrong + (not observation.correct))

    def _record(self, namespace: CacheNamespace, settled: tuple[PendingExploration, bool]) -> None:
        observation = self._observed(namespace, settled)
        try:
            stored = self.store.record_evidence(namespace, settled[0].candidate_key, observation, now=time.time())
        except EvidenceDamagedError as exc:
            self._evidence_damaged(exc, [])
        except Exception as exc:
            self.report_failure("store", exc)
        else:
            self._recorded(namespace, observation, stored)

    async def _arecord(self, namespace: CacheNamespace, settled: tuple[PendingExploration, bool]) -> None:
        observation = self._observed(namespace, settled)
        try:
            stored = await self.store.arecord_evidence(namespace, settled[0].candidate_key, observation,
                                                       now=time.time())
        except EvidenceDamagedError as exc:
            self._evidence_damaged(exc, [])
        except Exception as exc:
            self.report_failure("store", exc)
        else:
            self._recorded(namespace, observation, stored)

    def error_estimate(self, namespace: CacheNamespace) -> ErrorEstimate:
        """The audited error rate of ``namespace``'s semantic hits: wrong among the would-be hits
        that were checked against the model (a random sample of what is served), with its upper
        bound at the budget's confidence. Raises what the store raises."""
        confidence = self.error_budget.confidence if self.error_budget is not None else 0.9
        return self.store.audited(namespace, None, confidence=confidence)

    # -- writes ---------------------------------------------------------------------------------
    def _entry(self, prompt: str, payload: str, namespace: CacheNamespace | None, ttl_s: float | None,
               input_tokens: int, output_tokens: int) -> CacheEntry | None:
        """The entry to store (None without a namespace); misuse of the API raises here, before any I/O."""
        check_prompt(prompt)
        if not isinstance(payload, str):
            raise InvalidParameterError("payload", allowed="a str (serialise the response first)",
                                        received=type(payload).__name__)
        ttl = check_ttl(self.ttl_s if ttl_s is None else ttl_s)
        if namespace is None:
            return None
        now = time.time()
        return CacheEntry(tenant=namespace.tenant, llm_hash=namespace.llm_hash, prompt_key=prompt_key(prompt),
                          prompt=prompt, payload=payload, created_at=now,
                          expires_at=None if ttl is None else now + float(ttl),
                          input_tokens=check_count("input_tokens", input_tokens),
                          output_tokens=check_count("output_tokens", output_tokens))

    def update(self, prompt: str, payload: str, *, namespace: CacheNamespace | None, ttl_s: float | None = None,
               input_tokens: int = 0, output_tokens: int = 0, exact_only: bool = False) -> CacheEntry | None:
        """Store ``payload`` as the answer to ``prompt`` in ``namespace`` (replacing an exact match);
        the entry written, or None when nothing was (no namespace, or the store or embedder failed:
        counted in ``stats.store_errors``, never raised). ``exact_only``: store no vector, so only
        an exact lookup can serve it."""
        entry = self._entry(prompt, payload, namespace, ttl_s, input_tokens, output_tokens)
        if entry is None or namespace is None:
            return None
        settled = self._settle(namespace, entry.prompt_key, payload)
        if settled is not None:
            self._record(namespace, settled)
            # Equivalent: the evidence went to the candidate, which serves this prompt from now on;
            # the prompt itself is kept for exact repeats only (a second vector would split its evidence).
            exact_only = exact_only or settled[1]
        try:
            vector = self._vector(prompt) if self.mode == "semantic" and not exact_only else None
            self.store.put(entry, vector)
        except Exception as exc:  # the answer reaches the caller whatever the store does
            self.report_failure("store", exc)
            return None
        with self._stats_lock:
            self.stats.writes += 1
        return entry

    async def aupdate(self, prompt: str, payload: str, *, namespace: CacheNamespace | None,
                      ttl_s: float | None = None, input_tokens: int = 0, output_tokens: int = 0,
                      exact_only: bool = False) -> CacheEntry | None:
        """Async :meth:`update`."""
        entry = self._entry(prompt, payload, namespace, ttl_s, input_tokens, output_tokens)
        if entry is None or namespace is None:
            return None
        settled = await self._asettle(namespace, entry.prompt_key, payload)
        if settled is not None:
            await self._arecord(namespace, settled)
            exact_only = exact_only or settled[1]
        try:
            vector = None
            if self.mode == "semantic" and not exact_only:
                vector = await asyncio.to_thread(self._vector, prompt)
            await self.store.aput(entry, vector)
        except Exception as exc:
            self.report_failure("store", exc)
            return None
        with self._stats_lock:
            self.stats.writes += 1
        return entry

    def invalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                   prompt: str | None = None) -> int:
        """Delete everything, a tenant's entries, a namespace's, or one prompt's in a namespace."""
        return self.store.invalidate(tenant=tenant, namespace=namespace,
                                     prompt_key=None if prompt is None else prompt_key(prompt))

    async def ainvalidate(self, *, tenant: str | None = None, namespace: CacheNamespace | None = None,
                          prompt: str | None = None) -> int:
        return await self.store.ainvalidate(tenant=tenant, namespace=namespace,
                                            prompt_key=None if prompt is None else prompt_key(prompt))

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # -- accounting -----------------------------------------------------------------------------
    def report_failure(self, operation: _Operation, exc: Exception) -> None:
        """Count a failed lookup or write and log it: the first failure of each kind as a warning
        (a broken store would otherwise log on every call), the rest at debug level. Adapters
        report their own failures around the cache (keying a request, serialising an answer) here."""
        kind = (operation, type(exc).__name__)
        with self._stats_lock:
            if operation == "lookup":
                self.stats.lookup_errors += 1
            else:
                self.stats.store_errors += 1
            first = kind not in self._warned
            self._warned.add(kind)
        outcome = "answered as a miss" if operation == "lookup" else "answer not cached"
        if first:
            _log.warning("response cache %s failed (%s: %s); %s. Further %s failures of this kind are counted in "
                         "CacheStats.%s_errors and logged at debug level.", operation, kind[1], brief(exc),
                         outcome, kind[1], operation)
        else:
            _log.debug("response cache %s failed (%s: %s); %s", operation, kind[1], brief(exc), outcome)

    def _count(self, result: CacheLookup, namespace: CacheNamespace | None) -> None:
        with self._stats_lock:
            self.stats.count(result, namespace)

    def _savings(self, result: CacheLookup, namespace: CacheNamespace | None,
                 model: str | None) -> SavingsEvent | None:
        """The "cache" event of one lookup: a hit saves the stored call's tokens, a miss nothing;
        a lookup without a namespace is a miss without a tenant (the "no tenant" skips)."""
        if self.ledger is None:
            return None
        entry = result.entry
        fallback = namespace.llm[:200] if namespace is not None else "unknown"
        return SavingsEvent(layer="cache", model=model or fallback,
                            input_tokens_before=entry.input_tokens if entry else 0,
                            output_tokens_before=entry.output_tokens if entry else 0,
                            cache_hit=result.hit, miss_reason=None if result.hit else result.miss_reason,
                            tenant=None if namespace is None else namespace.tenant)

    def _finish(self, result: CacheLookup, started: float, namespace: CacheNamespace | None,
                model: str | None) -> CacheLookup:
        result = _timed(result, started)
        self._count(result, namespace)
        savings = self._savings(result, namespace, model)
        if savings is not None and self.ledger is not None:
            self.ledger.record(savings)
        return result

    async def _afinish(self, result: CacheLookup, started: float, namespace: CacheNamespace | None,
                       model: str | None) -> CacheLookup:
        result = _timed(result, started)
        self._count(result, namespace)
        savings = self._savings(result, namespace, model)
        if savings is not None and self.ledger is not None:
            await self.ledger.arecord(savings)
        return result


_SOFT_REASONS = frozenset({"below threshold", "similarity below floor"})
"""Verifier refusals that the error budget overrides (every other refusal is a hard veto)."""


def _vetoes(reasons: list[str]) -> int:
    """How many of the verifier's refusals were hard vetoes."""
    return sum(reason not in _SOFT_REASONS for reason in reasons)


def _default_equivalence() -> object:
    from lean_core.cache.answer_equivalence import default_answer_equivalence

    return default_answer_equivalence()


def _timed(result: CacheLookup, started: float) -> CacheLookup:
    return replace(result, seconds=time.perf_counter() - started)
