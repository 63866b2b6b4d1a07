"""Send a LangChain chain's calls and savings to OpenTelemetry and print the spans.

The cost ledger hands every record it stores to its listeners; `OTelLedgerExporter` turns each
model call into a GenAI span (tokens, cached and reasoning tokens, cost) and each savings record
into a `lean.savings {layer}` span. Here the spans go to the OpenTelemetry SDK's in-memory
exporter and are printed; in production give the tracer provider an OTLP exporter instead (see
README, "OpenTelemetry"), and LangSmith, Langfuse, Grafana or Datadog receive the same spans.

Runs offline in a second: the chat model is a stand-in that answers from a fixed table and
reports its usage the way ChatOpenAI reports an o4-mini call (prompt-cache reads after the first
call, hidden reasoning tokens). Put `ChatOpenAI(model="o4-mini", stream_usage=True)` in its place
and nothing else changes. The repeated question is served by `LeanCache`, which records the
saved call as layer "cache".

    python examples/otel_export.py [--cache PATH]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel, LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import Field

from lean_chain import LeanCache, LeanCostCallback
from lean_core import CostLedger, count_tokens
from lean_core.cache import ResponseCache, SQLiteCacheStore
from lean_core.telemetry import OTelLedgerExporter

MODEL = "o4-mini"
POLICY = ("You answer questions about Northwind's returns policy in one short sentence.\n"
          "Policy: unworn items may be returned within 30 days of delivery for a full refund; sale items "
          "can be exchanged but not refunded; refunds reach the original payment method within 5 business days.")
ANSWERS = {
    "return": "Unworn boots can be returned within 30 days of delivery for a full refund.",
    "sale": "Sale items can be exchanged but not refunded.",
    "refund": "The refund reaches your original payment method within 5 business days.",
}
REASONING_TOKENS = 64


class OfflineOpenAIStandIn(BaseChatModel):
    """Answers from ``ANSWERS`` and reports usage as OpenAI does: ``input_token_details.cache_read``
    for a system prompt it has seen before, ``output_token_details.reasoning`` for hidden reasoning."""

    model_name: str = MODEL
    seen_prefixes: set[str] = Field(default_factory=set)

    @property
    def _llm_type(self) -> str:
        return "offline-openai-stand-in"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}  # LeanCache reads the model from these

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(ls_provider="openai", ls_model_name=self.model_name, ls_model_type="chat")

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: Any = None, **kwargs: Any) -> ChatResult:
        prefix, question = messages[0].text, messages[-1].text
        answer = next(text for key, text in ANSWERS.items() if key in question.lower())
        input_tokens = sum(count_tokens(m.text, self.model_name).tokens for m in messages)
        cached = count_tokens(prefix, self.model_name).tokens if prefix in self.seen_prefixes else 0
        self.seen_prefixes.add(prefix)
        output_tokens = count_tokens(answer, self.model_name).tokens + REASONING_TOKENS
        message = AIMessage(content=answer, response_metadata={"model_name": self.model_name}, usage_metadata={
            "input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
            "input_token_details": {"cache_read": cached},
            "output_token_details": {"reasoning": REASONING_TOKENS},
        })
        return ChatResult(generations=[ChatGeneration(message=message)])


def _describe(span: ReadableSpan, names: dict[int, str]) -> str:
    attrs = dict(span.attributes or {})
    parent = f" (child of {names[span.parent.span_id]!r})" if span.parent and span.parent.span_id in names else ""
    millis = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
    lines = [f"span {span.name!r}{parent}  {millis:.1f} ms"]
    lines += [f"    {key} = {value!r}" for key, value in sorted(attrs.items()) if not key.endswith("_id")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=None, help="SQLite cache file (default: a temporary one)")
    args = parser.parse_args(argv)

    # Any OpenTelemetry exporter fits here: OTLPSpanExporter(endpoint=...) with a BatchSpanProcessor
    # sends the same spans to a collector, LangSmith, Langfuse, Grafana or Datadog.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": "returns-bot"}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    ledger = CostLedger(":memory:", listeners=[OTelLedgerExporter(tracer_provider)])

    with tempfile.TemporaryDirectory() as scratch:
        cache_path = Path(args.cache) if args.cache else Path(scratch) / "cache.sqlite3"
        cache = LeanCache(cache=ResponseCache(SQLiteCacheStore(cache_path), mode="exact", ledger=ledger))
        prompt = ChatPromptTemplate.from_messages([("system", POLICY), ("human", "{question}")])
        chain = prompt | OfflineOpenAIStandIn(cache=cache)
        config: Any = {"callbacks": [LeanCostCallback(ledger)], "metadata": {"tenant": "acme"}}
        questions = ["How many days do I have to return unworn boots?", "Can I get a refund for a sale item?",
                     "When does the refund reach my card?", "How many days do I have to return unworn boots?"]
        for question in questions:
            print(f"Q: {question}\nA: {chain.invoke({'question': question}, config=config).content}")
        cache.cache.store.close()

    tracer_provider.force_flush()
    finished = list(spans.get_finished_spans())
    names = {s.context.span_id: s.name for s in finished if s.context is not None}
    print(f"\n{len(finished)} spans exported:")
    for span in finished:
        print(_describe(span, names))
    summary = ledger.summary()
    print(f"\nledger: {len(ledger.calls())} calls, {len(ledger.savings())} savings records, "
          f"cost ${summary.actual_cost_usd:.6f}")
    ledger.close()
    tracer_provider.shutdown()


if __name__ == "__main__":
    main()
