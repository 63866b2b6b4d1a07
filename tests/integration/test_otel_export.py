"""End to end: ledger records leave through the real OTLP/HTTP exporter, directly and through a real
OTLP collector (rotel), and arrive as protobuf GenAI spans at a loopback receiver."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from lean_core import CostLedger, SavingsEvent, TokenUsage
from lean_core.telemetry import OTelLedgerExporter
from tests.support.otlp_receiver import OTLPTraceReceiver, rotel_collector

pytestmark = pytest.mark.integration


@pytest.fixture(params=["direct", "through the rotel collector"])
def traces_endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, OTLPTraceReceiver]]:
    with ExitStack() as stack:
        receiver = stack.enter_context(OTLPTraceReceiver())
        if request.param == "direct":
            yield f"{receiver.endpoint}/v1/traces", receiver
        else:
            yield stack.enter_context(rotel_collector(receiver.endpoint)), receiver


def test_call_and_savings_spans_arrive_over_otlp(traces_endpoint: tuple[str, OTLPTraceReceiver]) -> None:
    endpoint, receiver = traces_endpoint
    provider = TracerProvider(resource=Resource.create({"service.name": "lean-otel-test"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    usage = TokenUsage(input_tokens=2_000, cached_input_tokens=1_536, output_tokens=500, reasoning_tokens=320)
    with CostLedger(":memory:", listeners=[OTelLedgerExporter(provider)]) as ledger:
        record = ledger.record_call(model="gpt-4o", provider="openai", usage=usage, latency_s=0.8,
                                    tenant="acme", run_id="run-1")
        event = ledger.record(SavingsEvent(layer="compression", model="gpt-4o", provider="openai",
                                           input_tokens_before=6_000, input_tokens_after=2_000, tenant="acme",
                                           call_id=record.id))
    assert provider.force_flush(10_000)
    spans = {s.name: s for s in receiver.wait_for(2)}
    provider.shutdown()

    call, savings = spans["chat gpt-4o"], spans["lean.savings compression"]
    assert call.resource["service.name"] == "lean-otel-test"
    assert call.kind == ProtoSpan.SPAN_KIND_CLIENT and savings.kind == ProtoSpan.SPAN_KIND_INTERNAL
    assert call.end_ns - call.start_ns == 800_000_000
    assert {k: call.attributes[k] for k in (
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens", "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.reasoning.output_tokens", "lean.tenant", "lean.run_id", "lean.call_id")} == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 2_000, "gen_ai.usage.output_tokens": 500,
        "gen_ai.usage.cache_read.input_tokens": 1_536, "gen_ai.usage.reasoning.output_tokens": 320,
        "lean.tenant": "acme", "lean.run_id": "run-1", "lean.call_id": record.id}
    assert record.cost_usd is not None and event.cost_saved_usd is not None and event.cost_saved_usd > 0
    assert call.attributes["lean.cost_usd"] == float(record.cost_usd)
    assert savings.attributes["lean.tokens_saved"] == 4_000
    assert savings.attributes["lean.cost_saved_usd"] == float(event.cost_saved_usd)
    assert (savings.trace_id, savings.parent_span_id) == (call.trace_id, call.span_id)
