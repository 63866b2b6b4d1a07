"""Compression inside real pipelines: LCEL into ChatLeanVLLM, and a LlamaIndex query engine on LeanVLLM.

Both use the real default LeanCompressor (MiniLM embeddings) and the bundled SmolLM2 on vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompt_values import ChatPromptValue
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding

from lean_chain import ChatLeanVLLM, LeanCompress
from lean_core import CostLedger
from lean_index import LeanCompressPostprocessor, LeanVLLM

pytestmark = pytest.mark.integration

FACTS = [
    "The Spree river flows through Berlin, the capital of Germany.",
    "Paris is the capital of France and is home to the Eiffel Tower.",
    "Rome is the capital of Italy; the Colosseum is almost two thousand years old.",
    "Madrid is the capital of Spain and hosts the Prado museum.",
    "Vienna is the capital of Austria and is known for its coffee houses.",
]
QUESTION = "Which river flows through Berlin?"


def test_lcel_prompt_compress_chat_model(smollm2_path: Path) -> None:
    ledger = CostLedger(":memory:")
    seen: list[list[BaseMessage]] = []

    def spy(value: ChatPromptValue) -> ChatPromptValue:
        seen.append(value.messages)
        return value

    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer in a few words using the notes."),
        ("human", "Notes:\n{context}"),
        ("ai", "I have read the notes."),
        ("human", "{question}"),
    ])
    chain = prompt | LeanCompress(ratio=0.4, ledger=ledger) | RunnableLambda(spy) | ChatLeanVLLM(max_tokens=16)
    answer = chain.invoke({"context": " ".join(FACTS), "question": QUESTION})
    assert isinstance(answer, AIMessage) and isinstance(answer.content, str) and answer.content
    (messages,) = seen
    assert messages[-1].content == QUESTION
    assert "Spree" in str(messages[1].content)
    assert len(str(messages[1].content)) < len("Notes:\n" + " ".join(FACTS))
    (event,) = ledger.savings()
    assert event.layer == "compression" and event.input_tokens_after < event.input_tokens_before
    ledger.close()


def test_llamaindex_query_engine_with_postprocessor(smollm2_path: Path) -> None:
    from lean_core.assets import seed_tiktoken_cache

    # LlamaIndex's default splitter asks tiktoken for cl100k_base while building the index; offline,
    # users seed tiktoken's cache once (`lean-inference assets` does this), as here.
    seed_tiktoken_cache()
    ledger = CostLedger(":memory:")
    embed = MockEmbedding(embed_dim=8)
    index = VectorStoreIndex.from_documents(
        [Document(text=t, metadata={"n": i}) for i, t in enumerate(FACTS)], embed_model=embed)
    post = LeanCompressPostprocessor(target_tokens=24, ledger=ledger)
    engine = index.as_query_engine(llm=LeanVLLM(max_tokens=16), similarity_top_k=5,
                                   node_postprocessors=[post])
    response: Any = engine.query(QUESTION)
    assert isinstance(response.response, str) and response.response
    sources = response.source_nodes
    assert 0 < len(sources) < len(FACTS)
    assert all(n.node.metadata["n"] in range(len(FACTS)) for n in sources)
    assert any("Spree" in n.node.get_content() for n in sources)
    assert all(n.score is not None for n in sources)
    (event,) = ledger.savings()
    assert event.layer == "compression" and event.input_tokens_after <= 24
    ledger.close()


def test_metadata_titles_let_the_real_compressor_keep_a_pronoun_led_answer() -> None:
    """'It was written by ...' names neither the song nor its singer; the retriever's title in
    ``metadata["title"]`` (not in the text) tells the MiniLM scorer what "It" is."""
    from langchain_core.documents import Document as LCDocument

    from lean_chain import LeanDocumentCompressor

    docs = [LCDocument(page_content=text, metadata={"title": title}) for title, text in [
        ("Harbour Lights (Mara Quinn song)", "Harbour Lights is a 2014 single by Mara Quinn. "
                                             "It was written by Tomas Vell and Ada Price. "
                                             "It reached number four in Ireland."),
        ("Mara Quinn", "Mara Quinn is an Irish singer. She grew up in Galway and studied music in Cork."),
        ("Salt Road (album)", "Salt Road is the second album by the band Tidewater. It was recorded in Oslo."),
        ("Tidewater (band)", "Tidewater are a folk band from Bergen. They have toured Europe since 2009."),
    ]]
    question = "Who were the writers of Mara Quinn's single Harbour Lights?"

    def kept(title_key: str | None) -> str:
        out = LeanDocumentCompressor(target_tokens=25, title_key=title_key).compress_documents(docs, question)
        return " ".join(d.page_content for d in out)

    assert "Tomas Vell" in kept("title")
    assert "Tomas Vell" not in kept(None)  # the same text without its titles loses the answer
