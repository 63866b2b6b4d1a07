"""lean_chain.LeanTemplate in LCEL (fake chat model) and lean_index.LeanTemplate, ledger events included."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.prompt_values import ChatPromptValue
from llama_index.core.base.llms.types import MessageRole
from llama_index.core.llms import MockLLM

from lean_chain import LeanTemplate as ChainTemplate
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.templates import (
    MissingVariableError,
    PromptSpec,
    format_text_template,
    render_prompt,
)
from lean_core.tokens import TokenCounter
from lean_index import LeanTemplate as IndexTemplate

MODEL = "gpt-4"
SECTIONS = dict(role="You are Acme's support agent.", task="Answer from the policy.",
                constraints=["If the policy does not cover it, say so."], output_format="One sentence.",
                context="Policy:\n{policy}", question="Question: {question}")
BASELINE = ("Policy: {policy}\n\nHello! Please act as a very helpful support agent for Acme. It is very important "
            "that you answer the question only using the policy above, in one sentence. If the policy does not "
            "cover it, please say so. Question: {question}. Thank you so much!")
VALUES = {"policy": "Returns within 30 days.", "question": "Can I return shoes?"}


@pytest.fixture
def ledger(tmp_path: Path) -> CostLedger:
    return CostLedger(tmp_path / "ledger.db")


def _expected_tokens(values: dict[str, str]) -> tuple[int, int]:
    counter = TokenCounter()
    before = counter.count_messages([("user", format_text_template(BASELINE, values))], MODEL).tokens
    after = render_prompt(PromptSpec(**SECTIONS), values, model=MODEL).total_tokens  # type: ignore[arg-type]
    return before, after


# -- LangChain ----------------------------------------------------------------------------------
def test_langchain_template_in_lcel_sync_batch_and_async(ledger: CostLedger) -> None:
    prompt = ChainTemplate(**SECTIONS, model=MODEL, ledger=ledger, baseline=BASELINE)
    assert prompt.input_variables == ["policy", "question"]
    llm = FakeListChatModel(responses=["a", "b", "c", "d"])
    chain = prompt | llm
    assert chain.invoke(VALUES, config={"metadata": {"tenant": "acme"}}).content == "a"
    assert [m.content for m in chain.batch([VALUES, VALUES])] == ["b", "c"]
    events = ledger.savings()
    before, after = _expected_tokens(VALUES)
    assert len(events) == 3 and {e.layer for e in events} == {"template"}
    assert all(e.input_tokens_before == before and e.input_tokens_after == after for e in events)
    assert before > after and sorted(str(e.tenant) for e in events) == ["None", "None", "acme"]


async def test_langchain_template_async_records_with_arecord(ledger: CostLedger) -> None:
    prompt = ChainTemplate(**SECTIONS, model=MODEL, ledger=ledger, baseline=BASELINE)
    chain = prompt | FakeListChatModel(responses=["x"])
    assert (await chain.ainvoke(VALUES, config={"metadata": {"tenant": "t2"}})).content == "x"
    value = await prompt.ainvoke(VALUES)
    assert isinstance(value, ChatPromptValue)
    assert [e.tenant for e in ledger.savings()] == ["t2", None]


def test_langchain_template_produces_stable_first_chat_prompt_value() -> None:
    prompt = ChainTemplate(**SECTIONS, model=MODEL)
    value = prompt.invoke(VALUES)
    assert isinstance(value, ChatPromptValue)
    system, human = value.messages
    assert isinstance(system, SystemMessage) and isinstance(human, HumanMessage)
    other = prompt.invoke({"policy": "Shipping is free.", "question": "Is shipping free?"})
    assert other.to_messages()[0] == system  # byte-identical system message
    assert str(human.content).endswith("Question: Can I return shoes?")
    assert prompt.format(**VALUES).startswith("System: You are Acme's support agent.")
    assert prompt.render(**VALUES).stable_prefix == system.content


def test_langchain_template_from_spec_partial_and_documents() -> None:
    prompt = ChainTemplate.from_spec(PromptSpec(**SECTIONS), model=MODEL)  # type: ignore[arg-type]
    partial = prompt.partial(policy="Fixed policy.")
    assert partial.input_variables == ["question"]
    assert "Fixed policy." in str(partial.invoke({"question": "q"}).to_messages()[1].content)
    docs = [Document(page_content="Returns within 30 days."), Document(page_content="Sale items: credit only.")]
    human = prompt.invoke({"policy": docs, "question": "q"}).to_messages()[1]
    assert "Returns within 30 days.\n\nSale items: credit only." in str(human.content)
    # LCEL dicts often carry more keys: ignored by default, refused on request
    assert prompt.invoke({**VALUES, "history": []}).to_messages()
    strict = ChainTemplate(**SECTIONS, model=MODEL, allow_extra_variables=False)
    with pytest.raises(InvalidParameterError, match="history"):
        strict.invoke({**VALUES, "history": []})


def test_langchain_template_bad_input() -> None:
    prompt = ChainTemplate(**SECTIONS, model=MODEL)
    with pytest.raises(MissingVariableError) as info:
        prompt.invoke({"policy": "p"})
    assert info.value.parameter == "variables" and info.value.missing == ("question",)
    assert info.value.received == ["policy"]
    with pytest.raises(ValueError, match=r"invalid constraints: expected each section, constraint and example once"):
        ChainTemplate(**{**SECTIONS, "constraints": ["Be brief.", "be brief."]})
    with pytest.raises(ValueError, match=r"invalid task: .*received '\{customer\}'"):
        ChainTemplate(**{**SECTIONS, "task": "Help {customer}."})
    with pytest.raises(ValueError, match="invalid baseline: expected a template over the spec's variables"):
        ChainTemplate(**SECTIONS, baseline="Hi {name}: {question}")
    with pytest.raises(ValueError, match="invalid spec: expected a PromptSpec or section fields, not both"):
        ChainTemplate(spec=PromptSpec(**SECTIONS), task="Other.")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="order"):
        ChainTemplate(**SECTIONS, order="random")


def test_langchain_template_without_baseline_records_nothing(ledger: CostLedger) -> None:
    ChainTemplate(**SECTIONS, model=MODEL, ledger=ledger).invoke(VALUES)
    assert ledger.savings() == []


# -- LlamaIndex ---------------------------------------------------------------------------------
IDX = dict(SECTIONS, context="Context:\n{context_str}", question="Q: {query_str}")
IDX_BASELINE = "Context: {context_str}\nPlease, answer the question using only the context. Q: {query_str} Thanks!"


def test_llamaindex_template_formats_messages_and_text(ledger: CostLedger) -> None:
    qa = IndexTemplate(**IDX, model=MODEL, ledger=ledger, baseline=IDX_BASELINE, tenant="acme")
    assert qa.template_vars == ["context_str", "query_str"]
    messages = qa.format_messages(context_str="C", query_str="q?")
    assert [m.role for m in messages] == [MessageRole.SYSTEM, MessageRole.USER]
    assert messages[1].content == "Context:\nC\n\nQ: q?"
    text = qa.format(context_str="C", query_str="q?")
    assert text.startswith("You are Acme's support agent.") and text.endswith("Q: q?")
    assert "{context_str}" in qa.get_template()
    events = ledger.savings()
    assert len(events) == 2 and all(e.layer == "template" and e.tenant == "acme" for e in events)
    counter = TokenCounter()
    before = counter.count_messages(
        [("user", format_text_template(IDX_BASELINE, {"context_str": "C", "query_str": "q?"}))], MODEL).tokens
    assert events[0].input_tokens_before == before
    assert events[0].input_tokens_after == qa.render(context_str="C", query_str="q?").total_tokens


def test_llamaindex_template_partial_format_and_mock_llm(ledger: CostLedger) -> None:
    qa = IndexTemplate(**IDX, model=MODEL, ledger=ledger, baseline=IDX_BASELINE)
    partial = qa.partial_format(context_str="Fixed.")
    assert qa.kwargs == {} and partial.kwargs == {"context_str": "Fixed."}
    assert partial.ledger is ledger  # shared, not copied
    assert "Fixed." in partial.format(query_str="q")
    assert MockLLM(max_tokens=3).predict(partial, query_str="q") == "text text text"
    assert len(ledger.savings()) == 2


def test_llamaindex_prompt_helper_sizing_is_not_recorded(ledger: CostLedger) -> None:
    from llama_index.core.prompts.prompt_utils import (
        get_empty_prompt_messages,
        get_empty_prompt_txt,
    )

    qa = IndexTemplate(**IDX, model=MODEL, ledger=ledger, baseline=IDX_BASELINE)
    assert "Answer from the policy." in get_empty_prompt_txt(qa)
    assert get_empty_prompt_messages(qa.partial_format(context_str="C"))
    assert ledger.savings() == []
    qa.format(context_str="", query_str="a real question")
    assert len(ledger.savings()) == 1


def test_llamaindex_template_bad_input() -> None:
    qa = IndexTemplate(**IDX, model=MODEL)
    with pytest.raises(MissingVariableError) as info:
        qa.format(context_str="C")
    assert info.value.missing == ("query_str",)
    with pytest.raises(ValueError, match="invalid examples"):
        IndexTemplate(**IDX, examples=[{"input": "a", "output": "b"}, {"input": "A", "output": "B"}])
    with pytest.raises(ValueError, match="invalid baseline"):
        IndexTemplate(**IDX, baseline="{unknown}")
