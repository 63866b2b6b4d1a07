"""The error budget (``ResponseCache(max_error_rate=δ)``): the decision's bounds and rules, and the
cache's exploration flow on a real SQLite store with controlled similarities. The real MiniLM path
is tests/integration/test_cache_error_budget_minilm.py; persistence on both stores is
tests/integration/test_cache_error_budget_store.py."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lean_core.cache import (
    CacheNamespace,
    ResponseCache,
    SQLiteCacheStore,
    normalize_prompt,
    pair_features,
    prompt_key,
)
from lean_core.cache.error_budget import (
    ErrorBudget,
    ErrorEstimate,
    Observation,
    PendingExploration,
    PendingExplorations,
    RecentAudits,
    check_max_error_rate,
    wilson_bounds,
)
from lean_core.cache.verifier import SemanticVerifier, Verdict
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger

A = CacheNamespace(tenant="acme", llm="gpt-4o|t=0")
B = CacheNamespace(tenant="globex", llm="gpt-4o|t=0")
ENTRY = "How do I reset my password?"
P1, P2, P3 = "How can I reset my password?", "How could I reset my password?", "Ways to reset my password?"
FRANCE, GERMANY = "What is the capital of France?", "What is the capital of Germany?"
SIMILARITY = {P1: 0.90, P2: 0.93, P3: 0.85, GERMANY: 0.95}
"""Cosine of each query to its entry (ENTRY, or FRANCE for GERMANY)."""


class AxisEmbedder:
    """Unit vectors with chosen cosines: each query of SIMILARITY sits at its cosine from its entry
    (ENTRY on axis 0, FRANCE on axis 1) and on an axis of its own otherwise; any other text is
    orthogonal to everything."""

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}
        for axis, text in enumerate((ENTRY, FRANCE)):
            self.vectors[normalize_prompt(text)] = self._unit(axis)
        for text, s in SIMILARITY.items():
            v = self._unit(1 if text == GERMANY else 0) * s + self._unit(len(self.vectors) + 2) * math.sqrt(1 - s * s)
            self.vectors[normalize_prompt(text)] = v

    @staticmethod
    def _unit(axis: int) -> np.ndarray:
        v = np.zeros(64, dtype=np.float32)
        v[axis] = 1.0
        return v

    def encode(self, texts: list[str]) -> np.ndarray:
        for text in texts:
            self.vectors.setdefault(text, self._unit(len(self.vectors) + 2))
        return np.array([self.vectors[text] for text in texts])


@dataclass
class _Calibration:
    similarity_floor: float = 0.85


class FixedPriorVerifier(SemanticVerifier):
    """The real hard vetoes, a chosen prior probability (the calibrated model is tested elsewhere)."""

    def __init__(self, prior: float) -> None:
        self.prior = prior
        self.calibration = _Calibration()  # type: ignore[assignment]
        self.threshold = 0.9

    @property
    def min_similarity(self) -> float:
        return 0.4

    def verdict(self, query: str, cached: str, similarity: float) -> Verdict:
        veto = pair_features(query, cached, similarity).veto
        if veto is not None:
            return Verdict(accepted=False, probability=self.prior, reason=veto)
        accepted = self.prior >= self.threshold
        return Verdict(accepted=accepted, probability=self.prior, reason="accepted" if accepted else "below threshold")


def seen(cache: ResponseCache, namespace: CacheNamespace, prompt: str = ENTRY) -> list[tuple[float, bool, str | None]]:
    """The entry's observations, similarities rounded (embeddings are float32)."""
    return [(round(o.similarity, 4), o.correct, o.basis) for o in cache.store.evidence(namespace, prompt_key(prompt))]


def same(cached: str, fresh: str) -> bool:
    return cached == fresh


def make(tmp_path: Path, *, prior: float = 0.6, delta: float | None = 0.05, equivalence: object = same,
         ledger: CostLedger | None = None) -> ResponseCache:
    store = SQLiteCacheStore(tmp_path / "c.sqlite3", max_entries=1000)
    return ResponseCache(store, embedder=AxisEmbedder(), verifier=FixedPriorVerifier(prior),  # type: ignore[arg-type]
                         max_error_rate=delta, answer_equivalence=equivalence, seed=3,  # type: ignore[arg-type]
                         ledger=ledger)


