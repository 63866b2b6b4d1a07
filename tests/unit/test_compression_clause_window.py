"""Clause selection by window (high ratios on short contexts): the best sentence first, a run of
its clauses grown rightwards from the anchor, the next clause's near side filling the room."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from lean_core import InvalidParameterError, TokenCounter
from lean_core.compression import CompressionBudget, LeanCompressor
from lean_core.compression.clause_window import Extension, focus_window, window_select
from lean_core.compression.protect import find_protected_spans
from lean_core.compression.segment import Unit, tail_points, trim_points
from lean_core.compression.select import RelevanceScorer, passage_bm25

LEXICAL = RelevanceScorer(semantic_weight=0.0)  # no embedding model: fast and offline
COUNTER = TokenCounter()

# The question restates the first clause of the third sentence; the answer is in the clause after it.
PASSAGE = (
    "The Varnet valley was settled by farmers during the early medieval period. "
    "Most families grew wheat, barley and rye on terraces cut into the lower slopes. "
    "As the Orlan river approaches the northern border, it has an annual mean discharge of 2,290 m3/s "
    "at `gauge_7`. "
    "Fishing boats once worked the lower reaches, although few remain today. "
    "The main road follows the western bank for most of its length, crossing it twice near the old mill towns. "
    "Several stone bridges from the eighteenth century still carry local traffic across the smaller tributaries."
)
QUESTION = "How much water does the Orlan river carry as it approaches the northern border?"


def _clauses(sentences: list[int]) -> list[Unit]:
    return [Unit(passage=0, index=i, start=i, end=i + 1, text="x", sentence=s) for i, s in enumerate(sentences)]


def _compressor(**kwargs: object) -> LeanCompressor:
    return LeanCompressor(scorer=LEXICAL, token_counter=COUNTER, **kwargs)  # type: ignore[arg-type]


# -- the selection ----------------------------------------------------------------------------------
def test_the_run_grows_rightwards_from_the_anchor_not_to_the_better_scoring_clause() -> None:
    # Clause 1 restates the question (anchor); clause 0 scores better than clause 2, but what
    # follows the restated words is kept; clause 0 is then the near side (its tail) to fill with.
    chosen, extension = window_select(_clauses([0, 0, 0]), [3.0, 5.0, 1.0], {(0, 0): 1.0}, [10, 10, 10], 20)
    assert chosen == {1, 2}
    assert extension == Extension(0, "tail")


def test_sentences_are_ranked_as_sentences_and_a_fitting_one_is_kept_whole() -> None:
    # Sentence 1's clauses score lower one by one, but the sentence ranks first: it goes in whole.
    units = _clauses([0, 0, 1, 1])
    chosen, extension = window_select(units, [4.0, 4.0, 2.0, 2.0], {(0, 0): 1.0, (0, 1): 3.0}, [10, 10, 10, 10], 25)
    assert chosen == {2, 3}
    assert extension == Extension(0, "focus")  # the anchor of sentence 0 fits only in part


def test_a_run_blocked_on_its_right_asks_for_the_head_of_the_next_clause() -> None:
    chosen, extension = window_select(_clauses([0, 0, 0]), [5.0, 1.0, 0.0], {(0, 0): 1.0}, [10, 30, 5], 25)
    assert chosen == {0}
    assert extension == Extension(1, "head")


def test_an_anchor_longer_than_the_budget_is_cut_around_the_question() -> None:
    chosen, extension = window_select(_clauses([0, 1]), [5.0, 1.0], {(0, 0): 2.0, (0, 1): 1.0}, [40, 10], 20)
    assert chosen == set() and extension == Extension(0, "focus")


def test_focus_window_holds_the_question_words_and_leaves_room_after_them() -> None:
    text = "aa bb cc dd ee ff gg"
    unit = Unit(passage=0, index=0, start=0, end=len(text), text=text)
    start, end = focus_window(text, unit, [], {"dd"}, lambda a, b: len(text[a:b].split()) <= 3, str.split) or (0, 0)
    assert text[start:end] == "dd ee ff"
    assert focus_window(text, unit, [], {"dd"}, lambda a, b: False, str.split) is None


def test_cut_points_never_fall_inside_a_protected_span() -> None:
    text = 'He said "wise up or die" to them all'
    spans = find_protected_spans(text)
    unit = Unit(passage=0, index=0, start=0, end=len(text), text=text)
    tails = tail_points(text, unit, spans)
    assert tails == sorted(tails, reverse=True)
    for cut in [*tails, *trim_points(text, unit, spans)]:
        assert not any(s.start < cut < s.end for s in spans)
    words = re.compile(r"\w+").findall  # as the scorer splits words: 'die"' holds "die"
    window = focus_window(text, unit, spans, {"die"}, lambda a, b: len(text[a:b].split()) <= 6, words)
    assert window is not None and '"wise up or die"' in text[window[0]:window[1]]


# -- the compressor -------------------------------------------------------------------------------
def test_the_answer_next_to_the_restated_words_is_kept_at_5x() -> None:
    budget = CompressionBudget(ratio=0.2)
    windowed = _compressor().compress(PASSAGE, budget=budget, question=QUESTION)
    greedy = _compressor(clause_selection="greedy").compress(PASSAGE, budget=budget, question=QUESTION)
    assert "2,290" in windowed.text and "2,290" not in greedy.text
    assert windowed.text.startswith("As the Orlan river approaches the northern border, it has")  # one piece
    assert windowed.budget_met and windowed.compressed_tokens <= windowed.target_tokens


@pytest.mark.parametrize("ratio", [0.08, 0.12, 0.15, 0.2, 0.25])
def test_budget_and_protected_spans_hold_at_every_high_ratio(ratio: float) -> None:
    budget = CompressionBudget(ratio=ratio)
    result = _compressor().compress(PASSAGE, budget=budget, question=QUESTION)
    assert result.compressed_tokens <= result.target_tokens
    assert COUNTER.count(result.text, budget.target_model).tokens == result.compressed_tokens
    # Spans ("2,290", "m3", "`gauge_7`") are kept byte for byte or not at all, never cut.
    assert set(re.findall(r"\d[\d,]*", result.text)) <= {"2,290", "3", "7"}
    assert result.text.count("`") in (0, 2) and ("`" not in result.text or "`gauge_7`" in result.text)


def test_clause_selection_is_validated_and_greedy_keeps_the_old_choice() -> None:
    with pytest.raises(InvalidParameterError, match="clause_selection"):
        _compressor(clause_selection="best")
    budget = CompressionBudget(ratio=0.33)
    for selection in ("window", "greedy"):  # sentence granularity: the option changes nothing
        result = _compressor(clause_selection=selection, granularity="sentence").compress(
            PASSAGE, budget=budget, question=QUESTION)
        assert "2,290" in result.text


def test_the_anchor_is_the_clause_of_the_partly_kept_sentence_that_the_scorer_ranks_best() -> None:
    # One long sentence of three clauses; the question names words of the middle one only. The
    # compressor ranks sentences with the scorer, then ranks the clauses of the sentence it can keep
    # only in part: the window starts at the middle clause (not at the first) and grows rightwards.
    passage = ("Engineers in the valley first surveyed the eastern ridge for a quarry site, "
               "the Orlan dam was completed by the Halvorsen company in the spring of 1931, "
               "and the reservoir behind it filled over the following two winters.")
    result = _compressor().compress(passage, budget=0.55, question="Which company completed the Orlan dam?")
    assert "the Orlan dam was completed by the Halvorsen company" in result.text
    assert "Engineers in the valley" not in result.text
    assert result.compressed_tokens <= result.target_tokens


# -- session 19: where the window starts and which way it grows --------------------------------------
def test_focus_window_prefers_the_slice_reaching_furthest_right_among_equal_holders() -> None:
    # Three slices of three words hold "cc"; the longest in characters starts the unit, but the
    # answer follows the restated word: the slice ending latest wins.
    text = "aaaa bbbb cc d e f"
    unit = Unit(passage=0, index=0, start=0, end=len(text), text=text)
    window = focus_window(text, unit, [], {"cc"}, lambda a, b: len(text[a:b].split()) <= 3, str.split)
    assert window is not None and text[window[0]:window[1]] == "cc d e"


def test_a_parenthesis_anchor_takes_the_clause_before_it_first() -> None:
    # "the site of the Chicago Pile-1 | (the first self-sustained reaction, | part of ...": the
    # question restates the parenthesis; what it describes is on its left.
    texts = ["the site of the Chicago Pile-1", "(the first self-sustained reaction,", "part of the project)"]
    units = [Unit(passage=0, index=i, start=i, end=i + 1, text=t, sentence=0) for i, t in enumerate(texts)]
    chosen, extension = window_select(units, [1.0, 5.0, 1.0], {(0, 0): 1.0}, [10, 10, 10], 20)
    assert chosen == {0, 1}
    assert extension == Extension(2, "head")
    plain = [replace(u, text=u.text.lstrip("(")) for u in units]  # no parenthesis: rightwards first
    assert window_select(plain, [1.0, 5.0, 1.0], {(0, 0): 1.0}, [10, 10, 10], 20) == ({1, 2}, Extension(0, "tail"))


def test_passage_bm25_weighs_words_by_their_rarity_across_the_passage() -> None:
    passage = ["The Orlan dam holds the Orlan lake.", "The Orlan dam was paid for in gold.",
               "The Orlan dam is tall."]
    clauses = ["The Orlan dam, the Orlan dam,", "was paid for in gold."]
    topic, rare = passage_bm25("How was the Orlan dam paid for?", clauses, passage)
    assert rare > topic  # "paid" is in one sentence; "orlan" and "dam" in every one


def test_the_anchor_is_the_clause_with_the_questions_rarest_words() -> None:
    # Every sentence names the Orlan dam; only one clause says how it was paid for. Ranked within
    # the sentence alone, the clause repeating the topic words would be the anchor.
    passage = ("The Orlan dam stands at the head of the valley. "
               "Engineers of the Orlan dam and of the Orlan dam's spillway met in Varnet in the spring, "
               "the builders were paid in grain and salt by the valley's farmers. "
               "The Orlan dam was repaired after the flood of 1931. "
               "Visitors to the Orlan dam walk along its crest in the summer.")
    question = "How were the builders of the Orlan dam paid?"
    result = _compressor().compress(passage, budget=0.12, question=question)
    assert "paid in grain" in result.text and "Engineers" not in result.text
    assert result.compressed_tokens <= result.target_tokens
