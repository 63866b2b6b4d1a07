"""The error budget with the real bundled MiniLM and the shipped calibration as its prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lean_core.cache import (
    CacheNamespace,
    ResponseCache,
    SQLiteCacheStore,
    normalize_prompt,
    prompt_key,
)
from lean_core.cache.error_budget import Observation

pytestmark = pytest.mark.integration

NS = CacheNamespace(tenant="acme", llm="smollm2|t=0")
ENTRY, ANSWER = "How do I reset my password?", "Open Settings, then Security, then Reset password."
PARAPHRASES = ("How can I reset my password?", "How do I reset my password please?", "How to reset my password?")
NEAR_MISSES = {
    "Are tigers afraid of cats?": ("Are cats afraid of tigers?", "roles swapped"),
    "What is the capital of Germany?": ("What is the capital of France?", "named entities differ"),
    "Is it not safe to charge my phone overnight?": ("Is it safe to charge my phone overnight?", "negation differs"),
}


def labels(cached: str, fresh: str) -> bool:
    """The oracle: both answers are the same text (the test decides what the model would say)."""
    return cached == fresh


@pytest.fixture
def cache(tmp_path: Path) -> ResponseCache:
    return ResponseCache(SQLiteCacheStore(tmp_path / "c.sqlite3"), max_error_rate=0.02, answer_equivalence=labels,
                         seed=5)


def similarity(cache: ResponseCache, a: str, b: str) -> float:
    va, vb = cache.embedder.encode([normalize_prompt(a), normalize_prompt(b)])
    return float(np.dot(va, vb))


def test_a_paraphrase_explored_once_lets_closer_paraphrases_be_served(cache: ResponseCache) -> None:
    cache.update(ENTRY, ANSWER, namespace=NS)
    ranked = sorted(PARAPHRASES, key=lambda p: similarity(cache, ENTRY, p))
    farthest, *closer = ranked
    first = cache.lookup(farthest, namespace=NS)  # nothing certified yet in this namespace: a miss that explores
    assert not first.hit and first.exploration
    cache.update(farthest, ANSWER, namespace=NS)
    (seen,) = cache.store.evidence(NS, prompt_key(ENTRY))
    assert seen.correct and seen.similarity == pytest.approx(similarity(cache, ENTRY, farthest), abs=1e-4)
    # The evidence basis serves once the namespace's audits certify it (earlier traffic, here recorded).
    for _ in range(150):
        cache.store.record_evidence(NS, prompt_key(ENTRY), Observation(0.99, True, "evidence"), now=1.0)
    for paraphrase in closer:
        got = [cache.lookup(paraphrase, namespace=NS) for _ in range(5)]
        assert any(g.kind == "semantic" and g.entry is not None and g.entry.payload == ANSWER for g in got)
    estimate = cache.error_estimate(NS)
    assert estimate.audits >= 150 and estimate.upper_bound <= 0.02


@pytest.mark.parametrize("query", sorted(NEAR_MISSES))
def test_hard_vetoes_hold_against_certified_evidence(cache: ResponseCache, query: str) -> None:
    cached, reason = NEAR_MISSES[query]
    cache.update(cached, "cached answer", namespace=NS)
    for _ in range(200):  # perfect evidence at every similarity, a certified namespace
        cache.store.record_evidence(NS, prompt_key(cached), Observation(0.3, True, "evidence"), now=1.0)
    got = cache.lookup(query, namespace=NS)
    assert not got.hit and not got.exploration and reason in got.rejection_reasons


def test_a_look_alike_that_disagreed_is_never_served_at_or_below_its_similarity(cache: ResponseCache) -> None:
    cache.update(ENTRY, ANSWER, namespace=NS)
    look_alike = "How do I reset my router password?"
    got = cache.lookup(look_alike, namespace=NS)  # no veto, a plausible prior: explored
    assert not got.hit and got.exploration
    cache.update(look_alike, "Hold the reset button for 10 seconds.", namespace=NS)
    assert cache.stats.exploration_disagreements == 1
    assert cache.lookup(look_alike, namespace=NS).kind == "exact"  # its own entry now
    s = similarity(cache, ENTRY, look_alike)
    assert Observation(pytest.approx(s, abs=1e-4), False, None) in cache.store.evidence(  # type: ignore[arg-type]
        NS, prompt_key(ENTRY))
    for _ in range(150):  # even in a certified namespace, the look-alike's similarity stays blocked
        cache.store.record_evidence(NS, prompt_key(ENTRY), Observation(0.5, True, "evidence"), now=1.0)
    cache.invalidate(namespace=NS, prompt=look_alike)
    blocked = cache.lookup(look_alike, namespace=NS)
    assert not blocked.hit and "look-alike seen" in blocked.rejection_reasons