def certify_evidence_basis(cache: ResponseCache, namespace: CacheNamespace, n: int = 150) -> None:
    """n clean audits of the evidence basis in the namespace (as if earlier traffic had been checked)."""
    key = prompt_key(ENTRY)
    for _ in range(n):
        assert cache.store.record_evidence(namespace, key, Observation(0.99, True, "evidence"), now=1.0)


# -- the decision ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 0.51, 1, True, "0.02", math.nan, math.inf])
def test_max_error_rate_outside_0_to_half_is_refused_by_name(bad: object, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="max_error_rate"):
        check_max_error_rate(bad)
    with pytest.raises(InvalidParameterError, match=r"max_error_rate.*\(0, 0\.5\]"):
        ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), max_error_rate=bad)  # type: ignore[arg-type]


def test_accepted_rates_and_other_options_are_checked() -> None:
    assert check_max_error_rate(0.5) == 0.5 and check_max_error_rate(None) is None
    assert ErrorBudget(0.02).max_error_rate == 0.02
    for name, value in (("confidence", 1.0), ("confidence", 0.4), ("seed", 1.5), ("audit_floor", 0.0)):
        with pytest.raises(InvalidParameterError, match=name):
            ErrorBudget(0.02, **{name: value})  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="answer_equivalence"):
        ResponseCache(max_error_rate=0.02, answer_equivalence=42)  # type: ignore[arg-type]


def test_wilson_bounds() -> None:
    assert wilson_bounds(0, 0, 0.9) == (0.0, 1.0)
    low, high = wilson_bounds(0, 80, 0.9)
    assert low == 0.0 and 0.019 < high < 0.0205  # ~80 clean audits bound the rate at 2 % (90 %)
    assert wilson_bounds(0, 200, 0.9)[1] < high < wilson_bounds(0, 40, 0.9)[1]
    low, high = wilson_bounds(10, 100, 0.95)
    assert 0.05 < low < 0.1 < high < 0.17
    assert ErrorEstimate(audits=4, wrong=1, confidence=0.9).rate == 0.25
    assert ErrorEstimate(audits=0, wrong=0, confidence=0.9).rate is None


def test_basis_rules() -> None:
    budget = ErrorBudget(0.02)
    kw = {"similarity_floor": 0.85}
    seen_wrong = (Observation(0.93, False),)
    # A look-alike seen at or above (similarity - margin) blocks the entry, even with a perfect prior.
    decision = budget.basis(similarity=0.935, prior=0.999, observations=seen_wrong, **kw)
    assert not isinstance(decision, str) and decision.reason == "look-alike seen" and not decision.serve
    assert budget.basis(similarity=0.95, prior=0.999, observations=seen_wrong, **kw) == "prior"
    # A correct observation at or below the similarity is entry evidence (given a plausible prior).
    assert budget.basis(similarity=0.9, prior=0.6, observations=(Observation(0.88, True),), **kw) == "evidence"
    assert budget.basis(similarity=0.9, prior=0.3, observations=(Observation(0.88, True),), **kw) != "evidence"
    # The prior alone serves only at >= 1 - δ and above the similarity floor.
    assert budget.basis(similarity=0.9, prior=0.985, observations=(), **kw) == "prior"
    assert budget.basis(similarity=0.8, prior=0.985, observations=(), **kw) != "prior"
    unsure = budget.basis(similarity=0.9, prior=0.6, observations=(Observation(0.95, True),), **kw)
    assert not isinstance(unsure, str) and unsure.explore and unsure.basis is None and unsure.reason == "uncertain"
    far = budget.basis(similarity=0.5, prior=0.1, observations=(), **kw)
    assert not isinstance(far, str) and not far.explore


def test_evidence_basis_audits_until_certified_then_serves_with_audits() -> None:
    budget = ErrorBudget(0.02, seed=0)
    few = ErrorEstimate(audits=30, wrong=0, confidence=0.9)
    decision = budget.certify("evidence", few)
    assert decision.explore and decision.audit and not decision.serve and decision.reason == "evidence not yet certified"
    many = ErrorEstimate(audits=400, wrong=0, confidence=0.9)
    outcomes = [budget.certify("evidence", many) for _ in range(2000)]
    audits = sum(d.audit for d in outcomes)
    assert all(d.serve != d.audit for d in outcomes)
    assert 0.03 < audits / 2000 < 0.08  # the audit floor (5 %) once the bound is far below δ
    dirty = ErrorEstimate(audits=400, wrong=20, confidence=0.9)
    assert not any(budget.certify("evidence", dirty).serve for _ in range(50))


