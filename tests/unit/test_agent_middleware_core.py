"""The framework-free parts of the agent middleware: the tool-aware step key, stable-prefix history
compression and the prompt-cache saving of a call."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lean_core.agent_step import AgentStepUsage, prompt_cache_saved_usd
from lean_core.cache.agent_key import agent_step_key
from lean_core.cache.conversation_key import ConversationTurn
from lean_core.compression import CompressionOptions, LeanCompressor
from lean_core.compression.history import (
    HistoryMessage,
    HistoryPolicy,
    compress_history,
    plan_history,
)
from lean_core.compression.select import RelevanceScorer
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import CallRecord
from lean_core.usage import TokenUsage

WEATHER = {"type": "function", "function": {"name": "weather", "description": "Weather in a city.",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "Time in a city.",
                                          "parameters": {"type": "object",
                                                         "properties": {"city": {"type": "string"}}}}}
FIRST = [ConversationTurn("system", "Be brief."), ConversationTurn("user", "Weather in Paris?")]
WITH_TOOLS = [*FIRST, ConversationTurn("assistant", "", {"tool_calls": [{"name": "weather", "args": {"city": "Paris"}}]}),
              ConversationTurn("tool", "Sunny, 21 C", {"status": "success"})]


# -- agent_step_key ---------------------------------------------------------------------------------
def test_step_key_separates_tool_sets_tool_choice_and_models() -> None:
    base = agent_step_key(FIRST, model="m", tools=[WEATHER])
    assert base.semantic and base.prompt == "Weather in Paris?"
    others = [agent_step_key(FIRST, model="m", tools=[WEATHER, CLOCK]),
              agent_step_key(FIRST, model="m", tools=[CLOCK]),
              agent_step_key(FIRST, model="m", tools=[WEATHER], tool_choice="weather"),
              agent_step_key(FIRST, model="m2", tools=[WEATHER]),
              agent_step_key(FIRST, model="m", tools=[])]
    assert len({base.llm, *(k.llm for k in others)}) == 6
    assert agent_step_key(FIRST, model="m", tools=[WEATHER]) == base  # stable
    assert base.namespace("acme") != base.namespace("globex")


def test_step_key_is_exact_only_once_tools_are_in_the_conversation() -> None:
    assert not agent_step_key(WITH_TOOLS, model="m", tools=[WEATHER]).semantic
    # a later question after a tool round: still exact only (the history holds tool activity)
    later = [*WITH_TOOLS, ConversationTurn("assistant", "It is sunny."), ConversationTurn("user", "And Rome?")]
    assert not agent_step_key(later, model="m", tools=[WEATHER]).semantic
    plain = [*FIRST, ConversationTurn("assistant", "Sunny."), ConversationTurn("user", "And Rome?")]
    assert agent_step_key(plain, model="m", tools=[WEATHER]).semantic


def test_step_key_never_shares_a_plain_chat_namespace() -> None:
    from lean_core.cache.conversation_key import conversation_key

    assert agent_step_key(FIRST, model="m").llm != conversation_key(FIRST).scoped("m")


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"model": ""}, "model"),
    ({"model": "m", "tools": "weather"}, "tools"),
    ({"model": "m", "tools": [{"f": {1, 2}}]}, "tools"),
    ({"model": "m", "tool_choice": float("nan")}, "tools"),
])
def test_step_key_refuses_bad_input(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        agent_step_key(FIRST, **kwargs)  # type: ignore[arg-type]
    assert err.value.parameter == parameter


# -- history compression --------------------------------------------------------------------------------
FILLER = " ".join(f"Line {i} describes the lobby carpet colour in great detail." for i in range(30))
RESULT = f"{FILLER} Order A17 ships on 2026-11-30 from https://track.example.com/QX-4471 to Lyon. {FILLER}"


def _options() -> CompressionOptions:
    return CompressionOptions(ratio=0.2, compressor=LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0)))


def test_tool_result_is_compressed_for_the_question_with_spans_intact() -> None:
    history = [HistoryMessage("system", "You help with orders."), HistoryMessage("user", "When does order A17 ship?"),
               HistoryMessage("assistant", ""), HistoryMessage("tool", RESULT)]
    done = compress_history(history, options=_options(), policy=HistoryPolicy(min_tokens=50))
    assert [e.index for e in done.edits] == [3] and done.question == "When does order A17 ship?"
    edit = done.edits[0]
    assert edit.changed and len(edit.text) < len(RESULT) / 2
    assert "2026-11-30" in edit.text and "https://track.example.com/QX-4471" in edit.text
    assert done.results == [edit.result]


def test_each_message_is_compressed_once_and_small_or_protected_roles_never() -> None:
    history = [HistoryMessage("system", RESULT), HistoryMessage("user", RESULT),
               HistoryMessage("tool", RESULT, compressed=True), HistoryMessage("tool", "Sunny."),
               HistoryMessage("tool", None), HistoryMessage("user", "When does order A17 ship?")]
    plan = plan_history(history, HistoryPolicy(min_tokens=50))
    assert plan.indices == ()  # system, an old user turn (no age policy), done, small, non-text


def test_old_turns_are_compressed_once_they_fall_behind() -> None:
    history = [HistoryMessage("user", RESULT), HistoryMessage("assistant", RESULT),
               HistoryMessage("user", "When does order A17 ship?")]
    assert plan_history(history, HistoryPolicy(min_tokens=50)).indices == ()
    assert plan_history(history, HistoryPolicy(min_tokens=50, older_than_turns=1)).indices == (0, 1)
    assert plan_history(history, HistoryPolicy(min_tokens=50, older_than_turns=2)).indices == ()


def test_nothing_is_due_without_a_question() -> None:
    assert plan_history([HistoryMessage("tool", RESULT)], HistoryPolicy(min_tokens=1)).indices == ()


def test_compression_is_deterministic_so_a_replayed_history_compresses_the_same() -> None:
    history = [HistoryMessage("user", "When does order A17 ship?"), HistoryMessage("tool", RESULT)]
    policy = HistoryPolicy(min_tokens=50)
    assert compress_history(history, options=_options(), policy=policy).edits[0].text == \
        compress_history(history, options=_options(), policy=policy).edits[0].text


@pytest.mark.parametrize(("kwargs", "parameter"), [
    ({"tool_results": 1}, "tool_results"), ({"older_than_turns": 0}, "older_than_turns"),
    ({"older_than_turns": True}, "older_than_turns"), ({"min_tokens": -1}, "min_tokens"),
])
def test_history_policy_validation(kwargs: dict[str, object], parameter: str) -> None:
    with pytest.raises(InvalidParameterError) as err:
        HistoryPolicy(**kwargs)  # type: ignore[arg-type]
    assert err.value.parameter == parameter


# -- prompt-cache saving --------------------------------------------------------------------------------
def _call(model: str, cached: int) -> CallRecord:
    return CallRecord(model=model, provider="openai",
                      usage=TokenUsage(input_tokens=10_000, cached_input_tokens=cached, output_tokens=100))


def test_prompt_cache_saving_is_the_price_difference() -> None:
    saved = prompt_cache_saved_usd(_call("gpt-4o", 8_000))
    assert saved is not None and saved > 0
    # gpt-4o: $2.50 / M input, $1.25 / M cached input -> 8k cached tokens save $0.01
    assert saved == Decimal("0.01")
    assert prompt_cache_saved_usd(_call("gpt-4o", 0)) == 0
    assert prompt_cache_saved_usd(_call("no-such-model-xyz", 8_000)) is None
    step = AgentStepUsage(step=2, call=_call("gpt-4o", 8_000), cache_hit=False, prompt_cache_saved_usd=saved)
    assert step.cached_input_tokens == 8_000 and Decimal(step.as_dict()["prompt_cache_saved_usd"]) == Decimal("0.01")
