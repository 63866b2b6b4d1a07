"""LeanCompressor: budgets hold, protected spans are never altered, bad input is handled."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lean_core import InvalidParameterError, TokenCounter
from lean_core.compression import (
    CompressionBudget,
    LeanCompressor,
    MissingQuestionError,
    find_protected_spans,
)
from lean_core.compression.normalize import dedupe_passages, normalize_whitespace
from lean_core.compression.segment import passage_heading, split_clauses, split_sentences
from lean_core.compression.select import RelevanceScorer

LEXICAL = RelevanceScorer(semantic_weight=0.0)  # no embedding model: fast property tests
COUNTER = TokenCounter()


def _lexical(**kwargs: object) -> LeanCompressor:
    return LeanCompressor(scorer=LEXICAL, token_counter=COUNTER, **kwargs)  # type: ignore[arg-type]


PROTECTED_ITEMS = st.sampled_from([
    "$6.95", "2026-03-14", "order #48213", "v2.1.0", "https://example.com/a?b=1&c=2", "bob.smith@example.org",
    "get_user_id", "camelCaseName", "`x = f(1, 2)`", '"exact quoted words"', '{"key": [1, 2, 3]}',
    "```python\nfor i in range(3):\n    print(i)\n```", "42%", "A1B2C3", "3.14159", "NASA",
])
WORDS = st.sampled_from("the refund policy allows returns within days of delivery for members and others "
                        "who bought items on sale or with gift cards at the store".split())


@st.composite
def documents(draw: st.DrawFn) -> str:
    sentences = []
    for _ in range(draw(st.integers(1, 14))):
        words = draw(st.lists(WORDS, min_size=2, max_size=18))
        for _ in range(draw(st.integers(0, 2))):
            words.insert(draw(st.integers(0, len(words))), draw(PROTECTED_ITEMS))
        sentences.append(" ".join(words).capitalize() + draw(st.sampled_from([".", "!", "?", ";", ","])))
    return draw(st.sampled_from([" ", "\n", "  ", "\n\n"])).join(sentences)


def _protected_texts(text: str) -> set[str]:
    return {s.text(text) for s in find_protected_spans(text)}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), ratio=st.floats(0.05, 1.0), question=st.sampled_from([None, "refund days for members?"]))
def test_budget_holds_and_protected_spans_survive_verbatim(doc: str, ratio: float, question: str | None) -> None:
    result = _lexical().compress(doc, budget=CompressionBudget(ratio=ratio, target_model="gpt-4"), question=question)
    assert result.compressed_tokens <= result.target_tokens
    assert result.compressed_tokens == COUNTER.count(result.text, "gpt-4").tokens
    # Every protected span in the output is one of the input's, byte for byte; none is cut.
    assert _protected_texts(result.text) <= _protected_texts(normalize_whitespace(doc)) | _protected_texts(doc)
    for span in find_protected_spans(doc, kinds=("code_block", "json", "url", "email")):
        piece = span.text(doc)
        head = piece[: max(1, len(piece) // 2)]
        assert piece in result.text or head not in result.text or piece.count(head) != doc.count(head)


@settings(max_examples=800, deadline=None)
@given(text=st.text(min_size=0, max_size=400), target=st.integers(1, 120))
def test_arbitrary_unicode_never_crashes_and_budget_holds(text: str, target: int) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        with pytest.raises(InvalidParameterError, match="context"):
            _lexical().compress(text, budget=CompressionBudget(target_tokens=target, target_model="gpt-4"))
        return
    result = _lexical().compress(text, budget=CompressionBudget(target_tokens=target, target_model="gpt-4"))
    assert result.compressed_tokens <= max(result.target_tokens, 0) or result.original_tokens == 0


def test_sentences_and_clauses_never_cut_protected_spans() -> None:
    text = ('Call get_user_id() at https://a.io/x.y. It costs $6.95, i.e. about 7, on 2026-03-14. '
            'Config {"a": [1, 2], "b": "x. y"} loads. Dr. Who said "Stop. Now." and left.')
    spans = find_protected_spans(text)
    for units in (split_sentences(text, spans), split_clauses(text, spans)):
        for span in spans:
            assert any(u.start <= span.start and span.end <= u.end for u in units), span.text(text)
    assert [u.text for u in split_sentences(text, spans)][-1] == 'Dr. Who said "Stop. Now." and left.'


def test_normalisation_keeps_code_and_dedupes() -> None:
    text = "a   b\n\n\n\nc  `x   y`  d\n```\nkeep    these   spaces\n```"
    out = normalize_whitespace(text)
    assert "`x   y`" in out and "keep    these   spaces" in out and "a b\n\nc `x   y` d" in out
    keep, dropped = dedupe_passages(["Same text here now.", "same  text here now.", "Other words entirely here."])
    assert keep == [0, 2] and dropped[0].kind == "duplicate"


def test_passages_keep_their_boundaries_and_order_options() -> None:
    passages = ["Paris is the capital of France.", "The Nile is a river in Africa.", "Bananas are yellow."]
    for order in ("original", "relevance", "edges"):
        result = _lexical(order=order).compress(passages, budget=CompressionBudget(ratio=0.7, target_model="gpt-4"),
                                                question="What is the capital of France?")
        assert "Paris is the capital of France." in result.text.split("\n\n")
    with pytest.raises(InvalidParameterError, match="order"):
        LeanCompressor(order="random")  # type: ignore[arg-type]


def test_bad_budgets_and_inputs() -> None:
    with pytest.raises(InvalidParameterError, match="ratio"):
        CompressionBudget(ratio=0.0)
    with pytest.raises(InvalidParameterError, match="ratio"):
        CompressionBudget(ratio=1.5)
    with pytest.raises(InvalidParameterError, match="exactly one"):
        CompressionBudget(ratio=0.5, target_tokens=10)
    with pytest.raises(InvalidParameterError, match="target_tokens"):
        CompressionBudget(target_tokens=0)
    with pytest.raises(InvalidParameterError, match="decode bytes"):
        _lexical().compress(b"\xff\xfe binary", budget=CompressionBudget(ratio=0.5))  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="lone surrogates"):
        _lexical().compress("bad \udcff text", budget=CompressionBudget(ratio=0.5))
    with pytest.raises(MissingQuestionError, match="question"):
        _lexical(require_question=True).compress("Some text. More text.", budget=CompressionBudget(ratio=0.5))


def test_empty_and_already_small_inputs_pass_through() -> None:
    empty = _lexical().compress("", budget=CompressionBudget(ratio=0.5))
    assert empty.text == "" and empty.original_tokens == 0 and empty.budget_met
    small = _lexical().compress("Short text.", budget=CompressionBudget(target_tokens=500, target_model="gpt-4"))
    assert small.text == "Short text." and small.note == "input already within budget"


def test_mixed_scripts_compress_within_budget() -> None:
    text = ("東京は日本の首都です。人口は約1400万人です。富士山は日本で一番高い山です。"
            " القاهرة هي عاصمة مصر. يبلغ عدد سكانها 10 ملايين نسمة. "
            "Paris is the capital of France. It has 2.1 million people.")
    result = _lexical().compress(text, budget=CompressionBudget(ratio=0.5, target_model="gpt-4"),
                                 question="日本の首都はどこですか?")
    assert 0 < result.compressed_tokens <= result.target_tokens
    assert all(piece in text for piece in re.split(r"\s+", result.text) if piece)


def test_protected_content_larger_than_target_is_reported_not_cut() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute_{i}(x)" for i in range(40)) + "\n```"
    result = _lexical().compress(code, budget=CompressionBudget(target_tokens=20, target_model="gpt-4"))
    assert result.text == "" and result.compressed_tokens == 0
    assert result.note is not None and "protected spans are never altered" in result.note


def test_a_million_character_context_is_compressed_within_budget() -> None:
    """1M characters: linear-time segmentation and scoring, the budget holds, the answer is found.
    (With MiniLM on, at most ``max_embedded_units`` lexically best sentences are embedded.)"""
    sentences = [f"Record {i} of the archive notes that shipment {i * 7} left depot {i % 13} on time."
                 for i in range(14_000)]
    sentences[7_777] = "The vault code for the Lisbon office is kept by Maria Alves."
    text = " ".join(sentences)[:1_000_000]
    assert len(text) == 1_000_000
    result = _lexical().compress(text, budget=CompressionBudget(target_tokens=400),
                                       question="Who keeps the vault code for the Lisbon office?")
    assert result.budget_met and 0 < result.compressed_tokens <= 400
    assert "Maria Alves" in result.text
    assert result.original_tokens > 200_000


@pytest.mark.parametrize(("passage", "heading"), [
    ("Harbour Lights (novel): Harbour Lights is a 1931 novel. It was set in Cornwall.", "Harbour Lights (novel)"),
    ("Opening hours\nThe shop opens at 9 am.", "Opening hours"),
    ("The shop opens at 9 am. It closes at 5 pm.", None),  # no heading: a sentence comes first
    ("Version 2.1: changes", None),  # a dot before the colon: not a title
    ("one two three four five six seven eight nine ten eleven twelve thirteen: text", None),
    ("", None),
])
def test_passage_heading_finds_titles_only(passage: str, heading: str | None) -> None:
    assert passage_heading(passage) == heading


def test_pronoun_led_sentences_are_scored_with_their_passage_heading() -> None:
    """'It was written by ...' says nothing of the song it is about; with the passage's heading it
    ranks for a question about that song's writers (real MiniLM, semantic signal only)."""
    passages = [
        "Harbour Lights (Mara Quinn song): Harbour Lights is a 2014 single by Mara Quinn. "
        "It was written by Tomas Vell and Ada Price. It reached number four in Ireland.",
        "Mara Quinn: Mara Quinn is an Irish singer. She grew up in Galway and studied music in Cork.",
        "Salt Road (album): Salt Road is the second album by the band Tidewater. It was recorded in Oslo.",
        "Tidewater (band): Tidewater are a folk band from Bergen. They have toured Europe since 2009.",
    ]
    units = [u for i, p in enumerate(passages) for u in split_sentences(p, (), passage=i)]
    scorer = RelevanceScorer(lexical_weight=0.0, type_weight=0.0, passage_weight=0.0, neighbour_weight=0.0,
                             expansion_weight=0.0)
    question = "Who were the writers of Mara Quinn's single Harbour Lights?"
    target = next(i for i, u in enumerate(units) if u.text.startswith("It was written"))

    def rank(scores: list[float]) -> int:
        return sorted(range(len(scores)), key=lambda i: -scores[i]).index(target)

    plain = rank(scorer.score(units, question=question))
    resolved = rank(scorer.score(units, question=question, headings=[passage_heading(p) for p in passages]))
    assert resolved < plain
    assert resolved <= 1


