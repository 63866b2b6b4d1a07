"""lean_core.templates: spec validation, stable-first rendering, few-shot selection, the linter."""

from __future__ import annotations

import pytest

from lean_core.errors import InvalidParameterError
from lean_core.templates import (
    DuplicateSectionError,
    FewShotExample,
    MissingVariableError,
    PromptSpec,
    StableSectionVariableError,
    UnknownVariableError,
    check_baseline,
    format_text_template,
    lint_prompt,
    render_prompt,
    render_with_savings,
    select_examples,
    template_savings,
)
from lean_core.tokens import TokenCounter

MODEL = "gpt-4"  # exact offline (cl100k_base)


def _spec(**overrides: object) -> PromptSpec:
    fields: dict[str, object] = dict(
        role="You are Acme's support agent.", task="Answer from the policy.",
        constraints=["If the policy does not cover it, say so.", "Quote the rule you used."],
        output_format="At most three sentences.", context="Policy:\n{policy}", question="Question: {question}")
    fields.update(overrides)
    return PromptSpec.model_validate(fields)


POOL = [
    FewShotExample(input="Can I return shoes after a month?", output="Yes, within 30 days."),
    FewShotExample(input="Do you ship to Canada?", output="Yes, in 5-8 days."),
    FewShotExample(input="How do I reset my password?", output="Use the 'Forgot password' link."),
    FewShotExample(input="Can I return a sale item?", output="Store credit only, within 14 days."),
]


# -- spec ---------------------------------------------------------------------------------------
def test_variables_in_order_of_appearance() -> None:
    spec = _spec(context="{policy}\n{extra}", question="{question} ({policy})")
    assert spec.variables == ("policy", "extra", "question")


def test_json_in_output_format_is_literal_but_a_placeholder_in_a_stable_section_is_refused() -> None:
    spec = _spec(output_format='JSON: {"label": "x"}')
    assert 'JSON: {"label": "x"}' in render_prompt(spec, {"policy": "p", "question": "q"}, model=MODEL).stable_prefix
    with pytest.raises(StableSectionVariableError) as info:
        _spec(task="Answer for {customer}.")
    assert info.value.parameter == "task" and info.value.received == "{customer}"
    assert "context or question" in str(info.value)


def test_duplicate_constraint_and_example_and_section_are_errors() -> None:
    with pytest.raises(DuplicateSectionError) as info:
        _spec(constraints=["Be brief.", "  be   BRIEF. "])
    assert info.value.parameter == "constraints" and "once" in info.value.allowed
    with pytest.raises(DuplicateSectionError):
        _spec(examples=[POOL[0]], example_pool=[POOL[0]])
    with pytest.raises(DuplicateSectionError) as info2:
        PromptSpec.from_sections([("task", "A."), ("question", "{q}"), ("task", "B.")])
    assert info2.value.parameter == "task" and info2.value.received == "B."
    with pytest.raises(InvalidParameterError) as info3:
        PromptSpec.from_sections({"task": "A.", "persona": "x"})
    assert info3.value.parameter == "section" and info3.value.received == "persona"


def test_spec_needs_a_variable_part_and_plain_placeholders() -> None:
    with pytest.raises(InvalidParameterError) as info:
        PromptSpec(task="Say hi.")
    assert info.value.parameter == "question"
    with pytest.raises(InvalidParameterError) as info2:
        _spec(question="{question!r}")
    assert info2.value.parameter == "question"
    with pytest.raises(InvalidParameterError):
        _spec(question="{question")  # unmatched brace


# -- rendering ----------------------------------------------------------------------------------
def test_stable_first_system_message_is_byte_identical_across_requests() -> None:
    spec = _spec()
    a = render_prompt(spec, {"policy": "Returns: 30 days.", "question": "Can I return shoes?"}, model=MODEL)
    b = render_prompt(spec, {"policy": "Shipping: free over $50.", "question": "Is shipping free?"}, model=MODEL)
    assert [m.role for m in a.messages] == ["system", "user"]
    assert a.messages[0] == b.messages[0] and a.stable_prefix == a.messages[0].content
    assert "{" not in a.stable_prefix and "Returns" not in a.stable_prefix
    assert a.messages[1].content.endswith("Question: Can I return shoes?")  # the question goes last
    counter = TokenCounter()
    assert a.stable_tokens == counter.count(a.stable_prefix, MODEL).tokens
    assert a.total_tokens == counter.count_messages([(m.role, m.content) for m in a.messages], MODEL).tokens
    assert not a.estimated
    assert a.to_dicts()[0] == {"role": "system", "content": a.stable_prefix}


