"""The second hop by entity link (``RelevanceScorer(bridge_gap=...)``): a passage whose title the
best passage names, and the question does not, is the bridge of a two-hop question."""

from __future__ import annotations

import pytest

from lean_core import InvalidParameterError, TokenCounter
from lean_core.compression import CompressionBudget, LeanCompressor
from lean_core.compression.segment import Unit, passage_heading, split_sentences
from lean_core.compression.select import AutoPolicy, RelevanceScorer

COUNTER = TokenCounter()
QUESTION = "In which year was the founder of Quillfeather Press born?"
# The first hop (Quillfeather Press) names its founder, Odile Varensky, in its best sentence; her
# passage answers the question but shares no word with it. Venmoor and Harrow Mill are named too,
# in a weaker sentence; Quillfeather Books is a look-alike; the rest is filler about printing.
FIRST_HOP = ("Quillfeather Press: Quillfeather Press is a publishing house founded by Odile Varensky. "
             "The press prints poetry in a small workshop in Venmoor, near Harrow Mill. "
             "Its books are sold in independent shops.")
BRIDGE = ("Odile Varensky: Odile Varensky is a novelist and translator. "
          "She came into the world in 1931 in a fishing village and studied languages.")
DECOY_NAMED_LATER = "Venmoor: Venmoor is a market town on a river. The town has a cathedral and a weekly market."
MILL = "Harrow Mill: Harrow Mill is a paper mill on the river. Harrow Mill makes paper for printers."
LOOK_ALIKE = "Quillfeather Books: Quillfeather Books is a bookshop chain. It sells used books in a university town."
FILLER = [f"Printing history {k}: Printing presses of region {k} used movable type. "
          f"The workshops of region {k} printed newspapers and pamphlets." for k in range(4)]
PASSAGES = [LOOK_ALIKE, FILLER[0], DECOY_NAMED_LATER, FIRST_HOP, FILLER[1], BRIDGE, MILL, FILLER[2], FILLER[3]]
ANSWER = "She came into the world in 1931"
BRIDGE_INDEX, DECOY_INDEX = PASSAGES.index(BRIDGE), PASSAGES.index(DECOY_NAMED_LATER)


def _units() -> list[Unit]:
    return [u for index, passage in enumerate(PASSAGES) for u in split_sentences(passage, [], passage=index)]


def _headings() -> list[str | None]:
    return [passage_heading(p) for p in PASSAGES]


def _best_in(units: list[Unit], scores: list[float]) -> dict[int, float]:
    best: dict[int, float] = {}
    for unit, value in zip(units, scores, strict=True):
        best[unit.passage] = max(best.get(unit.passage, float("-inf")), value)
    return best


def _lexical(**kwargs: object) -> RelevanceScorer:
    return RelevanceScorer(semantic_weight=0.0, **kwargs)  # type: ignore[arg-type]  # no model: offline


def test_the_bridge_passage_is_lifted_to_within_the_gap_of_the_best() -> None:
    units = _units()
    scores = _lexical().score(units, question=QUESTION, headings=_headings())
    spread = (sum((v - sum(scores) / len(scores)) ** 2 for v in scores) / len(scores)) ** 0.5
    best = _best_in(units, scores)
    # lifted: within the gap (measured on the scores it was lifted in, which it only widens)
    assert best[BRIDGE_INDEX] >= max(scores) - 1.0 * spread - 1e-9
    ranked = sorted(best, key=lambda p: -best[p])
    assert ranked[:2] == [PASSAGES.index(FIRST_HOP), BRIDGE_INDEX]
    # the title named in a weaker sentence of the first hop is not the one lifted
    assert best[DECOY_INDEX] < best[BRIDGE_INDEX]


def test_off_leaves_the_bridge_where_its_own_words_put_it() -> None:
    units = _units()
    on = _best_in(units, _lexical().score(units, question=QUESTION, headings=_headings()))
    off = _best_in(units, _lexical(bridge_gap=None).score(units, question=QUESTION, headings=_headings()))
    assert on[BRIDGE_INDEX] > off[BRIDGE_INDEX]
    assert {p: v for p, v in on.items() if p != BRIDGE_INDEX} == {p: v for p, v in off.items() if p != BRIDGE_INDEX}


def test_auto_keeps_the_bridge_passage_whole() -> None:
    compressor = LeanCompressor(scorer=_lexical(), token_counter=COUNTER)
    result = compressor.compress(PASSAGES, budget=CompressionBudget(ratio="auto"), question=QUESTION)
    assert "founded by Odile Varensky" in result.text
    assert ANSWER in result.text  # the evidence is not the bridge's lead
    assert "Printing presses" not in result.text


def test_a_fixed_budget_ranks_the_bridge_above_look_alikes() -> None:
    compressor = LeanCompressor(scorer=_lexical(), token_counter=COUNTER)
    quarter = compressor.compress(PASSAGES, budget=CompressionBudget(ratio=0.25), question=QUESTION)
    assert "Odile Varensky is a novelist" in quarter.text and "Quillfeather Books" not in quarter.text
    third = compressor.compress(PASSAGES, budget=CompressionBudget(ratio=0.33), question=QUESTION)
    assert ANSWER in third.text


def test_a_title_the_question_names_is_a_first_hop_not_a_bridge() -> None:
    question = "Was the founder of Quillfeather Press born in Venmoor?"
    units = _units()
    on = _best_in(units, _lexical().score(units, question=question, headings=_headings()))
    off = _best_in(units, _lexical(bridge_gap=None).score(units, question=question, headings=_headings()))
    assert on[DECOY_INDEX] == off[DECOY_INDEX]  # Venmoor is found by the question itself
    assert on[BRIDGE_INDEX] > off[BRIDGE_INDEX]  # the founder is still the bridge


def test_without_titles_there_is_no_link_to_follow() -> None:
    units = _units()
    on = _lexical().score(units, question=QUESTION, headings=None)
    off = _lexical(bridge_gap=None).score(units, question=QUESTION, headings=None)
    assert on == off


def test_auto_policy_alone_does_not_reach_the_bridge() -> None:
    """The lift, not a looser policy, brings the bridge in: without it the same policy drops it."""
    units = _units()
    off = _lexical(bridge_gap=None).score(units, question=QUESTION, headings=_headings())
    on = _lexical().score(units, question=QUESTION, headings=_headings())
    bridge_units = {i for i, u in enumerate(units) if u.passage == BRIDGE_INDEX}
    assert not bridge_units <= set(AutoPolicy().keep(units, off))
    assert bridge_units <= set(AutoPolicy().keep(units, on))


@pytest.mark.parametrize("bad", [-0.5, float("inf"), float("nan"), "1"])
def test_bad_bridge_gap_names_the_parameter(bad: object) -> None:
    with pytest.raises(InvalidParameterError, match="bridge_gap"):
        RelevanceScorer(bridge_gap=bad)  # type: ignore[arg-type]


@pytest.mark.integration
def test_the_real_embedder_keeps_the_bridge_in_auto() -> None:
    result = LeanCompressor().compress(PASSAGES, budget=CompressionBudget(ratio="auto"), question=QUESTION)
    assert ANSWER in result.text
