"""The error budget of a semantic cache: serve a near-duplicate only where evidence says it is right.

``ResponseCache(max_error_rate=δ)`` replaces the static verifier's threshold with this decision
(the idea of vCache, "Verified Semantic Prompt Caching", ICLR 2026: learn per cached entry, online,
where it may be served, and explore while unsure). The hard vetoes of
:func:`~lean_core.cache.pair_features` (numbers, entities, negation, roles, ...) stay absolute and
run first; this module decides the rest.

**Evidence.** When a candidate is not served, the model is called anyway (a miss) and its fresh
answer is compared with the candidate's cached answer (pluggable answer equivalence): one
observation ``(similarity, correct)`` for that entry. Observations persist with the entry in the
store, per namespace (never across tenants), and go when the entry goes.

**The decision for a candidate at similarity s**, behind the vetoes:

1. *A look-alike was seen*: the entry has a wrong observation at a similarity >= s - ``margin``.
   Per entry, the chance that serving is right rises with similarity (the monotone model that
   vCache's per-entry sigmoid also assumes), so nothing at or below a known wrong similarity is
   served. Miss.
2. *Entry evidence* ("evidence" basis): the entry has a correct observation at a similarity <= s
   and the prior probability is at least ``evidence_prior_min``.
3. *Prior* ("prior" basis): no such evidence, but the calibrated verifier's probability that the
   two prompts ask the same thing is >= 1 - δ (and the similarity is above its floor). The shipped
   calibration is today's global decision, moved from its fixed threshold to the budget.
4. Otherwise a miss; an *exploration* when the prior is at least ``explore_min`` (so the model's
   answer teaches the entry where its boundary lies).

**The guarantee is pooled, per namespace and basis.** One entry sees too few requests to bound
its own error at δ = 0.02 (a binomial bound needs ~80-130 clean observations), so each basis is
certified over its namespace: a would-be hit is *audited* (answered by the model and compared, a
miss) with probability ``q``; audits are a random sample of what that basis would serve, so their
wrong share estimates the error among its served hits without bias. A basis serves only once the
one-sided Wilson upper bound (at ``confidence``) of its audited error is <= δ; before that every
would-be hit is audited. The prior is certified too, not trusted: on held-out QQP pairs the shipped
calibration's "p >= 0.95" was wrong on 3 of 6 hits, so offline calibration alone is no guarantee
(about 31 clean audits certify a basis at δ = 0.05, 80 at 0.02, with confidence 0.9). ``q`` shrinks as the bound falls below δ
(``q = max(audit_floor, 2·upper/δ - 1)``), down to ``audit_floor``: explorations cost most while
the namespace is uncertain. The audited error is :meth:`~lean_core.cache.ResponseCache.error_estimate`.

Assumptions: audits are exchangeable with the served requests of their basis (true by
construction, the coin is flipped per request), and the answer equivalence is right (its own
error adds to the cache's; see :mod:`lean_core.cache.answer_equivalence`). Randomness comes from
one ``random.Random(seed)``, so a seeded cache replays a stream identically.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, Literal

from lean_core.errors import CacheStoreError, InvalidParameterError

if TYPE_CHECKING:
    from lean_core.cache.types import CacheNamespace

__all__ = [
    "BASIS_CODES",
    "LOOK_ALIKE",
    "Basis",
    "BudgetDecision",
    "ErrorBudget",
    "ErrorEstimate",
    "EvidenceDamagedError",
    "Observation",
    "PendingExploration",
    "PendingExplorations",
    "RecentAudits",
    "async_equivalence",
    "check_max_error_rate",
    "resolve_equivalence",
    "wilson_bounds",
]

Basis = Literal["prior", "evidence"]
BASIS_CODES: dict[Basis | None, int] = {None: 0, "prior": 1, "evidence": 2}
"""How an observation is stored: 0 an exploration of a miss, 1/2 an audit of a would-be hit of
the prior / evidence basis (only audits count towards the namespace's error estimate)."""


LOOK_ALIKE = "look-alike seen"
"""The reason of a miss below a similarity at which the entry was seen wrong (rule 1)."""


class EvidenceDamagedError(CacheStoreError):
    """The store's evidence table was damaged; it has been rebuilt empty. The lookup that found it
    serves nothing semantically; later lookups fall back to the prior until evidence returns."""


@dataclass(frozen=True)
class Observation:
    """One comparison of a fresh answer with an entry's cached answer."""

    similarity: float
    """Cosine between the request and the entry's prompt."""
    correct: bool
    """Whether the cached answer was equivalent to the fresh one (serving it would have been right)."""
    basis: Basis | None = None
    """The basis that would have served it (an audit), or None (an exploration of a miss)."""


@dataclass(frozen=True)
class ErrorEstimate:
    """The audited error of a namespace's semantic hits: wrong audits among audited would-be hits."""

    audits: int
    wrong: int
    confidence: float

    @property
    def rate(self) -> float | None:
        """wrong / audits; None before the first audit."""
        return self.wrong / self.audits if self.audits else None

    @property
    def upper_bound(self) -> float:
        """One-sided Wilson upper bound at ``confidence`` (1.0 without audits)."""
        return wilson_bounds(self.wrong, self.audits, self.confidence)[1]


@dataclass(frozen=True)
class BudgetDecision:
    """What the error budget decided for one candidate."""

    serve: bool
    explore: bool
    """The miss doubles as an exploration: the fresh answer is compared with the cached one."""
    basis: Basis | None
    """The basis that would serve (also on an audit); None when none applies."""
    reason: str
    """"served (prior)", "served (evidence)", or why not (a rejection reason)."""

    @property
    def audit(self) -> bool:
        return self.explore and self.basis is not None


def check_max_error_rate(value: object) -> float | None:
    """δ as a float in (0, 0.5], or None (no budget: the static verifier decides)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value <= 0.5:
        raise InvalidParameterError("max_error_rate", allowed="a rate in (0, 0.5] (e.g. 0.02), or None",
                                    received=value)
    return float(value)


def _check_rate(name: str, value: object, *, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value < high:
        raise InvalidParameterError(name, allowed=f"a number in ({low}, {high})", received=value)
    return float(value)


def wilson_bounds(wrong: int, n: int, confidence: float) -> tuple[float, float]:
    """One-sided Wilson score bounds (lower, upper) on a rate of ``wrong`` in ``n`` at ``confidence``."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(confidence)
    p = wrong / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


class ErrorBudget:
    """The decision of :mod:`this module <lean_core.cache.error_budget>` for one δ.

    Args:
        max_error_rate: δ, the highest acceptable share of wrong answers among served semantic
            hits, in (0, 0.5].
        confidence: the one-sided confidence of the bound that must stay <= δ, in (0.5, 1)
            (default 0.9).
        seed: seeds the exploration coin (None: unseeded).
        audit_floor: the least probability, in (0, 1), of auditing a would-be hit once its basis is
            certified (default 0.05): the estimate keeps learning.
        margin: cosine, in [0, 0.2), below a known wrong similarity that is not served either.
        evidence_prior_min: the least prior probability, in (0, 1), for entry evidence to serve.
        explore_min: the least prior probability, in (0, 1), for a plain miss to be explored.
    """

    def __init__(self, max_error_rate: float, *, confidence: float = 0.9, seed: int | None = None,
                 audit_floor: float = 0.05, margin: float = 0.01, evidence_prior_min: float = 0.5,
                 explore_min: float = 0.2) -> None:
        delta = check_max_error_rate(max_error_rate)
        if delta is None:
            raise InvalidParameterError("max_error_rate", allowed="a rate in (0, 0.5]", received=None)
        self.max_error_rate = delta
        self.confidence = _check_rate("confidence", confidence, low=0.5, high=1.0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise InvalidParameterError("seed", allowed="an int or None", received=seed)
        self.audit_floor = _check_rate("audit_floor", audit_floor, low=0.0, high=1.0)
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0.0 <= margin < 0.2:
            raise InvalidParameterError("margin", allowed="a cosine in [0, 0.2)", received=margin)
        self.margin = float(margin)
        self.evidence_prior_min = _check_rate("evidence_prior_min", evidence_prior_min, low=0.0, high=1.0)
        self.explore_min = _check_rate("explore_min", explore_min, low=0.0, high=1.0)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def basis(self, *, similarity: float, prior: float, similarity_floor: float,
              observations: tuple[Observation, ...]) -> BudgetDecision | Basis:
        """The basis that could serve this candidate, or the final (miss) decision when none can."""
        if any(not o.correct and o.similarity >= similarity - self.margin for o in observations):
            return BudgetDecision(serve=False, explore=False, basis=None, reason=LOOK_ALIKE)
        if prior >= self.evidence_prior_min and any(o.correct and o.similarity <= similarity for o in observations):
            return "evidence"
        if prior >= 1.0 - self.max_error_rate and similarity >= similarity_floor:
            return "prior"
        return BudgetDecision(serve=False, explore=prior >= self.explore_min, basis=None, reason="uncertain")

    def certify(self, basis: Basis, audited: ErrorEstimate) -> BudgetDecision:
        """Serve through ``basis`` or audit the would-be hit, given that basis's audits in the namespace."""
        upper = wilson_bounds(audited.wrong, audited.audits, self.confidence)[1]
        if upper > self.max_error_rate:
            return BudgetDecision(serve=False, explore=True, basis=basis, reason=f"{basis} not yet certified")
        audit_probability = max(self.audit_floor, 2.0 * upper / self.max_error_rate - 1.0)
        with self._lock:
            audit = self._rng.random() < audit_probability
        if audit:
            return BudgetDecision(serve=False, explore=True, basis=basis, reason="audit")
        return BudgetDecision(serve=True, explore=False, basis=basis, reason=f"served ({basis})")

    def decide(self, *, similarity: float, prior: float, similarity_floor: float,
               observations: tuple[Observation, ...], audited: Callable[[Basis], ErrorEstimate]) -> BudgetDecision:
        """:meth:`basis` then :meth:`certify` (``audited`` is asked only when a basis applies)."""
        found = self.basis(similarity=similarity, prior=prior, similarity_floor=similarity_floor,
                           observations=observations)
        if isinstance(found, BudgetDecision):
            return found
        return self.certify(found, audited(found))


@dataclass(frozen=True)
class PendingExploration:
    """A miss whose fresh answer will be compared with ``cached_payload`` when the adapter stores it."""

    candidate_key: str
    """The prompt key of the entry the evidence is about."""
    cached_payload: str
    similarity: float
    basis: Basis | None
    remembered_at: float


class PendingExplorations:
    """Explorations waiting for their answer, per (namespace, prompt key): bounded, short-lived, in
    memory (an answer that never comes, or comes after ``ttl_s``, teaches nothing)."""

    def __init__(self, *, max_pending: int = 4096, ttl_s: float = 600.0) -> None:
        self._pending: OrderedDict[tuple[str, str], PendingExploration] = OrderedDict()
        self._max = max_pending
        self._ttl_s = ttl_s
        self._lock = threading.Lock()

    def remember(self, namespace: CacheNamespace, prompt_key: str, pending: PendingExploration) -> None:
        with self._lock:
            key = (namespace.key, prompt_key)
            self._pending.pop(key, None)
            self._pending[key] = pending
            while len(self._pending) > self._max:
                self._pending.popitem(last=False)

    def take(self, namespace: CacheNamespace, prompt_key: str) -> PendingExploration | None:
        with self._lock:
            pending = self._pending.pop((namespace.key, prompt_key), None)
        if pending is None or time.monotonic() - pending.remembered_at > self._ttl_s:
            return None
        return pending

    def __len__(self) -> int:
        return len(self._pending)


class RecentAudits:
    """Each namespace's audit counts per basis, kept for ``max_age_s`` once they are large: the
    count is a namespace-wide aggregate that lookups should not pay for on every candidate, and
    a few new audits barely move a bound over thousands (below ``min_audits`` it is always re-read)."""

    def __init__(self, *, max_age_s: float = 2.0, min_audits: int = 1000, max_kept: int = 256) -> None:
        self._kept: OrderedDict[tuple[str, str], tuple[float, ErrorEstimate]] = OrderedDict()
        self._max_age_s, self._min_audits, self._max_kept = max_age_s, min_audits, max_kept
        self._lock = threading.Lock()

    def get(self, namespace: CacheNamespace, basis: Basis) -> ErrorEstimate | None:
        with self._lock:
            kept = self._kept.get((namespace.key, basis))
        if kept is None or time.monotonic() - kept[0] > self._max_age_s:
            return None
        return kept[1]

    def keep(self, namespace: CacheNamespace, basis: Basis, estimate: ErrorEstimate) -> ErrorEstimate:
        if estimate.audits >= self._min_audits:
            with self._lock:
                self._kept[(namespace.key, basis)] = (time.monotonic(), estimate)
                while len(self._kept) > self._max_kept:
                    self._kept.popitem(last=False)
        return estimate


def resolve_equivalence(equivalence: object) -> Callable[[str, str], bool]:
    """``answer_equivalence`` as a function (cached, fresh) -> bool.

    None: :func:`lean_core.cache.answer_equivalence.default_answer_equivalence`. An object with
    ``equivalent(cached, fresh)`` or a plain callable is accepted."""
    if equivalence is None:
        from lean_core.cache.answer_equivalence import default_answer_equivalence

        equivalence = default_answer_equivalence()
    method = getattr(equivalence, "equivalent", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(equivalence):
        return equivalence  # type: ignore[return-value]
    raise InvalidParameterError("answer_equivalence", allowed="an AnswerEquivalence, a callable (cached, fresh) -> "
                                "bool, or None", received=type(equivalence).__name__)


def async_equivalence(equivalence: object) -> Callable[[str, str], Any] | None:
    """The object's ``aequivalent`` coroutine function, if it has one."""
    method = getattr(equivalence, "aequivalent", None)
    return method if callable(method) else None