def test_the_prior_basis_is_certified_by_audits_like_evidence() -> None:
    budget = ErrorBudget(0.02, seed=1)
    untested = budget.certify("prior", ErrorEstimate(0, 0, 0.9))
    assert not untested.serve and untested.audit and untested.reason == "prior not yet certified"
    assert sum(budget.certify("prior", ErrorEstimate(400, 0, 0.9)).serve for _ in range(200)) > 170
    over = budget.certify("prior", ErrorEstimate(audits=100, wrong=10, confidence=0.9))
    assert not over.serve and over.explore and over.basis == "prior"


def test_a_seed_replays_the_same_decisions() -> None:
    estimate = ErrorEstimate(audits=150, wrong=1, confidence=0.9)
    budgets = [ErrorBudget(0.05, seed=11), ErrorBudget(0.05, seed=11), ErrorBudget(0.05, seed=12)]
    runs = [[budget.certify("evidence", estimate).serve for _ in range(300)] for budget in budgets]
    assert runs[0] == runs[1] != runs[2] and 0 < sum(runs[0]) < 300


def test_pending_explorations_are_bounded_and_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    pending = PendingExplorations(max_pending=3, ttl_s=10.0)
    item = PendingExploration(candidate_key="k", cached_payload="p", similarity=0.9, basis=None, remembered_at=100.0)
    for i in range(5):
        pending.remember(A, f"q{i}", item)
    assert len(pending) == 3
    monkeypatch.setattr("lean_core.cache.error_budget.time.monotonic", lambda: 105.0)
    assert pending.take(A, "q0") is None and pending.take(B, "q4") is None  # evicted; other namespace
    assert pending.take(A, "q4") == item and pending.take(A, "q4") is None  # taken once
    monkeypatch.setattr("lean_core.cache.error_budget.time.monotonic", lambda: 111.0)
    assert pending.take(A, "q3") is None  # too old to teach anything


# -- the cache's flow -----------------------------------------------------------------------------
def test_exploration_agreement_becomes_evidence_that_serves_once_certified(tmp_path: Path) -> None:
    cache = make(tmp_path)
    cache.update(ENTRY, "A", namespace=A)
    first = cache.lookup(P1, namespace=A)
    assert not first.hit and first.exploration and not first.audit and "uncertain" in first.rejection_reasons
    cache.update(P1, "A", namespace=A)  # the model's answer agrees
    assert seen(cache, A) == [(0.9, True, None)]
    assert cache.stats.explorations == 1 and cache.stats.exploration_agreements == 1
    assert cache.lookup(P1, namespace=A).kind == "exact"  # kept for exact repeats only...
    assert len(cache.store.search(A, AxisEmbedder().encode([normalize_prompt(P1)])[0], k=4, min_similarity=0.99,
                                  now=2e9)) == 0  # ...without a vector of its own
    # P2 is closer than P1 was: entry evidence, which must first be certified by audits.
    audit = cache.lookup(P2, namespace=A)
    assert not audit.hit and audit.audit and "evidence not yet certified" in audit.rejection_reasons
    certify_evidence_basis(cache, A)
    served = [cache.lookup(P2, namespace=A) for _ in range(20)]
    hits = [r for r in served if r.hit]
    assert hits and all(r.kind == "semantic" and r.entry is not None and r.entry.payload == "A" for r in hits)
    assert len(hits) < 20 or cache.stats.audits > 1  # audits continue at the floor rate
    # P3 is further than any correct observation and the prior is weak: not served.
    assert not cache.lookup(P3, namespace=A).hit


def test_a_disagreement_stores_the_prompt_and_blocks_that_similarity(tmp_path: Path) -> None:
    cache = make(tmp_path)
    cache.update(ENTRY, "A", namespace=A)
    certify_evidence_basis(cache, A)
    assert cache.lookup(P2, namespace=A).exploration
    cache.update(P2, "B", namespace=A)  # a different answer: P2 is not ENTRY's duplicate
    assert cache.stats.exploration_disagreements == 1
    assert (0.93, False, None) in seen(cache, A)
    assert cache.lookup(P2, namespace=A).kind == "exact"  # stored as its own entry
    got = cache.lookup(P1, namespace=A)  # 0.90 is below the wrong observation at 0.93
    assert not got.hit and "look-alike seen" in got.rejection_reasons


