"""LeanCompress, LeanDocumentCompressor and LeanCompressPostprocessor: types round-trip, budgets hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder, PromptTemplate
from langchain_core.runnables import RunnableLambda
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from lean_chain import LeanCompress, LeanDocumentCompressor
from lean_core import CostLedger, count_tokens
from lean_core.compression import LeanCompressor
from lean_core.compression.select import RelevanceScorer
from lean_core.errors import InvalidParameterError
from lean_index import LeanCompressPostprocessor

PASSAGES = [
    "Paris is the capital of France. It is home to the Eiffel Tower. Croissants are sold in every bakery.",
    "Berlin is the capital of Germany. The Spree river flows through the city. Beer gardens are popular.",
    "Rome is the capital of Italy. The Colosseum is almost two thousand years old. Pasta is eaten daily.",
]
QUESTION = "What river flows through Berlin?"


def lexical() -> LeanCompressor:
    return LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0))


@pytest.fixture
def ledger(tmp_path: Path) -> CostLedger:
    return CostLedger(tmp_path / "ledger.sqlite3")


def _docs() -> list[Document]:
    return [Document(page_content=p, metadata={"source": f"doc{i}.txt", "page": i}, id=f"id-{i}")
            for i, p in enumerate(PASSAGES)]


def _history() -> list[BaseMessage]:
    return [
        SystemMessage("You answer in one short sentence. Never invent facts."),
        HumanMessage(" ".join(PASSAGES[:2]), id="h1"),
        AIMessage("Noted. Berlin sits on the Spree river, and Paris has the Eiffel Tower. Rome has pasta.",
                  id="a1"),
        ToolMessage(PASSAGES[2], tool_call_id="call-1"),
        HumanMessage(QUESTION, id="h2"),
    ]


# --- LeanCompress: every input kind round-trips its type -------------------------------------

def test_str_in_str_out() -> None:
    out = LeanCompress(compressor=lexical(), ratio=0.4).invoke(" ".join(PASSAGES))
    assert isinstance(out, str)
    assert 0 < count_tokens(out, "gpt-4o").tokens <= count_tokens(" ".join(PASSAGES), "gpt-4o").tokens * 0.4


def test_dict_with_str_context_keeps_other_keys() -> None:
    value = {"context": "\n\n".join(PASSAGES), "question": QUESTION, "lang": "en"}
    out = LeanCompress(compressor=lexical(), target_tokens=12).invoke(value)
    assert set(out) == {"context", "question", "lang"}
    assert out["question"] == QUESTION and out["lang"] == "en"
    assert isinstance(out["context"], str) and "Spree" in out["context"]
    assert count_tokens(out["context"], "gpt-4o").tokens <= 12


def test_dict_with_list_of_str_context_returns_kept_passages() -> None:
    out = LeanCompress(compressor=lexical(), target_tokens=12).invoke({"context": PASSAGES, "question": QUESTION})
    assert isinstance(out["context"], list) and all(isinstance(p, str) for p in out["context"])
    assert out["context"] and any("Spree" in p for p in out["context"])
    assert all(any(p in original for original in PASSAGES) for p in out["context"])


def test_dict_with_documents_returns_documents_with_their_metadata() -> None:
    out = LeanCompress(compressor=lexical(), target_tokens=12).invoke({"context": _docs(), "question": QUESTION})
    kept = out["context"]
    assert kept and all(isinstance(d, Document) for d in kept)
    by_id = {d.id: d for d in _docs()}
    for doc in kept:
        assert doc.metadata == by_id[doc.id].metadata
        assert doc.page_content in by_id[doc.id].page_content
    assert any("Spree" in d.page_content for d in kept)


def test_string_prompt_value_round_trips() -> None:
    value = PromptTemplate.from_template("{text}").invoke({"text": " ".join(PASSAGES)})
    out = LeanCompress(compressor=lexical(), ratio=0.3).invoke(value)
    assert isinstance(out, StringPromptValue)
    assert len(out.text) < len(value.to_string())


def test_chat_history_keeps_system_and_last_human_verbatim_and_roles() -> None:
    history = _history()
    out = LeanCompress(compressor=lexical(), ratio=0.3).invoke(history)
    assert isinstance(out, list)
    assert [type(m) for m in out] == [type(m) for m in history]
    assert [m.id for m in out] == [m.id for m in history]
    assert out[0].content == history[0].content
    assert out[-1].content == history[-1].content == QUESTION
    assert isinstance(out[3], ToolMessage) and out[3].tool_call_id == "call-1"
    before = sum(count_tokens(str(m.content), "gpt-4o").tokens for m in history[1:4])
    after = sum(count_tokens(str(m.content), "gpt-4o").tokens for m in out[1:4])
    assert after <= before * 0.3
    assert "Spree" in " ".join(str(m.content) for m in out[1:4])


def test_chat_prompt_value_round_trips() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "Be brief."), MessagesPlaceholder("history"),
                                               ("human", "{question}")])
    value = prompt.invoke({"history": _history()[1:4], "question": QUESTION})
    out = LeanCompress(compressor=lexical(), ratio=0.5).invoke(value)
    assert isinstance(out, ChatPromptValue)
    assert out.messages[0].content == "Be brief." and out.messages[-1].content == QUESTION
    assert len(out.to_string()) < len(value.to_string())


def test_messages_without_compressible_history_are_unchanged(ledger: CostLedger) -> None:
    history = [SystemMessage("sys"), HumanMessage("hi")]
    assert LeanCompress(compressor=lexical(), ledger=ledger).invoke(history) == history
    assert ledger.savings() == []


# --- LCEL, callbacks, async -------------------------------------------------------------------

class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.names: list[str] = []

    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID,
                       **kwargs: Any) -> None:
        self.names.append(kwargs.get("name") or "")


def _chain(seen: list[list[BaseMessage]]) -> Any:
    prompt = ChatPromptTemplate.from_messages([("system", "Answer from the context."),
                                               ("human", "Context: {context}"),
                                               ("ai", "Understood."),
                                               ("human", "{question}")])

    def spy(value: ChatPromptValue) -> ChatPromptValue:
        seen.append(value.messages)
        return value

    model = FakeListChatModel(responses=["The Spree."] * 4)
    return prompt | LeanCompress(compressor=lexical(), ratio=0.3) | RunnableLambda(spy) | model


async def test_lcel_invoke_batch_ainvoke() -> None:
    seen: list[list[BaseMessage]] = []
    chain = _chain(seen)
    inputs = {"context": " ".join(PASSAGES), "question": QUESTION}
    runs = _Runs()
    assert chain.invoke(inputs, config={"callbacks": [runs]}).content == "The Spree."
    assert "LeanCompress" in runs.names
    assert [m.content for m in chain.batch([inputs, inputs])] == ["The Spree."] * 2
    assert (await chain.ainvoke(inputs)).content == "The Spree."
    assert len(seen) == 4
    for messages in seen:
        assert [m.type for m in messages] == ["system", "human", "ai", "human"]
        assert messages[-1].content == QUESTION
        assert len(str(messages[1].content)) < len("Context: " + " ".join(PASSAGES))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ledger_gets_one_compression_event_per_call(mode: str, ledger: CostLedger) -> None:
    runnable = LeanCompress(compressor=lexical(), ratio=0.4, ledger=ledger)
    if mode == "sync":
        runnable.invoke(_history())
    else:
        await runnable.ainvoke(_history())
    (event,) = ledger.savings()
    assert event.layer == "compression" and event.model == "gpt-4o"
    assert event.input_tokens_after < event.input_tokens_before


def test_options_are_validated() -> None:
    # pydantic wraps the InvalidParameterError in a ValidationError (both are ValueErrors)
    with pytest.raises(ValueError, match="invalid ratio: expected None when target_tokens"):
        LeanCompress(ratio=0.5, target_tokens=10)
    with pytest.raises(ValueError, match="invalid ratio"):
        LeanCompress(ratio=None)
    with pytest.raises(ValueError, match="ratio"):
        LeanCompress(ratio=1.5)
    assert LeanCompress(target_tokens=10).budget.target_tokens == 10
    with pytest.raises(InvalidParameterError, match="input"):
        LeanCompress(compressor=lexical()).invoke(42)
    with pytest.raises(InvalidParameterError, match="context"):
        LeanCompress(compressor=lexical()).invoke({"question": "q"})


def test_default_compressor_is_built_without_io() -> None:
    runnable = LeanCompress()
    assert runnable.compressor is None and runnable._default_compressor is None


# --- LeanDocumentCompressor ------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_document_compressor_keeps_each_documents_metadata(mode: str, ledger: CostLedger) -> None:
    compressor = LeanDocumentCompressor(compressor=lexical(), target_tokens=20, ledger=ledger)
    docs = _docs()
    if mode == "sync":
        out = compressor.compress_documents(docs, QUESTION)
    else:
        out = await compressor.acompress_documents(docs, QUESTION)
    assert out and len(out) < len(docs) + 1
    by_id = {d.id: d for d in docs}
    for doc in out:
        original = by_id[doc.id]
        info = doc.metadata.pop("lean_compression")
        assert doc.metadata == original.metadata  # and the original was not mutated
        assert "lean_compression" not in original.metadata
        assert doc.page_content in original.page_content
        assert info == {"original_tokens": count_tokens(original.page_content, "gpt-4o").tokens,
                        "kept_tokens": count_tokens(doc.page_content, "gpt-4o").tokens}
    assert sum(count_tokens(d.page_content, "gpt-4o").tokens for d in out) <= 20
    assert any("Spree" in d.page_content for d in out)
    assert [e.layer for e in ledger.savings()] == ["compression"]


def test_document_compressor_drops_documents_with_nothing_kept() -> None:
    out = LeanDocumentCompressor(compressor=lexical(), target_tokens=10).compress_documents(_docs(), QUESTION)
    assert [d.id for d in out] == ["id-1"]
    assert LeanDocumentCompressor(compressor=lexical()).compress_documents([], QUESTION) == []



@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_document_compressor_in_a_retriever_records_the_runs_tenant(mode: str, ledger: CostLedger) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            return _docs()

    retriever = ContextualCompressionRetriever(
        base_compressor=LeanDocumentCompressor(compressor=lexical(), target_tokens=20, ledger=ledger),
        base_retriever=Fixed())
    config = {"metadata": {"tenant": "acme"}}
    out = retriever.invoke(QUESTION, config=config) if mode == "sync" else await retriever.ainvoke(QUESTION, config=config)
    assert out
    assert [(e.layer, e.tenant) for e in ledger.savings()] == [("compression", "acme")]

# --- LeanCompressPostprocessor ---------------------------------------------------------------

def _nodes() -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(text=p, id_=f"n{i}", metadata={"file": f"f{i}.md"}), score=s)
            for i, (p, s) in enumerate(zip(PASSAGES, [0.2, 0.9, 0.5], strict=True))]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_postprocessor_keeps_metadata_score_and_total_budget(mode: str, ledger: CostLedger) -> None:
    post = LeanCompressPostprocessor(compressor=lexical(), target_tokens=30, ledger=ledger)
    nodes = _nodes()
    if mode == "sync":
        out = post.postprocess_nodes(nodes, QueryBundle(QUESTION))
    else:
        out = await post.apostprocess_nodes(nodes, query_str=QUESTION)
    assert out
    originals = {n.node.node_id: n for n in nodes}
    for item in out:
        original = originals[item.node.node_id]
        assert item.score == original.score
        assert item.node.metadata == original.node.metadata
        assert item.node.get_content() in original.node.get_content()
    scores = [n.score for n in out]
    assert scores == sorted(scores, reverse=True)
    assert sum(count_tokens(n.node.get_content(), "gpt-4o").tokens for n in out) <= 30
    assert out[0].node.node_id == "n1" and "Spree" in out[0].node.get_content()
    assert [n.node.get_content() for n in nodes] == PASSAGES  # inputs untouched
    assert [e.layer for e in ledger.savings()] == ["compression"]


def test_postprocessor_ratio_budget_and_removal() -> None:
    nodes = _nodes()
    total = count_tokens("\n\n".join(PASSAGES), "gpt-4o").tokens
    out = LeanCompressPostprocessor(compressor=lexical(), ratio=0.2).postprocess_nodes(nodes, query_str=QUESTION)
    assert 0 < len(out) < len(nodes)
    assert sum(count_tokens(n.node.get_content(), "gpt-4o").tokens for n in out) <= total * 0.2
    assert LeanCompressPostprocessor(compressor=lexical()).postprocess_nodes([], query_str=QUESTION) == []
    with pytest.raises(ValueError, match="invalid ratio: expected None when target_tokens"):
        LeanCompressPostprocessor(ratio=0.5, target_tokens=5)


# --- Document titles from metadata ------------------------------------------------------------

class TitleSpy(LeanCompressor):
    """The lexical compressor, recording the titles each call gets."""

    def __init__(self) -> None:
        super().__init__(scorer=RelevanceScorer(semantic_weight=0.0))
        self.titles: list[list[str | None] | None] = []

    def compress(self, context, *, budget, question=None, titles=None):  # type: ignore[no-untyped-def, override]
        self.titles.append(None if titles is None else list(titles))
        return super().compress(context, budget=budget, question=question, titles=titles)


def _titled_docs() -> list[Document]:
    titles = ["Paris", None, "  "]  # a missing and a blank title: the text's own heading, if any
    return [Document(page_content=p, metadata={"title": t} if t is not None else {}, id=f"id-{i}")
            for i, (p, t) in enumerate(zip(PASSAGES, titles, strict=True))]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_document_titles_reach_the_compressor_but_not_the_output(mode: str) -> None:
    spy = TitleSpy()
    compressor = LeanDocumentCompressor(compressor=spy, ratio=0.5)
    runnable = LeanCompress(compressor=spy, ratio=0.5)
    value = {"context": _titled_docs(), "question": QUESTION}
    if mode == "sync":
        docs = compressor.compress_documents(_titled_docs(), QUESTION)
        kept = runnable.invoke(value)["context"]
    else:
        docs = await compressor.acompress_documents(_titled_docs(), QUESTION)
        kept = (await runnable.ainvoke(value))["context"]
    assert spy.titles == [["Paris", None, None]] * 2
    assert all(d.page_content in PASSAGES[int(d.id.split("-")[1])] for d in [*docs, *kept])  # type: ignore[union-attr]


def test_title_key_picks_the_metadata_field_or_turns_titles_off() -> None:
    spy = TitleSpy()
    docs = [Document(page_content=p, metadata={"name": f"Doc {i}", "title": "ignored"})
            for i, p in enumerate(PASSAGES)]
    LeanDocumentCompressor(compressor=spy, ratio=0.5, title_key="name").compress_documents(docs, QUESTION)
    LeanDocumentCompressor(compressor=spy, ratio=0.5, title_key=None).compress_documents(docs, QUESTION)
    LeanCompress(compressor=spy, ratio=0.5).invoke({"context": _docs(), "question": QUESTION})  # no titles
    assert spy.titles == [["Doc 0", "Doc 1", "Doc 2"], None, None]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_postprocessor_passes_node_titles_in_score_order(mode: str) -> None:
    spy = TitleSpy()
    nodes = [NodeWithScore(node=TextNode(text=p, id_=f"n{i}", metadata={"title": f"City {i}"}), score=s)
             for i, (p, s) in enumerate(zip(PASSAGES, [0.2, 0.9, 0.5], strict=True))]
    post = LeanCompressPostprocessor(compressor=spy, ratio=0.5)
    if mode == "sync":
        post.postprocess_nodes(nodes, query_str=QUESTION)
    else:
        await post.apostprocess_nodes(nodes, query_str=QUESTION)
    assert spy.titles == [["City 1", "City 2", "City 0"]]
