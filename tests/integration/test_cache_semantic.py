"""Verified semantic hits with the real bundled MiniLM and the shipped calibration."""

from __future__ import annotations

from pathlib import Path

import pytest

from lean_core.cache import (
    CacheNamespace,
    ResponseCache,
    SemanticVerifier,
    SQLiteCacheStore,
    default_calibration_path,
)
from lean_core.cache.verifier import Calibration

pytestmark = pytest.mark.integration

NS = CacheNamespace(tenant="acme", llm="smollm2|t=0")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ResponseCache:
    path = tmp_path_factory.mktemp("semantic") / "c.sqlite3"
    c = ResponseCache(SQLiteCacheStore(path))
    for prompt, answer in [("How do I reset my password?", "Settings > Security > Reset."),
                           ("Are cats afraid of tigers?", "Mostly, yes."),
                           ("What is the capital of France?", "Paris"),
                           ("How many days do I have to return a jacket?", "30 days"),
                           ("Is it safe to charge my phone overnight?", "Yes, modern phones stop charging.")]:
        c.update(prompt, answer, namespace=NS)
    return c


def test_paraphrase_is_served_as_a_verified_semantic_hit(cache: ResponseCache) -> None:
    got = cache.lookup("How can I reset my password?", namespace=NS)
    assert got.kind == "semantic" and got.entry is not None
    assert got.entry.prompt == "How do I reset my password?"
    assert got.probability is not None and got.probability >= cache.verifier.threshold


@pytest.mark.parametrize(("query", "reason"), [
    ("Are tigers afraid of cats?", "roles swapped"),
    ("What is the capital of Germany?", "named entities differ"),
    ("How many days do I have to return a jacket bought 45 days ago?", "numbers differ"),
    ("Is it not safe to charge my phone overnight?", "negation differs"),
])
def test_near_misses_are_rejected_with_a_reason(cache: ResponseCache, query: str, reason: str) -> None:
    got = cache.lookup(query, namespace=NS)
    assert not got.hit
    assert reason in got.rejection_reasons


def test_other_tenant_never_gets_a_semantic_hit(cache: ResponseCache) -> None:
    other = CacheNamespace(tenant="globex", llm=NS.llm)
    got = cache.lookup("How do I reset my password?", namespace=other)
    assert not got.hit and got.rejected == 0  # nothing from acme was even a candidate


def test_shipped_calibration_loads_and_is_described() -> None:
    calibration = Calibration.load(default_calibration_path())
    assert calibration.embedding_model == "all-MiniLM-L6-v2"
    assert 0.5 < calibration.threshold < 1.0
    assert {"qqp_pairs", "mrpc_train", "stsb_train"} <= set(calibration.trained_on)
    assert SemanticVerifier().threshold == calibration.threshold


def test_calibrate_command_fits_and_writes(tmp_path: Path) -> None:
    import json

    from lean_cli import main

    pairs = tmp_path / "pairs.jsonl"
    rows = [("How do I bake bread?", "How can I bake bread?", 1), ("How do I bake bread?", "How do I bake a cake?", 0),
            ("Best laptop for students?", "Which laptop is best for students?", 1),
            ("Best laptop for students?", "Best phone for students?", 0)] * 15
    pairs.write_text("\n".join(json.dumps({"text_a": a, "text_b": b, "label": y}) for a, b, y in rows))
    out = tmp_path / "cal.json"
    assert main(["cache", "calibrate", "--pairs", str(pairs), "--precision", "0.9", "--out", str(out)]) == 0
    fitted = Calibration.load(out)
    assert fitted.target_precision == 0.9 and fitted.trained_on == ("pairs",)
    assert SemanticVerifier(out).threshold == fitted.threshold