def test_naive_order_puts_variables_first_in_one_message() -> None:
    r = render_prompt(_spec(), {"policy": "P", "question": "Q"}, model=MODEL, order="naive")
    assert [m.role for m in r.messages] == ["user"]
    assert r.messages[0].content.startswith("Policy:\nP") and r.stable_prefix == "" and r.stable_tokens == 0
    assert r.text.endswith("At most three sentences.")


def test_missing_unknown_and_bad_variables() -> None:
    spec = _spec()
    with pytest.raises(MissingVariableError) as info:
        render_prompt(spec, {"policy": "p"}, model=MODEL)
    assert info.value.parameter == "variables" and info.value.missing == ("question",)
    assert "missing: ['question']" in str(info.value) and info.value.received == ["policy"]
    with pytest.raises(MissingVariableError):
        render_prompt(spec, {"policy": "p", "question": None}, model=MODEL)
    with pytest.raises(UnknownVariableError) as info2:
        render_prompt(spec, {"policy": "p", "question": "q", "qestion": "typo"}, model=MODEL)
    assert info2.value.unknown == ("qestion",)
    ok = render_prompt(spec, {"policy": "p", "question": "q", "extra": 1}, model=MODEL, allow_extra=True)
    assert "extra" not in ok.text
    with pytest.raises(InvalidParameterError) as info3:
        render_prompt(spec, {"policy": "p", "question": "q"}, model=MODEL, order="random")  # type: ignore[arg-type]
    assert info3.value.parameter == "order" and "stable_first" in info3.value.allowed


def test_list_values_become_paragraphs_and_braces_in_values_are_kept() -> None:
    r = render_prompt(_spec(), {"policy": ["A {x}.", "B."], "question": "q"}, model=MODEL)
    assert "Policy:\nA {x}.\n\nB." in r.messages[1].content


# -- few-shot selection -------------------------------------------------------------------------
def test_examples_are_chosen_by_relevance_most_relevant_last() -> None:
    sel = select_examples(POOL, "Can I return a sale item I bought?", model=MODEL, max_examples=2)
    assert sel.selected[-1] == POOL[3] and POOL[0] in sel.selected
    assert sel.dropped == 2 and sel.relevance == "lexical"


def test_pool_larger_than_budget_keeps_what_fits_and_reports_dropped() -> None:
    counter = TokenCounter()
    one = counter.count("Input: Do you ship to Canada?\nOutput: Yes, in 5-8 days.", MODEL).tokens
    sel = select_examples(POOL, "Do you ship to Canada?", model=MODEL, budget_tokens=one)
    assert sel.selected == (POOL[1],) and sel.dropped == 3 and sel.tokens == one
    tiny = select_examples(POOL, "anything", model=MODEL, budget_tokens=1)
    assert tiny.selected == () and tiny.dropped == len(POOL) and tiny.tokens == 0
    for budget in (0, -5, 2.5, True):
        with pytest.raises(InvalidParameterError) as info:
            select_examples(POOL, "q", model=MODEL, budget_tokens=budget)  # type: ignore[arg-type]
        assert info.value.parameter == "budget_tokens" and info.value.received == budget


def test_budget_is_a_hard_cap_on_the_rendered_examples() -> None:
    counter = TokenCounter()
    for budget in range(5, 80, 7):
        sel = select_examples(POOL, "return policy shipping", model=MODEL, budget_tokens=budget)
        assert sel.tokens <= budget
        if sel.selected:
            from lean_core.templates import format_examples

            assert counter.count(format_examples(sel.selected), MODEL).tokens == sel.tokens


