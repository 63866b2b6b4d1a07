"""Budgets that decide the ratio (``ratio="auto"``) and the +-20 % band of fixed ratios."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lean_core import InvalidParameterError, TokenCounter
from lean_core.compression import CompressionBudget, LeanCompressor
from lean_core.compression.options import CompressionOptions
from lean_core.compression.protect import find_protected_spans
from lean_core.compression.segment import Unit, split_sentences, trim_points
from lean_core.compression.select import AutoPolicy, RelevanceScorer

LEXICAL = RelevanceScorer(semantic_weight=0.0)  # no embedding model: fast and offline
COUNTER = TokenCounter()

GOLD = "The Zorvath bridge was opened in 1911 by the engineer Lisbet Amarund."
FILLER = [f"Passage {k} is about farming methods in valley number {k} and the crops grown there." for k in range(19)]
QUESTION = "Who opened the Zorvath bridge?"


def _lexical(**kwargs: object) -> LeanCompressor:
    return LeanCompressor(scorer=LEXICAL, token_counter=COUNTER, **kwargs)  # type: ignore[arg-type]


def _units(passages: list[int]) -> list[Unit]:
    return [Unit(passage=p, index=i, start=i, end=i + 1, text="x") for i, p in enumerate(passages)]


# -- the budget type ------------------------------------------------------------------------------
def test_auto_is_read_as_a_ceiling_of_everything() -> None:
    budget = CompressionBudget(ratio="auto")
    assert budget.is_auto and budget.ratio == 1.0 and budget.tokens_for(500) == 500
    assert CompressionBudget.of("auto").is_auto
    assert CompressionBudget(ratio=0.5, auto=True).tokens_for(500) == 250  # auto under a ceiling
    assert not CompressionBudget(ratio=0.5).is_auto


@pytest.mark.parametrize("bad", [dict(ratio="half"), dict(ratio="auto", auto=False), dict(ratio=0.5, auto="yes")])
def test_bad_auto_values_name_the_parameter(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidParameterError, match=r"ratio|auto"):
        CompressionBudget(**bad)  # type: ignore[arg-type]


def test_options_accept_auto_and_refuse_it_beside_target_tokens() -> None:
    assert CompressionOptions(ratio="auto").budget.is_auto
    with pytest.raises(InvalidParameterError, match="ratio"):
        _ = CompressionOptions(ratio="auto", target_tokens=100).budget
    with pytest.raises(InvalidParameterError, match="ratio"):
        CompressionOptions(ratio="most")


# -- the criterion --------------------------------------------------------------------------------
def test_one_passage_keeps_the_standout_and_leaves_a_flat_passage_whole() -> None:
    policy = AutoPolicy()
    assert policy.keep(_units([0] * 10), [6.0] + [-0.5] * 9) == [0]
    assert policy.keep(_units([0] * 6), [0.3] * 6) == list(range(6))  # nothing stands out: barely touched


def test_several_passages_keep_the_answer_passage_whole_and_drop_the_rest() -> None:
    # passage 0 holds the best unit (and a weak one it keeps as context); passage 1 is noise;
    # passage 2 has one unit close enough to the best to be a second hop's fact.
    passages = [0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    scores = [6.0, -1.0, -1.0, -0.8, -1.2, -0.9, 4.0, -1.0, -1.1, -0.7, -1.0, -0.9, -1.1, -0.8]
    kept = AutoPolicy().keep(_units(passages), scores)
    assert kept[:2] == [0, 1] and 6 in kept
    assert not {2, 3, 4, 5, 10, 11, 12, 13} & set(kept)


def test_gaps_are_read_in_standard_deviations() -> None:
    scores = [2.0, 1.0, 0.0, -1.0, -2.0]
    scaled = [10 * v for v in scores]
    policy = AutoPolicy(sentence_gap=1.0)
    assert policy.keep(_units([0] * 5), scores) == policy.keep(_units([0] * 5), scaled) == [0, 1]


# -- end to end ------------------------------------------------------------------------------------
def test_auto_drops_irrelevant_passages_and_keeps_the_evidence() -> None:
    passages = [*FILLER[:9], GOLD, *FILLER[9:]]
    result = _lexical().compress(passages, budget=CompressionBudget(ratio="auto"), question=QUESTION)
    assert "Lisbet Amarund" in result.text
    assert result.ratio >= 8  # 19 off-topic passages go whole
    # auto reports its ceiling (all of the input for ratio="auto") as the target it stayed within
    assert result.budget_met and result.target_tokens == result.original_tokens


def test_auto_respects_a_ceiling() -> None:
    passages = [GOLD, *FILLER]
    result = _lexical().compress(passages, budget=CompressionBudget(ratio=0.02, auto=True), question=QUESTION)
    assert result.compressed_tokens <= max(1, int(result.original_tokens * 0.02))


# -- the +-20 % band of a fixed ratio -----------------------------------------------------------------
SENTENCE = st.lists(st.sampled_from("the bridge river engineer opened town valley crops grown farming in of by "
                                    "Amarund 1911 Lisbet".split()), min_size=6, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sentences=st.lists(SENTENCE, min_size=1, max_size=8), ratio=st.sampled_from([0.5, 0.33, 0.2, 0.1]))
def test_fixed_ratio_is_met_within_the_band(sentences: list[list[str]], ratio: float) -> None:
    text = " ".join(" ".join(words).capitalize() + "." for words in sentences)
    result = _lexical().compress(text, budget=CompressionBudget(ratio=ratio), question=QUESTION)
    assert result.compressed_tokens <= result.target_tokens  # never over the budget
    if result.target_tokens >= 3:  # a head of one word and its separator is the smallest piece
        assert result.compressed_tokens >= result.target_tokens / 1.2 - 2


def test_short_passage_at_ten_x_no_longer_overshoots() -> None:
    """The tester's case: 10x asked on one short passage gave 19x because whole sentences were
    the unit; the next-best piece is now cut between words to fill the budget."""
    text = ("The Zorvath bridge, which spans the Amel river near the old mill town, was opened in 1911 by the "
            "engineer Lisbet Amarund, who had designed it over six years of work. It carried trains until "
            "1960, when a road replaced the rails, and it was listed as a monument in 1984 by the state.")
    result = _lexical().compress(text, budget=CompressionBudget(ratio=0.1, target_model="gpt-4"), question=QUESTION)
    assert 0.1 / 1.2 <= result.kept_share <= 0.1 + 1e-9


def test_trim_points_never_fall_inside_a_protected_span() -> None:
    text = "Pay $6.95 now at https://example.com/a b and order #48213 today please"
    spans = find_protected_spans(text)
    unit = split_sentences(text, spans)[0]
    cuts = trim_points(text, unit, spans)
    assert cuts and all(not (s.start < c < s.end) for c in cuts for s in spans)
    assert all(text[c].isspace() and not text[c - 1].isspace() for c in cuts)
