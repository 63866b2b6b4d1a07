"""Layer 4 core: features, the length predictor, plans, early stopping, truncation, ledger history."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from lean_core.budget import (
    BudgetOptions,
    BudgetSession,
    EarlyStopMonitor,
    EarlyStopRule,
    LengthPredictor,
    ModelAnswer,
    OutputTruncatedError,
    budget_parameter,
    default_predictor,
    extract_features,
    finish_reason_of,
    is_truncated,
    plan_budget,
    provider_budget_params,
)
from lean_core.budget.features import FEATURE_NAMES, requested_length_tokens
from lean_core.errors import InvalidParameterError
from lean_core.generation import SamplingOptions
from lean_core.ledger import CostLedger
from lean_core.ledger_records import OutputLengthRecord


# -- features ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("query", "expected"), [
    ("when was the last time anyone was on the moon", "q_when"),
    ("who wrote he ain't heavy he's my brother lyrics", "q_who"),
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
     "How many clips did Natalia sell altogether?", "form_word_problem"),
    ("why is the sky blue", "form_explanation"),
    ("Write a python function that reverses a linked list", "form_code"),
    ("write a blog post about remote work", "form_long_form"),
])
def test_features_name_the_question_type_and_form(query: str, expected: str) -> None:
    features = extract_features(query).as_dict()
    assert features[expected] == 1.0
    assert set(features) == set(FEATURE_NAMES)


def test_explicit_length_requests_are_read() -> None:
    assert requested_length_tokens("Write a 300 word essay on tea") == 420
    assert requested_length_tokens("in 2 paragraphs, explain tides") == 180
    assert requested_length_tokens("who won the cup in 1966") is None


# -- predictor -----------------------------------------------------------------------------------
def _synthetic(n: int = 400) -> tuple[list[str], list[int]]:
    rng = random.Random(0)
    queries, lengths = [], []
    for i in range(n):
        if i % 2:
            queries.append(f"who was the person number {i} in the list")
            lengths.append(rng.randint(10, 30))
        else:
            queries.append(f"write a long story about dragon number {i} and its friends in the valley")
            lengths.append(rng.randint(300, 600))
    return queries, lengths


def test_predictor_learns_short_and_long_answers_and_round_trips(tmp_path: Path) -> None:
    queries, lengths = _synthetic()
    predictor = LengthPredictor.fit([extract_features(q) for q in queries], lengths, model="m", quantile=0.9)
    short = predictor.predict("who was the person that won")
    long = predictor.predict("write a long story about a dragon and its friends")
    assert short.budget_tokens < 60 < 250 < long.budget_tokens
    assert short.expected_tokens <= short.budget_tokens
    # about 90 % of the training answers fit their budget
    fits = [predictor.predict(q).budget_tokens >= n for q, n in zip(queries, lengths, strict=True)]
    assert 0.8 <= sum(fits) / len(fits) <= 0.99
    loaded = LengthPredictor.load(predictor.save(tmp_path / "p.json"))
    assert loaded.predict("who was the person that won") == short


def test_predictor_honours_explicit_length_requests() -> None:
    queries, lengths = _synthetic()
    predictor = LengthPredictor.fit([extract_features(q) for q in queries], lengths, model="m")
    assert predictor.predict("who was it, in 800 words").budget_tokens >= 1400


def test_refresh_from_history_moves_the_budget_and_grows_margin_on_cuts() -> None:
    queries, lengths = _synthetic()
    predictor = LengthPredictor.fit([extract_features(q) for q in queries], lengths, model="m", quantile=0.9)
    before = predictor.predict("who was the person that won").budget_tokens
    features = extract_features("who was the person that won").values
    history = [OutputLengthRecord(model="m", feature_version="1", features=features, output_tokens=120,
                                  finish_reason="stop") for _ in range(300)]
    assert predictor.refreshed(history).predict("who was the person that won").budget_tokens > before
    cut = [h.model_copy(update={"finish_reason": "length"}) for h in history[:100]] + history[:100]
    assert predictor.refreshed(cut).margin > predictor.margin
    assert predictor.refreshed(history[:5]) is predictor  # too little history: unchanged


def test_predictor_bad_input_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidParameterError, match="quantile"):
        LengthPredictor.fit([extract_features("a")] * 40, [1] * 40, model="m", quantile=1.0)
    with pytest.raises(InvalidParameterError, match="at least"):
        LengthPredictor.fit([extract_features("a")], [1], model="m")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(InvalidParameterError, match="length predictor"):
        LengthPredictor.load(bad)


def test_bundled_predictor_gives_short_budgets_to_facts_and_long_ones_to_writing() -> None:
    predictor = default_predictor()
    fact = predictor.predict("who wrote the novel emma")
    essay = predictor.predict("Write a detailed essay about the history of the printing press")
    assert fact.budget_tokens < essay.budget_tokens
    assert 8 <= fact.expected_tokens <= fact.budget_tokens


# -- plans -----------------------------------------------------------------------------------------
def test_plan_clips_to_the_context_window_and_rejects_impossible_budgets() -> None:
    options = BudgetOptions()
    plan = plan_budget("Write a 2000 word story about a cat", options, context_window=1000, prompt_tokens=900)
    assert plan.max_tokens == 100
    with pytest.raises(InvalidParameterError, match="context window"):
        plan_budget("hi", options, context_window=100, prompt_tokens=100)
    with pytest.raises(InvalidParameterError, match="max_tokens"):
        plan_budget("hi", BudgetOptions(max_tokens=5000), context_window=2048, prompt_tokens=10)
    with pytest.raises(ValueError, match="min_tokens"):
        BudgetOptions(min_tokens=0)
    with pytest.raises(ValueError, match="on_truncation"):
        BudgetOptions(on_truncation="ignore")  # type: ignore[arg-type]


def test_plan_adds_brevity_stop_sequences_and_reasoning_allowance() -> None:
    plain = plan_budget("who wrote emma", BudgetOptions())
    brief = plan_budget("who wrote emma", BudgetOptions(brevity=True))
    assert plain.brevity_instruction is None and brief.brevity_instruction == "Answer in one short sentence."
    assert plain.stop == ("\n\n",)
    assert plan_budget("list five fruits", BudgetOptions()).stop == ()
    assert brief.baseline_tokens == plain.expected_tokens
    reasoning = plan_budget("who wrote emma", BudgetOptions(), model="o3-mini")
    assert reasoning.max_tokens == plain.max_tokens + 1024


# -- early stopping ------------------------------------------------------------------------------
def _decode(ids: list[int]) -> str:
    words = {1: "Paris", 2: ".", 3: " It", 4: " is", 5: " big", 0: "<end>"}
    return "".join(words.get(i, f" w{i}") for i in ids)


def test_confidence_stop_ends_at_a_boundary_when_the_end_token_is_likely() -> None:
    monitor = EarlyStopMonitor(EarlyStopRule(eos_probability=0.3, min_tokens=1), eos_token_ids={0},
                               decode=_decode)
    assert monitor.push(1, {1: -0.1})
    assert monitor.push(2, {2: -0.1, 0: math.log(0.2)})  # end unlikely: go on
    assert not monitor.push(3, {3: -0.9, 0: math.log(0.4)})  # "Paris." ends here
    assert monitor.reason == "confidence" and monitor.text == "Paris." and monitor.generated == 3


def test_confidence_stop_waits_for_a_boundary() -> None:
    monitor = EarlyStopMonitor(EarlyStopRule(eos_probability=0.3, min_tokens=1), eos_token_ids={0},
                               decode=_decode)
    assert monitor.push(1, {1: -0.1})
    assert monitor.push(3, {3: -0.9, 0: math.log(0.6)})  # "Paris" has no boundary yet
    assert monitor.reason is None


def test_repetition_stop_cuts_the_loop_back_to_a_boundary() -> None:
    rule = EarlyStopRule(eos_probability=None, repetition_tokens=3)
    monitor = EarlyStopMonitor(rule, eos_token_ids={0}, decode=_decode)
    sequence = [1, 2, 3, 4, 5, 2, 3, 4, 5, 2, 3, 4, 5]
    kept = [monitor.push(t, None) for t in sequence]
    assert kept[-1] is False or monitor.reason == "repetition"
    assert monitor.reason == "repetition"
    assert monitor.text == "Paris. It is big."
    assert monitor.generated < len(sequence)


def _decode_text(ids: list[int]) -> str:
    pieces = {1: "The", 2: " U", 3: ".S", 4: ".", 5: " Army", 6: " was", 7: " founded", 8: " in", 9: " 1775",
              10: " It", 11: " grew", 12: "\n", 13: " 3", 14: "5", 15: "1", 16: " Paris"}
    return "".join(pieces[i] for i in ids)


def test_sentence_limit_stops_after_the_first_complete_sentence_only() -> None:
    rule = EarlyStopRule(eos_probability=None, sentences=1)
    monitor = EarlyStopMonitor(rule, eos_token_ids={0}, decode=_decode_text)
    # "The U.S. Army was founded in 1775. It grew": the acronym's period is no sentence end.
    pushed = [monitor.push(t, None) for t in (1, 2, 3, 4, 5, 6, 7, 8, 9, 4, 10, 11)]
    assert pushed == [True] * 10 + [False, False]
    assert monitor.reason == "sentences" and monitor.text == "The U.S. Army was founded in 1775."
    assert monitor.generated == 11  # the refused " It" was generated, never shown


@pytest.mark.parametrize("ids", [
    (1, 8, 13, 4, 14, 6, 11),  # "The in 3.5 was grew": a decimal point is no sentence end
    (15, 4, 16, 12, 15, 4, 16),  # "1. Paris\n1. Paris": list numbers are no sentence ends
])
def test_sentence_limit_ignores_points_that_end_no_sentence(ids: tuple[int, ...]) -> None:
    monitor = EarlyStopMonitor(EarlyStopRule(eos_probability=None, sentences=1), eos_token_ids={0},
                               decode=_decode_text)
    assert all(monitor.push(t, None) for t in ids)
    assert monitor.reason is None


def test_sentence_limit_counts_sentences_and_is_off_by_default() -> None:
    answer = (1, 5, 6, 7, 4, 10, 11, 4, 10, 11, 4)  # "The Army was founded. It grew. It grew."
    two = EarlyStopMonitor(EarlyStopRule(eos_probability=None, repetition_tokens=0, sentences=2),
                           eos_token_ids={0}, decode=_decode_text)
    assert [two.push(t, None) for t in answer] == [True] * 8 + [False] * 3
    assert two.text == "The Army was founded. It grew."
    off = EarlyStopMonitor(EarlyStopRule(eos_probability=None, repetition_tokens=0), eos_token_ids={0},
                           decode=_decode_text)
    assert all(off.push(t, None) for t in answer) and off.reason is None
    with pytest.raises(ValueError, match="sentences"):
        EarlyStopRule(sentences=0)


@pytest.mark.parametrize(("query", "one_fact"), [
    ("who wrote rainy days and mondays", True),
    ("when did the apple iphone se come out", True),
    ("how many terms can a mayor serve in texas", True),
    ("what is the salary of us secretary of state", True),
    ("why is the sky blue", False),
    ("what are the ranks in the us navy", False),  # a list
    ("who won the cup? explain in detail", False),
    ("Write a python function that reverses a linked list", False),
    ("who is this?\nJohn Smith, 42, London", False),  # more than one line
])
def test_plans_limit_one_fact_questions_to_one_sentence(query: str, one_fact: bool) -> None:
    plan = plan_budget(query, BudgetOptions())
    assert plan.early_stop is not None
    assert plan.early_stop.sentences == (1 if one_fact else None)
    assert plan.early_stop.eos_probability == EarlyStopRule().eos_probability  # the rest unchanged
    assert plan_budget(query, BudgetOptions(fact_sentences=None)).early_stop == EarlyStopRule()
    assert plan_budget(query, BudgetOptions(early_stop=None)).early_stop is None


def test_sampling_options_validate_early_stop() -> None:
    with pytest.raises(ValueError, match="n=1"):
        SamplingOptions(n=2, early_stop=EarlyStopRule())
    with pytest.raises(ValueError, match="eos_probability"):
        EarlyStopRule(eos_probability=1.5)
    with pytest.raises(ValueError, match="ignore_eos"):
        SamplingOptions(ignore_eos=True, early_stop=EarlyStopRule())


# -- sessions and truncation ---------------------------------------------------------------------
def test_session_continues_once_then_reports() -> None:
    session = BudgetSession("who wrote emma", BudgetOptions(on_truncation="continue"))
    first = session.first_request()
    follow = session.on_answer(ModelAnswer(text="Jane ", finish_reason="length", output_tokens=first.max_tokens))
    assert follow is not None and follow.continue_from == "Jane "
    assert session.on_answer(ModelAnswer(text="Austen", finish_reason="length", output_tokens=3)) is None
    outcome = session.outcome
    assert session.text == "Jane Austen" and outcome.continued and outcome.truncated
    assert outcome.output_tokens == first.max_tokens + 3


def test_session_raise_and_report_policies() -> None:
    raising = BudgetSession("who wrote emma", BudgetOptions(on_truncation="raise"))
    with pytest.raises(OutputTruncatedError, match="budget"):
        raising.on_answer(ModelAnswer(text="Jane", finish_reason="max_tokens", output_tokens=9, raw="partial"))
    reporting = BudgetSession("who wrote emma", BudgetOptions(on_truncation="report"))
    assert reporting.on_answer(ModelAnswer(text="Jane", finish_reason="length", output_tokens=9)) is None
    assert reporting.outcome.truncated and not reporting.outcome.continued


def test_truncation_spellings_of_every_provider() -> None:
    assert all(is_truncated(r) for r in ("length", "max_tokens", "MAX_TOKENS", "max_output_tokens"))
    assert not any(is_truncated(r) for r in (None, "stop", "end_turn", "STOP"))
    assert finish_reason_of({"stop_reason": "max_tokens"}) == "max_tokens"
    assert finish_reason_of({"incomplete_details": {"reason": "max_output_tokens"}}) == "max_output_tokens"


# -- provider parameters ---------------------------------------------------------------------------
def test_budget_parameter_per_model_class() -> None:
    assert budget_parameter("ChatAnthropic").name == "max_tokens"
    assert budget_parameter("ChatGoogleGenerativeAI").name == "max_output_tokens"
    assert budget_parameter("ChatOllama").name == "num_predict"
    assert budget_parameter("HuggingFaceLLM").name == "max_new_tokens"
    unknown = budget_parameter("SomethingNew")
    assert unknown.name == "max_tokens" and not unknown.known
    with pytest.raises(InvalidParameterError, match="SomethingNew"):
        budget_parameter("SomethingNew", strict=True)


def test_provider_request_fields() -> None:
    assert provider_budget_params("openai", 64) == {"max_completion_tokens": 64}
    assert provider_budget_params("anthropic", 64) == {"max_tokens": 64}
    assert provider_budget_params("google", 64) == {"generationConfig": {"maxOutputTokens": 64}}
    assert provider_budget_params("vllm", 64) == {"max_tokens": 64}
    for bad in (0, -3, True, 2.5):
        with pytest.raises(InvalidParameterError, match="max_tokens"):
            provider_budget_params("openai", bad)  # type: ignore[arg-type]


# -- ledger history ----------------------------------------------------------------------------------
def test_ledger_keeps_length_history_and_output_savings(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    session = BudgetSession("who wrote emma", BudgetOptions())
    session.on_answer(ModelAnswer(text="Jane Austen.", finish_reason="stop", output_tokens=4))
    savings, history = session.records(model="gpt-4o-mini", provider="openai", tenant="acme")
    with CostLedger(path) as ledger:
        ledger.record(savings)
        ledger.record_output_length(history)
    with CostLedger(path, read_only=True) as ledger:
        (event,) = ledger.savings()
        (row,) = ledger.output_lengths(model="gpt-4o-mini")
    assert event.layer == "output" and event.output_tokens_after == 4
    assert row.features == history.features and row.output_tokens == 4 and row.tenant == "acme"