class HeadingSpy(RelevanceScorer):
    """The lexical scorer, recording the headings each call gets."""

    def __init__(self) -> None:
        super().__init__(semantic_weight=0.0)
        self.headings: list[list[str | None]] = []

    def score(self, units, *, question=None, headings=None):  # type: ignore[no-untyped-def, override]
        self.headings.append(list(headings or []))
        return super().score(units, question=question, headings=headings)


def test_given_titles_replace_guessed_headings_and_follow_dropped_passages() -> None:
    spy = HeadingSpy()
    passages = ["It opened in 1887. It has 12 platforms and a clock tower.",
                "Harbour Line: It runs every 15 minutes. It stops at 9 stations.",
                "   ",  # empty: dropped, its title with it
                "It opened in 1887. It has 12 platforms and a clock tower.",  # duplicate: dropped
                "The depot is closed on Sundays. It reopens on Monday at 6 am."]
    titles = ["Central Station", None, "Empty", "Central Station", " "]
    result = LeanCompressor(scorer=spy, token_counter=COUNTER).compress(
        passages, budget=CompressionBudget(ratio=0.5), question="When did Central Station open?", titles=titles)
    # A given title wins; no title falls back to the heading the text opens with; blank is none.
    assert spy.headings == [["Central Station", "Harbour Line", None]]
    assert "Central Station" not in result.text  # titles guide the choice, never join the output
    assert "1887" in result.text


def test_titles_through_coarse_to_fine_reach_the_coarse_stage() -> None:
    from lean_core.compression import CoarseToFineCompressor

    spy = HeadingSpy()
    coarse = LeanCompressor(scorer=spy, token_counter=COUNTER)
    passages = ["It opened in 1887. It has 12 platforms.", "It closes at midnight. It has a cafe."]
    CoarseToFineCompressor(coarse=coarse, fine=_lexical(), token_counter=COUNTER).compress(
        passages, budget=CompressionBudget(ratio=0.5), question="When did it open?", titles=["Central", "Depot"])
    assert spy.headings[0] == ["Central", "Depot"]


@pytest.mark.parametrize(("titles", "received"), [
    (["only one"], "1 titles"),
    ("Central Station", "'Central Station'"),
    (["a", 3], "int"),
])
def test_bad_titles_are_named(titles: object, received: str) -> None:
    with pytest.raises(InvalidParameterError, match="titles") as error:
        _lexical().compress(["It opened in 1887.", "It closed in 1990."], budget=CompressionBudget(ratio=0.5),
                        titles=titles)  # type: ignore[arg-type]
    assert received in str(error.value)
