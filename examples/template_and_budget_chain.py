"""Layers 2 and 4 in one LCEL chain: a lean template, then an output budget, on the local model.

Runs offline with the bundled SmolLM2 served in this process by vLLM (`ChatLeanVLLM`). The
template replaces a verbose support prompt (the ledger records the tokens it saves per call,
layer "template"); its stable part comes first, so the engine's prefix cache serves it from the
second request on. `LeanBudget` gives each question a predicted `max_tokens`, a brevity
instruction and early stopping (layer "output"). The chain is:

    LeanTemplate(...) | LeanBudget(llm=ChatLeanVLLM(), brevity=True) | StrOutputParser()

    python examples/template_and_budget_chain.py [--ledger PATH]
"""

from __future__ import annotations

import argparse

from langchain_core.output_parsers import StrOutputParser

from lean_chain import ChatLeanVLLM, LeanBudget, LeanCostCallback, LeanTemplate
from lean_core import CostLedger
from lean_core.report import render_table

VERBOSE = (
    "Customer question: {question}\n\n"
    "Hello! You are a very helpful, friendly and professional customer support assistant working for "
    "Northwind, an online clothing store. It is very important that you always answer the customer's "
    "question using only the information in the returns policy below. Please make sure that you do not "
    "make up any information that is not in the policy. If the policy does not cover the question, "
    "please politely say that you do not know. Please always be polite and friendly. Please answer "
    "briefly and clearly.\n\nReturns policy:\n{policy}\n\nThank you very much for your help!"
)
POLICY = ("Unworn items may be returned within 30 days of delivery for a full refund. Sale items can be "
          "exchanged but not refunded. Refunds reach the original payment method within 5 business days.")
QUESTIONS = (
    "How many days do I have to return unworn shoes?",
    "Can I get a refund for a sale item?",
    "How long does a refund take to arrive?",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default="example-template-budget-ledger.sqlite3", help="cost ledger file")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    prompt = LeanTemplate(
        role="You are Northwind's support assistant.",
        task="Answer the customer's question from the returns policy.",
        constraints=["Use only the policy; if it does not say, answer that you do not know."],
        context="Policy:\n{policy}",
        question="Question: {question}",
        model="smollm2-135m-instruct", baseline=VERBOSE, ledger=ledger,
    )
    llm = ChatLeanVLLM(max_tokens=512)
    chain = prompt | LeanBudget(llm=llm, brevity=True, ledger=ledger) | StrOutputParser()
    config = {"callbacks": [LeanCostCallback(ledger=ledger)]}
    # The engine is shared by every ChatLeanVLLM with its settings in this process, and its
    # counters are running totals: count this example's questions only.
    before = llm.backend().stats  # type: ignore[attr-defined]
    for question in QUESTIONS:
        answer = chain.invoke({"question": question, "policy": POLICY}, config=config)
        print(f"Q: {question}\nA: {answer.strip()}\n")

    stats = llm.backend().stats  # type: ignore[attr-defined]
    print(f"prefix cache: {stats.cached_prompt_tokens - before.cached_prompt_tokens} of "
          f"{stats.prompt_tokens - before.prompt_tokens} prompt tokens served from cache")
    print(render_table(ledger.summary()))


if __name__ == "__main__":
    main()