def test_pool_examples_travel_with_the_variable_part() -> None:
    spec = _spec(example_pool=POOL, example_budget_tokens=40)
    r = render_prompt(spec, {"policy": "p", "question": "Can I return a sale item?"}, model=MODEL)
    assert "Examples:" not in r.stable_prefix and "Examples:\nInput:" in r.messages[1].content
    assert r.examples is not None and r.examples.dropped >= 1 and r.examples.budget_tokens == 40
    fixed = render_prompt(_spec(examples=POOL[:1]), {"policy": "p", "question": "q"}, model=MODEL)
    assert "Examples:\nInput: Can I return shoes" in fixed.stable_prefix and fixed.examples is None


# -- savings ------------------------------------------------------------------------------------
BASELINE = ("Policy: {policy}\n\nHello! Please act as a very helpful support agent for Acme. It is very important "
            "that you answer the question below only using the policy above. Please make sure to quote the "
            "rule. Question: {question}. Thank you so much!")


def test_savings_count_both_sides_as_chat_messages() -> None:
    spec = _spec()
    values = {"policy": "Returns: 30 days.", "question": "Can I return shoes?"}
    rendered, savings = render_with_savings(spec, values, model=MODEL, baseline=BASELINE)
    assert savings is not None
    counter = TokenCounter()
    before = counter.count_messages([("user", format_text_template(BASELINE, values))], MODEL).tokens
    assert savings.input_tokens_before == before and savings.input_tokens_after == rendered.total_tokens
    event = savings.ledger_event(tenant="t")
    assert (event.layer, event.tenant, event.input_tokens_before) == ("template", "t", savings.input_tokens_before)
    assert template_savings(rendered, baseline=BASELINE, variables=values) == savings
    assert render_with_savings(spec, values, model=MODEL)[1] is None


def test_baseline_must_use_only_the_spec_variables() -> None:
    check_baseline(BASELINE, _spec())
    with pytest.raises(InvalidParameterError) as info:
        check_baseline("Hi {name}, {question}", _spec())
    assert info.value.parameter == "baseline" and "name" in str(info.value.received)
    with pytest.raises(InvalidParameterError):
        check_baseline("  ", _spec())


# -- linter -------------------------------------------------------------------------------------
VERBOSE = """{ticket}

Hello! Please read the ticket above very carefully. It is very important that you answer with one category name only.
================
In order to decide, look at the **main** problem!!! Remember that you must only output the category name.
Thank you so much in advance!"""


def test_lint_finds_each_kind_with_its_token_cost() -> None:
    report = lint_prompt(VERBOSE, model=MODEL)
    kinds = {f.kind for f in report.findings}
    assert kinds == {"filler", "verbose_phrase", "duplicate_instruction", "variable_before_stable",
                     "decorative_markup"}
    counter = TokenCounter()
    for f in report.findings:
        assert VERBOSE[f.start:f.end] == f.text and f.tokens > 0
        if f.kind == "filler":
            assert f.tokens == counter.count(f.text, MODEL).tokens and f.suggestion == ""
    (dup,) = [f for f in report.findings if f.kind == "duplicate_instruction"]
    assert dup.text == "Remember that you must only output the category name."
    (verbose,) = [f for f in report.findings if f.kind == "verbose_phrase"]
    assert verbose.suggestion == "to"
    assert report.uncacheable_tokens > 30 and report.total_tokens == counter.count(VERBOSE, MODEL).tokens
    # overlapping findings count once: the removable total is below the plain sum
    edit_sum = sum(f.tokens for f in report.findings if f.kind != "variable_before_stable")
    assert 0 < report.removable_tokens < edit_sum
    assert report.by_kind()["variable_before_stable"] == report.uncacheable_tokens


def test_lint_is_quiet_on_a_lean_rendering() -> None:
    spec = _spec()
    text = render_prompt(spec, {"policy": "{policy}", "question": "{question}"}, model=MODEL).text
    assert lint_prompt(text, model=MODEL).findings == ()


def test_lint_options_are_validated() -> None:
    with pytest.raises(InvalidParameterError) as info:
        lint_prompt("x", similarity=0)
    assert info.value.parameter == "similarity"
    with pytest.raises(InvalidParameterError):
        lint_prompt(None)  # type: ignore[arg-type]


def test_lint_does_not_flag_content_words_that_look_like_filler() -> None:
    text = "Route smalltalk (greetings, thanks, no request) to the bot. Thanks in advance!"
    (finding,) = lint_prompt(text, model=MODEL).findings
    assert finding.kind == "filler" and finding.text == "Thanks in advance!"
