"""A LangChain RAG chain whose retrieved documents are compressed before the model reads them.

Runs offline. Ten short documents (an invented ferry operator's handbook, written for this
example) go into LangChain's `InMemoryVectorStore`, embedded with the bundled all-MiniLM-L6-v2
through a ten-line `Embeddings` adapter. `ContextualCompressionRetriever` wraps the store's
retriever with `LeanDocumentCompressor`, which keeps, for each question, only the sentences of the
retrieved documents that matter, under one budget counted in SmolLM2's tokens. Every document
that comes back keeps its own metadata (source, section, id) plus `lean_compression` token
counts; documents with nothing kept are dropped. The bundled SmolLM2 (`ChatLeanVLLM`, served in
this process by vLLM) answers from what is left, citing sources; the ledger records the model
calls and layer "compression". A model this small answers well from one short extract; given
two similar ones (a bicycle fare next to a foot-passenger fare) it often quotes the wrong one,
which is one more reason to send it only what the question needs.

`ContextualCompressionRetriever` lives in `langchain-classic` since LangChain 1.0.

    python examples/langchain_rag_chain.py [--ledger PATH] [--target-tokens N]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore

from lean_chain import ChatLeanVLLM, LeanCostCallback, LeanDocumentCompressor
from lean_core import CostLedger
from lean_core.embeddings import Embedder, default_embedder
from lean_core.report import render_table

MODEL = "smollm2-135m-instruct"
# (id, source, section, text): invented facts about an invented ferry operator.
HANDBOOK = [
    ("tf-01", "timetable.md", "crossings",
     "The crossing from Port Aldren to Skerra Island takes 55 minutes. The first ferry leaves "
     "Port Aldren at 6:40 am and the last returns from Skerra at 9:15 pm. In winter the 9:15 pm "
     "sailing is dropped on Sundays."),
    ("tf-02", "timetable.md", "crossings",
     "The fast boat Gannet runs between Skerra and Holm twice a day and takes 25 minutes. It does "
     "not carry cars. It is suspended when the wind passes force 7."),
    ("tf-03", "fares.md", "tickets",
     "A single adult foot-passenger ticket costs 9 euros. Children under 12 travel for 4 euros. "
     "Islanders with a resident card pay half fare on every route."),
    ("tf-04", "fares.md", "vehicles",
     "Cars up to 5 metres cost 38 euros each way. A bicycle ticket costs 3 euros and bikes must be "
     "strapped on the lower deck. Motorbikes are charged 15 euros."),
    ("tf-05", "fleet.md", "vessels",
     "The flagship Morwenna was built in 2009 at the Lennick yard and carries 420 passengers and "
     "48 cars. Her sister ship Corra carries 300 passengers and 30 cars."),
    ("tf-06", "policies.md", "pets",
     "Dogs travel free on a lead and must stay on the outer deck or in the pet lounge. Cats must be "
     "in a closed carrier. Assistance dogs may go anywhere on board."),
    ("tf-07", "policies.md", "delays",
     "If a sailing is more than 90 minutes late, passengers may claim a 50 percent refund. A "
     "cancelled sailing is refunded in full or rebooked at no charge."),
    ("tf-08", "services.md", "on board",
     "The cafe on the Morwenna serves hot food until 30 minutes before arrival. Wi-Fi is free on "
     "both large ferries but not on the Gannet."),
    ("tf-09", "services.md", "booking",
     "Vehicle space must be booked at least 24 hours ahead in July and August. Foot passengers can "
     "buy tickets at the quay up to 10 minutes before departure."),
    ("tf-10", "history.md", "company",
     "Tessaly Ferries was founded in 1978 by the harbour master Ilse Varga with one converted "
     "fishing boat. Today the company employs 112 people across three islands."),
]
QUESTIONS = (
    "How long is the crossing from Port Aldren to Skerra Island?",
    "Who founded Tessaly Ferries?",
)


class MiniLMEmbeddings(Embeddings):
    """LangChain `Embeddings` over the bundled all-MiniLM-L6-v2 (unit vectors, 384 dimensions)."""

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder if embedder is not None else default_embedder()  # shared with the compressor

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.encode([text])[0].tolist()


def _numbered(docs: Sequence[Document]) -> str:
    return "\n".join(f"[{d.metadata['source']}] {d.page_content}" for d in docs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default="example-rag-ledger.sqlite3", help="cost ledger file")
    parser.add_argument("--target-tokens", type=int, default=45,
                        help="budget for all retrieved documents together, in SmolLM2 tokens")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    store = InMemoryVectorStore(embedding=MiniLMEmbeddings())
    store.add_documents(
        [Document(page_content=text, metadata={"source": source, "section": section, "doc_id": doc_id})
         for doc_id, source, section, text in HANDBOOK],
        ids=[doc_id for doc_id, *_ in HANDBOOK],
    )
    retriever = ContextualCompressionRetriever(
        base_compressor=LeanDocumentCompressor(target_tokens=args.target_tokens, target_model=MODEL,
                                               ledger=ledger),
        base_retriever=store.as_retriever(search_kwargs={"k": 4}),
    )
    prompt = ChatPromptTemplate.from_messages([
        ("system", "Answer the question in one short sentence from the handbook extracts below.\n"
                   "{context}"),
        ("human", "{question}"),
    ])
    answer_chain = ({"context": lambda x: _numbered(x["docs"]), "question": itemgetter("question")}
                    | prompt | ChatLeanVLLM(max_tokens=40) | StrOutputParser())
    # Retrieve once, answer from the result, and hand back both (the sources stay inspectable).
    rag = (RunnablePassthrough.assign(docs=itemgetter("question") | retriever)
           .assign(answer=answer_chain))

    config: Any = {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": "example"}}
    for question in QUESTIONS:
        out = rag.invoke({"question": question}, config=config)
        print(f"Q: {question}")
        for doc in out["docs"]:
            counts = doc.metadata["lean_compression"]
            print(f"  kept {counts['kept_tokens']:>3}/{counts['original_tokens']:<3} tokens of "
                  f"{doc.metadata['doc_id']} ({doc.metadata['source']}, {doc.metadata['section']}): "
                  f"{doc.page_content}")
        print(f"A: {out['answer'].strip()}\n")

    for event in ledger.savings():
        print(f"compression: {event.input_tokens_before} -> {event.input_tokens_after} tokens of "
              "retrieved text")
    print(render_table(ledger.summary()))
    ledger.close()


if __name__ == "__main__":
    main()
