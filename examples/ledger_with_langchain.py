"""Record a LangChain chain's LLM calls in a cost ledger and print the report.

Runs offline: the chat model here is the bundled SmolLM2 answering through transformers, wrapped
as a LangChain chat model just for this example (the vLLM-backed `ChatLeanVLLM` replaces it once
the backend lands). Swap in any LangChain chat model — `ChatOpenAI(model="gpt-4o",
stream_usage=True)` for instance — and the same callback records provider-reported usage and cost.

    python examples/ledger_with_langchain.py [--ledger PATH] [--png PATH]
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from pydantic import PrivateAttr

from lean_backends.local_generation import LocalGreedyModel
from lean_chain import LeanCostCallback
from lean_core import CostLedger
from lean_core.assets import smollm2_dir
from lean_core.report import render_table, write_chart


class LocalSmolLM2(BaseChatModel):
    """Minimal LangChain wrapper over the local greedy model (example only)."""

    max_new_tokens: int = 32
    _model: LocalGreedyModel = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        self._model = LocalGreedyModel(smollm2_dir(show_progress=False))

    @property
    def _llm_type(self) -> str:
        return "local-smollm2"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        roles = {"human": "user", "ai": "assistant", "system": "system"}
        chat = [{"role": roles.get(m.type, "user"), "content": m.text} for m in messages]
        answer = self._model.answer(chat, max_new_tokens=self.max_new_tokens)
        message = AIMessage(
            content=answer.text,
            usage_metadata={"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens,
                            "total_tokens": answer.prompt_tokens + answer.completion_tokens},
            response_metadata={"model_name": "smollm2-135m-instruct"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "local"
        params["ls_model_name"] = "smollm2-135m-instruct"
        return params


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ledger", default="example-ledger.sqlite3")
    parser.add_argument("--png", default="example-ledger.png")
    args = parser.parse_args(argv)

    ledger = CostLedger(args.ledger)
    chain = ChatPromptTemplate.from_messages(
        [("system", "Answer in one short sentence."), ("human", "{question}")]
    ) | LocalSmolLM2()
    questions = ["What is the capital of France?", "Which planet is known as the Red Planet?"]
    answers = chain.batch([{"question": q} for q in questions],
                          config={"callbacks": [LeanCostCallback(ledger, tenant="example")]})
    for question, answer in zip(questions, answers, strict=True):
        print(f"{question} -> {answer.content}")
    summary = ledger.summary()
    print(render_table(summary))
    print(f"chart: {write_chart(summary, args.png)}")
    ledger.close()


if __name__ == "__main__":
    main()
