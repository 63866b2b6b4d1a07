"""Structure-aware compression: the context is found inside the prompt (any message, the last
human turn included) and only it shrinks; instructions and the question stay byte for byte."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.prompt_values import ChatPromptValue, StringPromptValue
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from lean_chain import LeanCompress, LeanDocumentCompressor
from lean_chain.compress import CompressionReport
from lean_core import TokenCounter
from lean_core.compression import LeanCompressor, acompress_messages, compress_messages
from lean_core.compression.select import RelevanceScorer
from lean_core.compression.structure import NothingToCompress, find_context, splice
from lean_index import LeanCompressPostprocessor

PASSAGES = [
    "Paris is the capital of France. It is home to the Eiffel Tower, finished in 1889 for a world fair.",
    "Berlin is the capital of Germany. The Spree river flows through the city centre past the Reichstag.",
    "Rome is the capital of Italy. The Colosseum is almost two thousand years old and seats fifty thousand.",
    "Madrid is the capital of Spain. The Prado museum holds paintings by Velazquez and Goya.",
    "Vienna is the capital of Austria. Its coffee houses are listed as intangible cultural heritage.",
    "Lisbon is the capital of Portugal. Trams climb the steep hills of the Alfama district every day.",
]
QUESTION = "What river flows through Berlin?"

# Realistic RAG templates, written for these tests: {context} and {question} are the variables.
TEMPLATES = {
    "readme_chat_human": "Context:\n{context}\n\nQuestion: {question}",
    "langchain_stuff_qa": (
        "Use the following pieces of context to answer the question at the end. If you don't know the "
        "answer, just say that you don't know, don't try to make up an answer.\n\n{context}\n\n"
        "Question: {question}\nHelpful Answer:"
    ),
    "hub_rag_prompt": (
        "You are an assistant for question-answering tasks. Use the following pieces of retrieved "
        "context to answer the question. If you don't know the answer, just say that you don't know. "
        "Use three sentences maximum and keep the answer concise.\nQuestion: {question} \nContext: "
        "{context} \nAnswer:"
    ),
    "llamaindex_text_qa": (
        "Context information is below.\n---------------------\n{context}\n---------------------\nGiven "
        "the context information and not prior knowledge, answer the query.\nQuery: {question}\nAnswer: "
    ),
    "xml_anthropic": (
        "Here are some documents for you to reference for your task:\n\n<documents>\n{context}\n"
        "</documents>\n\nAnswer the user's question using only these documents. Quote the relevant "
        "parts first.\n\n{question}"
    ),
    "xml_context_tag": (
        "<context>\n{context}\n</context>\n\nAnswer the question based only on the context above. If "
        "the answer is not there, say so.\nQuestion: {question}"
    ),
    "markdown_headings": (
        "## Instructions\nAnswer using only the sources below and cite them by number.\n\n## Sources\n"
        "{context}\n\n## Question\n{question}"
    ),
    "caps_labels": (
        "You are a careful research assistant. Answer strictly from the documents.\n\nDOCUMENTS:\n"
        "{context}\n\nQUESTION: {question}\n\nANSWER:"
    ),
    "question_first": (
        "Question: {question}\n\nRetrieved passages:\n{context}\n\nAnswer the question in one sentence, "
        "citing the passage."
    ),
    "triple_quotes": (
        "Answer the question using the text delimited by triple quotes. Reply \"I don't know\" if it is "
        "not there.\n\nReference text:\n\"\"\"\n{context}\n\"\"\"\n\nQuestion: {question}"
    ),
    "bold_markdown": "**Context:**\n{context}\n\n**Query:** {question}\n\nRespond in under 50 words.",
    "trailing_question": "Answer from the information provided below. Be concise.\n\n{context}\n\n{question}",
    "fenced": (
        "Relevant search results:\n```\n{context}\n```\nUsing only the search results above, answer: "
        "{question}"
    ),
}


CONTEXT_STYLES = {
    "paragraphs": "\n\n".join(PASSAGES),
    "numbered": "\n".join(f"[{i + 1}] {p}" for i, p in enumerate(PASSAGES)),
    "documents": "\n\n".join(f"Document {i + 1}: {p}" for i, p in enumerate(PASSAGES)),
}


def lexical() -> LeanCompressor:
    return LeanCompressor(scorer=RelevanceScorer(semantic_weight=0.0), token_counter=TokenCounter())


def _tokens(text: str) -> int:
    return TokenCounter().count(text, "gpt-4o").tokens


def _check_around_context(template: str, context: str, out: str) -> None:
    """Everything the template puts around the context is in the output byte for byte; the
    context shrank and kept the sentence that answers the question."""
    before, after = template.split("{context}")
    before, after = before.format(question=QUESTION), after.format(question=QUESTION)
    assert out.startswith(before) and out.endswith(after), out
    kept = out[len(before):len(out) - len(after)]
    assert "Spree" in kept
    assert _tokens(kept) <= 0.5 * _tokens(context)


@pytest.mark.parametrize("style", sorted(CONTEXT_STYLES))
@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_string_templates_compress_only_their_context(name: str, style: str) -> None:
    template, context = TEMPLATES[name], CONTEXT_STYLES[style]
    value = PromptTemplate.from_template(template).invoke({"context": context, "question": QUESTION})
    compress = LeanCompress(compressor=lexical(), ratio=0.33)
    out = compress.invoke(value)
    assert isinstance(out, StringPromptValue)
    _check_around_context(template, context, out.text)
    assert compress.last_report is not None and compress.last_report.reason is None
    # a plain str reads the same way
    _check_around_context(template, context, compress.invoke(value.to_string()))


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_chat_templates_compress_the_context_inside_the_last_human_turn(name: str) -> None:
    system = "You are a helpful assistant. Answer from the context only. Never guess."
    prompt = ChatPromptTemplate.from_messages([("system", system), ("human", TEMPLATES[name])])
    value = prompt.invoke({"context": CONTEXT_STYLES["paragraphs"], "question": QUESTION})
    out = LeanCompress(compressor=lexical(), ratio=0.33).invoke(value)
    assert isinstance(out, ChatPromptValue)
    assert out.messages[0].content == system
    _check_around_context(TEMPLATES[name], CONTEXT_STYLES["paragraphs"], str(out.messages[1].content))


def test_context_in_the_system_message_is_found_and_the_question_is_the_last_turn() -> None:
    system = "Answer using only the documents.\n\n<documents>\n" + CONTEXT_STYLES["paragraphs"] + "\n</documents>"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
    out = compress_messages(messages, compressor=lexical(), budget=0.33)
    assert out.result is not None and out.reason is None
    content = out.messages[0]["content"]
    assert content.startswith("Answer using only the documents.\n\n<documents>\n")
    assert content.endswith("\n</documents>") and "Spree" in content
    assert out.messages[1] == messages[1]


def test_nested_document_tags_keep_their_markup() -> None:
    docs = "".join(f'<document index="{i}"><source>s{i}.txt</source><document_content>{p}</document_content>'
                   f"</document>\n" for i, p in enumerate(PASSAGES))
    text = f"<documents>\n{docs}</documents>\n\nQuestion: {QUESTION}"
    layout = find_context(text)
    assert layout.passages == PASSAGES and layout.question == QUESTION
    out = splice(layout, [p if "Berlin" in p else "" for p in PASSAGES])
    assert out.count("<document_content>") == out.count("</document_content>") == len(PASSAGES)
    assert "s0.txt" in out and "Eiffel" not in out and out.endswith(f"Question: {QUESTION}")


@pytest.mark.parametrize("text", [
    "Hello, how are you today?",
    "You are a helpful assistant.\n\nQuestion: What is the capital of France?",
    "What river flows through Berlin?",
])
def test_a_prompt_without_context_is_left_alone_and_says_why(text: str, caplog: pytest.LogCaptureFixture) -> None:
    compress = LeanCompress(compressor=lexical(), ratio=0.33)
    value = ChatPromptTemplate.from_messages([("system", "Be brief."), ("human", text)]).invoke({})
    with caplog.at_level(logging.WARNING):
        assert compress.invoke(value) == value
        assert compress.invoke(value) == value
    assert compress.last_report == CompressionReport(results=(), reason=NothingToCompress.NO_CONTEXT_FOUND)
    warnings = [r for r in caplog.records if "compressed nothing" in r.getMessage()]
    assert len(warnings) == 1  # once per instance, not once per call


async def test_compress_messages_reason_and_async_parity() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    for out in (compress_messages(messages, compressor=lexical(), budget=0.3),
                await acompress_messages(messages, compressor=lexical(), budget=0.3)):
        assert out.result is None and out.reason is NothingToCompress.NO_CONTEXT_FOUND and out.messages == messages
    turn = TEMPLATES["readme_chat_human"].format(context=CONTEXT_STYLES["numbered"], question=QUESTION)
    rag = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": turn}]
    sync = compress_messages(rag, compressor=lexical(), budget=0.33)
    other = await acompress_messages(rag, compressor=lexical(), budget=0.33)
    assert sync.messages == other.messages and sync.reason is None
    assert sync.messages[1]["content"].endswith(f"Question: {QUESTION}")


class _Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.reports: list[Any] = []

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        if name == "lean_compress":
            self.reports.append(data)


async def test_report_reaches_callbacks_in_both_modes() -> None:
    prompt = ChatPromptTemplate.from_messages([("human", TEMPLATES["readme_chat_human"])])
    chain = prompt | LeanCompress(compressor=lexical(), ratio=0.33)
    events = _Events()
    inputs = {"context": CONTEXT_STYLES["paragraphs"], "question": QUESTION}
    chain.invoke(inputs, config={"callbacks": [events]})
    await chain.ainvoke(inputs, config={"callbacks": [events]})
    assert len(events.reports) == 2 and all(isinstance(r, CompressionReport) and r.compressed for r in events.reports)


async def test_wrap_compresses_named_variables_before_formatting() -> None:
    template = "Context information is below.\n{context_str}\nAnswer the query.\nQuery: {query_str}\nAnswer: "
    prompt = PromptTemplate.from_template(template)
    wrapped = LeanCompress(compressor=lexical(), ratio=0.33).wrap(prompt)
    inputs = {"context_str": "\n\n".join(PASSAGES), "query_str": QUESTION}
    for out in (wrapped.invoke(inputs), await wrapped.ainvoke(inputs)):
        text = out.to_string()
        assert text.startswith("Context information is below.\n") and text.endswith(f"Query: {QUESTION}\nAnswer: ")
        assert "Spree" in text and "Velazquez" not in text
    two = PromptTemplate.from_template("A:\n{docs}\nB:\n{sources}\nQ: {question}")
    out = LeanCompress(compressor=lexical(), ratio=0.4).wrap(two, context_variables=["docs", "sources"]).invoke(
        {"docs": " ".join(PASSAGES), "sources": " ".join(PASSAGES[::-1]), "question": QUESTION})
    assert out.to_string().count("Spree") == 2 and len(out.to_string()) < 2 * len(" ".join(PASSAGES))
    with pytest.raises(ValueError, match="context_variables"):
        LeanCompress().wrap(PromptTemplate.from_template("{question}"))


async def test_documents_and_nodes_without_text_come_back_unchanged(caplog: pytest.LogCaptureFixture) -> None:
    docs = [Document(page_content="  "), Document(page_content="")]
    compressor = LeanDocumentCompressor(compressor=lexical(), ratio=0.3)
    nodes = [NodeWithScore(node=TextNode(text=" "), score=1.0)]
    post = LeanCompressPostprocessor(compressor=lexical(), ratio=0.3)
    with caplog.at_level(logging.WARNING):
        assert list(compressor.compress_documents(docs, QUESTION)) == docs
        assert list(await compressor.acompress_documents(docs, QUESTION)) == docs
        assert post.postprocess_nodes(nodes, QueryBundle(QUESTION)) == nodes
        assert await post.apostprocess_nodes(nodes, QueryBundle(QUESTION)) == nodes
    assert sum("compressed nothing" in r.getMessage() for r in caplog.records) == 2
