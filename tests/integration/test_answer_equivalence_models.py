"""Answer equivalence with the real bundled MiniLM: the embedding check and the default chain,
measured on the bundled labelled answer pairs."""

from __future__ import annotations

import pytest

from lean_benchmarks.answer_equivalence_bench import run_answer_equivalence_bench
from lean_core.cache.answer_equivalence import EmbeddingEquivalence, default_answer_equivalence

pytestmark = pytest.mark.integration


def test_embedding_equivalence_with_minilm() -> None:
    check = EmbeddingEquivalence(threshold=0.8)
    same = check.similarity("The capital of France is Paris.", "Paris is the capital of France.")
    other = check.similarity("Restart the router to fix the connection.", "Update the driver to fix the sound.")
    assert same > 0.9 > 0.6 > other
    assert check.equivalent("The capital of France is Paris.", "Paris is the capital of France.")
    assert not check.equivalent("Restart the router to fix the connection.", "Update the driver to fix the sound.")


def test_default_chain_makes_no_false_equivalence_on_the_bundled_pairs() -> None:
    chain = default_answer_equivalence()
    assert not chain.equivalent("The Eiffel Tower was completed in 1889.", "The Eiffel Tower was completed in 1887.")
    assert chain.equivalent("A leap year has 366 days.", "There are 366 days in a leap year.")
    rows = {r.check: r for r in run_answer_equivalence_bench(checks={"default": chain})}
    # A false "equivalent" teaches the error-bounded cache to serve a wrong answer: none allowed here.
    assert rows["default"].false_equivalences == 0
    assert rows["default"].false_difference_rate < 0.5