def test_hard_vetoes_stay_absolute_whatever_the_evidence(tmp_path: Path) -> None:
    cache = make(tmp_path, prior=0.999)
    cache.update(FRANCE, "Paris", namespace=A)
    key = prompt_key(FRANCE)
    for _ in range(200):
        cache.store.record_evidence(A, key, Observation(0.5, True, "evidence"), now=1.0)
    got = cache.lookup(GERMANY, namespace=A)
    assert not got.hit and not got.exploration and got.rejection_reasons == ("named entities differ",)


def test_evidence_never_crosses_tenants(tmp_path: Path) -> None:
    cache = make(tmp_path)
    for namespace in (A, B):
        cache.update(ENTRY, "A", namespace=namespace)
    certify_evidence_basis(cache, A)
    assert cache.error_estimate(A).audits == 150 and cache.error_estimate(B).audits == 0
    assert cache.store.evidence(B, prompt_key(ENTRY)) == ()
    cache.lookup(P1, namespace=A)
    cache.update(P1, "A", namespace=B)  # B's answer cannot settle A's exploration
    assert cache.stats.exploration_agreements == 0 and cache.store.evidence(B, prompt_key(ENTRY)) == ()


def test_a_failing_equivalence_counts_as_not_equivalent(tmp_path: Path) -> None:
    def broken(cached: str, fresh: str) -> bool:
        raise TimeoutError("judge timed out")

    cache = make(tmp_path, equivalence=broken)
    cache.update(ENTRY, "A", namespace=A)
    cache.lookup(P1, namespace=A)
    cache.update(P1, "A", namespace=A)
    assert cache.stats.equivalence_failures == 1 and cache.stats.exploration_disagreements == 1
    assert seen(cache, A) == [(0.9, False, None)]


def test_async_flow_matches_sync(tmp_path: Path) -> None:
    class Both:
        calls = 0

        def equivalent(self, cached: str, fresh: str) -> bool:
            raise AssertionError("the async path uses aequivalent")

        async def aequivalent(self, cached: str, fresh: str) -> bool:
            Both.calls += 1
            return cached == fresh

    async def scenario() -> None:
        cache = make(tmp_path, equivalence=Both())
        await cache.aupdate(ENTRY, "A", namespace=A)
        first = await cache.alookup(P1, namespace=A)
        assert first.exploration
        await cache.aupdate(P1, "A", namespace=A)
        assert [round(o.similarity, 4) for o in await cache.store.aevidence(A, prompt_key(ENTRY))] == [0.9]
        certify_evidence_basis(cache, A)
        results = [await cache.alookup(P2, namespace=A) for _ in range(20)]
        assert any(r.kind == "semantic" for r in results)

    asyncio.run(scenario())
    assert Both.calls == 1


def test_the_ledger_records_an_exploration_as_a_miss(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "ledger.sqlite3")
    cache = make(tmp_path, ledger=ledger)
    cache.update(ENTRY, "A", namespace=A, input_tokens=10, output_tokens=5)
    assert cache.lookup(P1, namespace=A).exploration
    events = [e for e in ledger.savings() if e.layer == "cache"]
    assert len(events) == 1 and events[0].cache_hit is False and events[0].tenant == "acme"
    assert events[0].input_tokens_before == 0


def test_without_a_budget_the_static_verifier_decides_as_before(tmp_path: Path) -> None:
    cache = make(tmp_path, prior=0.95, delta=None)
    assert cache.error_budget is None
    cache.update(ENTRY, "A", namespace=A)
    got = cache.lookup(P1, namespace=A)
    assert got.kind == "semantic" and not got.exploration
    cache.update(P3, "B", namespace=A)
    assert cache.stats.explorations == 0 and cache.store.evidence(A, prompt_key(ENTRY)) == ()


def test_large_audit_counts_are_kept_briefly_small_ones_always_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr("lean_core.cache.error_budget.time.monotonic", lambda: clock[0])
    recent = RecentAudits(max_age_s=2.0, min_audits=1000)
    small, large = ErrorEstimate(10, 0, 0.9), ErrorEstimate(5000, 3, 0.9)
    assert recent.keep(A, "evidence", small) is small and recent.get(A, "evidence") is None
    recent.keep(A, "evidence", large)
    assert recent.get(A, "evidence") == large and recent.get(A, "prior") is None and recent.get(B, "evidence") is None
    clock[0] = 102.5
    assert recent.get(A, "evidence") is None
