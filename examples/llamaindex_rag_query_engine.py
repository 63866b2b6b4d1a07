"""A LlamaIndex RAG query engine with compressed context, a response cache and a cost ledger.

Runs offline. Ten short documents (an invented botanical garden's visitor notes, written for
this example) are indexed in a `VectorStoreIndex`, embedded with the bundled all-MiniLM-L6-v2
through a small `BaseEmbedding` adapter. The query engine retrieves the four closest nodes,
`LeanCompressPostprocessor` keeps only the sentences that matter for the question under one
budget counted in SmolLM2's tokens (each node keeps its id, metadata and score), and the bundled
SmolLM2 answers (`LeanVLLM`, served in this process by vLLM) behind `LeanCachedLLM`, so the
question asked again is served from the cache. `LeanCostHandler` records the model calls; the
ledger report at the end shows layers "compression" and "cache".

`Settings.llm` and `Settings.embed_model` are set to these local objects, so nothing in LlamaIndex
falls back to its OpenAI defaults.

    python examples/llamaindex_rag_query_engine.py [--cache PATH] [--ledger PATH] [--target-tokens N]
"""

from __future__ import annotations

import argparse
from typing import Any

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import PrivateAttr

from lean_core import CostLedger
from lean_core.assets import seed_tiktoken_cache
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.embeddings import Embedder, default_embedder
from lean_core.report import render_table
from lean_index import LeanCachedLLM, LeanCompressPostprocessor, LeanCostHandler, LeanVLLM

MODEL = "smollm2-135m-instruct"
# (id, source, section, text): invented facts about an invented garden.
NOTES = [
    ("bg-01", "visiting.md", "hours",
     "Fernhollow Botanical Garden opens at 9 am every day. In summer (April to September) it "
     "closes at 6 pm, and at 4 pm the rest of the year. The last entry is one hour before closing."),
    ("bg-02", "visiting.md", "tickets",
     "An adult day ticket costs 12 euros and a student ticket 7 euros. Children under 6 enter free. "
     "A family pass for two adults and three children costs 30 euros."),
    ("bg-03", "collections.md", "glasshouses",
     "The Palm House was built in 1887 and is 21 metres tall. It holds 340 species of tropical "
     "plants. Its heating runs on a wood-chip boiler installed in 2016."),
    ("bg-04", "collections.md", "alpine",
     "The alpine rockery covers 800 square metres and holds about 1,200 plants from 14 mountain "
     "ranges. It flowers best in May."),
    ("bg-05", "collections.md", "trees",
     "The oldest tree is a cedar planted in 1851 by the garden's founder, Agathe Morrow. The "
     "arboretum holds 96 kinds of oak."),
    ("bg-06", "events.md", "tours",
     "Guided tours start at the main gate at 11 am and 2 pm and last 75 minutes. They are free "
     "with a day ticket but limited to 20 people."),
    ("bg-07", "events.md", "night",
     "On the first Friday of each summer month the garden stays open until 10 pm for the "
     "Lantern Walk. Tickets for the Lantern Walk cost 15 euros."),
    ("bg-08", "rules.md", "visitors",
     "Dogs are not allowed, except assistance dogs. Picnics are allowed on the Great Lawn only. "
     "Drones may not be flown over the garden."),
    ("bg-09", "services.md", "access",
     "Four wheelchairs can be borrowed at the main gate free of charge. All glasshouses have step-free "
     "access except the Fern Grotto."),
    ("bg-10", "services.md", "cafe",
     "The Orangery Cafe seats 60 people and serves lunch from noon to 3 pm. Its scones are baked "
     "with flour from the Morrow mill."),
]
QUESTIONS = (
    "What time does the garden close in summer?",
    "How long does a guided tour last?",
    "What time does the garden close in summer?",  # asked again: served by the response cache
)


class MiniLMEmbedding(BaseEmbedding):
    """LlamaIndex embeddings over the bundled all-MiniLM-L6-v2 (unit vectors, 384 dimensions)."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Embedder | None = None, **kwargs: Any) -> None:
        super().__init__(model_name="all-MiniLM-L6-v2", **kwargs)
        self._embedder = embedder if embedder is not None else default_embedder()  # shared, loads once

    @classmethod
    def class_name(cls) -> str:
        return "MiniLMEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.encode([query])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.encode([text])[0].tolist()

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.encode(texts).tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="example-llamaindex-cache.sqlite3", help="SQLite cache file")
    parser.add_argument("--ledger", default="example-llamaindex-ledger.sqlite3", help="cost ledger file")
    parser.add_argument("--target-tokens", type=int, default=60,
                        help="budget for all retrieved nodes together, in SmolLM2 tokens")
    args = parser.parse_args(argv)

    # LlamaIndex's sentence splitter counts tokens with tiktoken's cl100k_base: seed tiktoken's
    # cache from the bundled copy so that it does not try to download it.
    seed_tiktoken_cache()
    ledger = CostLedger(args.ledger)
    handler = LeanCostHandler(ledger, tenant="example").register()
    cache = ResponseCache(SQLiteCacheStore(args.cache), ledger=ledger)
    llm = LeanCachedLLM(LeanVLLM(max_tokens=48), cache=cache, tenant="example")
    Settings.llm = llm
    Settings.embed_model = MiniLMEmbedding()

    index = VectorStoreIndex.from_documents(
        [Document(text=text, id_=doc_id, metadata={"source": source, "section": section})
         for doc_id, source, section, text in NOTES],
        embed_model=Settings.embed_model,
    )
    engine = index.as_query_engine(
        llm=llm, similarity_top_k=4,
        node_postprocessors=[LeanCompressPostprocessor(target_tokens=args.target_tokens,
                                                       target_model=MODEL, ledger=ledger)],
    )
    for question in QUESTIONS:
        hits_before = cache.stats.hits
        response: Any = engine.query(question)
        served = "cache" if cache.stats.hits > hits_before else "model"
        print(f"Q: {question}\nA ({served}): {str(response.response).strip()}")
        for item in response.source_nodes:
            node = item.node
            print(f"  score {item.score:.3f}  {node.ref_doc_id} ({node.metadata['source']}, "
                  f"{node.metadata['section']}): {node.get_content()}")
        print()

    stats = cache.stats
    print(f"cache: lookups {stats.lookups}, exact hits {stats.exact_hits}, "
          f"semantic hits {stats.semantic_hits}, misses {stats.misses}")
    print(render_table(ledger.summary()))
    handler.unregister()
    cache.close()
    ledger.close()


if __name__ == "__main__":
    main()
