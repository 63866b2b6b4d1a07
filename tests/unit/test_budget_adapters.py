"""LeanBudget (LangChain) and LeanBudgetLLM (LlamaIndex) over models that honour budgets like providers."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from llama_index.core.base.llms.types import ChatMessage, MessageRole

from lean_chain import LeanBudget
from lean_core.budget import OutputTruncatedError
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_index import LeanBudgetLLM
from tests.support.budget_fakes import ChatOllama, UnknownBudgetChat, WordBudgetChat
from tests.support.budget_fakes_llamaindex import WordBudgetLLM

FIVE = "one two three four five"


def _prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages([("system", "You answer."), ("human", "{question}")])


# -- LangChain -----------------------------------------------------------------------------------
def test_lcel_binds_the_budget_and_reports_a_cut() -> None:
    llm = WordBudgetChat(answer=FIVE)
    chain = _prompt() | LeanBudget(llm=llm, max_tokens=3, on_truncation="report") | StrOutputParser()
    assert chain.invoke({"question": "who wrote emma"}) == "one two three "
    assert llm.calls[0]["max_tokens"] == 3 and llm.calls[0]["stop"] == ["\n\n"]


def test_a_cut_answer_is_continued_once_with_usage_summed() -> None:
    llm = WordBudgetChat(answer=FIVE)
    message = LeanBudget(llm=llm, max_tokens=3).invoke("who wrote emma")
    assert message.content == FIVE
    outcome = message.response_metadata["lean_budget"]
    assert outcome["continued"] and not outcome["truncated"] and outcome["output_tokens"] == 5
    assert message.usage_metadata["output_tokens"] == 5
    second = llm.calls[1]["messages"]
    assert second[-2].type == "ai" and second[-1].content.startswith("Continue exactly")


def test_raise_policy_raises_with_the_partial_answer() -> None:
    with pytest.raises(OutputTruncatedError) as info:
        LeanBudget(llm=WordBudgetChat(answer=FIVE), max_tokens=2, on_truncation="raise").invoke("who wrote emma")
    assert info.value.partial.content == "one two "


def test_brevity_goes_at_the_end_of_the_last_human_message() -> None:
    llm = WordBudgetChat()
    LeanBudget(llm=llm, brevity=True).invoke([("system", "Be kind."), ("human", "who wrote emma")])
    messages = llm.calls[0]["messages"]
    assert messages[0].content == "Be kind."  # the stable prefix is untouched
    assert messages[-1].content == "who wrote emma\n\nAnswer in one short sentence."


def test_the_parameter_follows_the_model_class() -> None:
    llm = ChatOllama(answer=FIVE)
    LeanBudget(llm=llm, max_tokens=2, on_truncation="report").invoke("who wrote emma")
    assert llm.calls[0]["num_predict"] == 2 and "max_tokens" not in llm.calls[0]
    with pytest.raises(ValueError, match="UnknownBudgetChat"):
        LeanBudget(llm=UnknownBudgetChat(), strict=True)


def test_stream_is_cut_at_the_budget_when_the_class_ignores_it() -> None:
    llm = UnknownBudgetChat(answer="alpha beta gamma delta epsilon zeta eta theta")
    chunks = list(LeanBudget(llm=llm, max_tokens=3, on_truncation="report").stream("who wrote emma"))
    text = "".join(c.content for c in chunks)
    assert text.split() == ["alpha", "beta", "gamma"]
    last = chunks[-1]
    assert last.response_metadata["finish_reason"] == "length"
    assert last.usage_metadata["output_tokens"] >= 3


def test_stream_continues_a_cut_answer() -> None:
    budget = LeanBudget(llm=WordBudgetChat(answer=FIVE), max_tokens=3, parameter="max_tokens")
    chunks = list(budget.stream("who wrote emma"))
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.content.split() == FIVE.split()
    assert total.response_metadata["lean_budget"]["continued"] is True
    assert total.usage_metadata["output_tokens"] == 5


async def test_async_invoke_and_stream_match_sync() -> None:
    budget = LeanBudget(llm=WordBudgetChat(answer=FIVE), max_tokens=3, parameter="max_tokens")
    message = await budget.ainvoke("who wrote emma")
    assert message.content == FIVE
    text = "".join([c.content async for c in budget.astream("who wrote emma")])
    assert text.split() == FIVE.split()


def test_ledger_gets_output_savings_and_history(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")
    LeanBudget(llm=WordBudgetChat(), ledger=ledger).invoke("who wrote emma", config={"metadata": {"tenant": "acme"}})
    (event,) = ledger.savings()
    (row,) = ledger.output_lengths()
    assert event.layer == "output" and event.tenant == "acme" and event.output_tokens_after == 6
    assert row.output_tokens == 6 and row.model == "word-budget"


def test_bad_options_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        LeanBudget(llm=WordBudgetChat(), max_tokens=0)
    with pytest.raises(InvalidParameterError, match="input"):
        LeanBudget(llm=WordBudgetChat()).invoke(42)  # type: ignore[arg-type]


# -- LlamaIndex ------------------------------------------------------------------------------------
def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage(role=MessageRole.USER, content=text)]


def test_llamaindex_sets_the_field_on_a_copy_and_continues() -> None:
    inner = WordBudgetLLM(answer=FIVE)
    llm = LeanBudgetLLM(inner, max_tokens=3)
    response = llm.chat(_user("who wrote emma"))
    assert response.message.content == FIVE
    assert [c["max_tokens"] for c in inner.calls] == [3, 3] and inner.max_tokens is None
    assert response.additional_kwargs["lean_budget"]["continued"] is True
    assert llm.complete("who wrote emma").text == FIVE


def test_llamaindex_report_policy_and_brevity() -> None:
    inner = WordBudgetLLM(answer=FIVE)
    llm = LeanBudgetLLM(inner, max_tokens=2, on_truncation="report", brevity=True)
    response = llm.chat(_user("who wrote emma"))
    assert response.message.content == "one two "
    assert response.additional_kwargs["lean_budget"]["truncated"] is True
    assert inner.calls[0]["messages"][-1].content.endswith("Answer in one short sentence.")


def test_llamaindex_stream_and_async(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")
    llm = LeanBudgetLLM(WordBudgetLLM(answer=FIVE), max_tokens=3, ledger=ledger, parameter="max_tokens")
    responses = list(llm.stream_chat(_user("who wrote emma")))
    assert responses[-1].message.content.split() == FIVE.split()
    assert responses[-1].additional_kwargs["lean_budget"]["output_tokens"] == 5
    assert len(ledger.savings()) == 1 and len(ledger.output_lengths()) == 1


async def test_llamaindex_async_matches_sync() -> None:
    llm = LeanBudgetLLM(WordBudgetLLM(answer=FIVE), max_tokens=3, parameter="max_tokens")
    assert (await llm.achat(_user("who wrote emma"))).message.content == FIVE
    gen = await llm.astream_chat(_user("who wrote emma"))
    responses = [r async for r in gen]
    assert responses[-1].message.content.split() == FIVE.split()


def test_llamaindex_bad_input() -> None:
    with pytest.raises(InvalidParameterError, match="llm"):
        LeanBudgetLLM("gpt-4o")  # type: ignore[arg-type]
    with pytest.raises(InvalidParameterError, match="WordBudgetLLM"):
        LeanBudgetLLM(WordBudgetLLM(), strict=True)


def test_a_cut_stream_is_still_recorded_by_the_cost_callback(tmp_path: Path) -> None:
    from lean_chain import LeanCostCallback

    ledger = CostLedger(tmp_path / "l.sqlite3")
    llm = UnknownBudgetChat(answer="alpha beta gamma delta epsilon zeta eta theta")
    budget = LeanBudget(llm=llm, max_tokens=3, on_truncation="report")
    text = "".join(c.content for c in budget.stream("who wrote emma", config={"callbacks": [LeanCostCallback(ledger)]}))
    assert text.split() == ["alpha", "beta", "gamma"]
    (call,) = ledger.calls()
    assert call.usage.output_tokens >= 3 and call.usage.input_tokens > 0


async def test_a_cut_async_stream_is_still_recorded(tmp_path: Path) -> None:
    from lean_chain import LeanCostCallback

    ledger = CostLedger(tmp_path / "l.sqlite3")
    budget = LeanBudget(llm=UnknownBudgetChat(answer="alpha beta gamma delta epsilon zeta"), max_tokens=3,
                        on_truncation="report")
    chunks = [c async for c in budget.astream("who wrote emma", config={"callbacks": [LeanCostCallback(ledger)]})]
    assert "".join(c.content for c in chunks).split() == ["alpha", "beta", "gamma"]
    assert len(ledger.calls()) == 1


def test_llamaindex_cut_stream_is_recorded_with_counted_usage(tmp_path: Path) -> None:
    ledger = CostLedger(tmp_path / "l.sqlite3")

    class Ignores(WordBudgetLLM):  # a class the mapping does not know, ignoring budgets
        def _respond(self, messages, kwargs):  # type: ignore[no-untyped-def]
            from tests.support.budget_fakes import _reply
            return _reply(self.answer, list(messages), None)

    llm = LeanBudgetLLM(Ignores(answer="alpha beta gamma delta epsilon zeta"), max_tokens=3, on_truncation="report",
                        ledger=ledger)
    responses = list(llm.stream_chat(_user("who wrote emma")))
    assert responses[-1].message.content.split() == ["alpha", "beta", "gamma"]
    assert responses[-1].additional_kwargs["lean_budget"]["truncated"] is True
    (call,) = ledger.calls()
    assert call.usage.output_tokens >= 3 and call.usage.source == "estimate"


# -- the real provider classes, against a loopback OpenAI-compatible server ------------------------
def test_chat_openai_sends_the_budget(stub) -> None:  # type: ignore[no-untyped-def]
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-4o-mini", base_url=stub.base_url, api_key="test-key", max_retries=0)
    message = LeanBudget(llm=llm).invoke("who wrote emma")
    body = stub.requests[-1]
    sent = body.get("max_completion_tokens", body.get("max_tokens"))
    assert sent == message.response_metadata["lean_budget"]["max_tokens"]
    assert body["stop"] == ["\n\n"]


def test_llamaindex_openai_sends_the_budget(stub) -> None:  # type: ignore[no-untyped-def]
    from llama_index.llms.openai import OpenAI

    llm = LeanBudgetLLM(OpenAI(model="gpt-4o-mini", api_base=stub.base_url, api_key="test-key", max_retries=0))
    response = llm.chat(_user("who wrote emma"))
    body = stub.requests[-1]
    sent = body.get("max_completion_tokens", body.get("max_tokens"))
    assert sent == response.additional_kwargs["lean_budget"]["max_tokens"]
