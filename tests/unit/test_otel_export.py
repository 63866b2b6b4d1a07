"""OTelLedgerExporter: ledger records as OpenTelemetry GenAI spans and metrics (in-memory SDK)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from lean_core import CostLedger, InvalidParameterError, MissingExtraError, SavingsEvent, TokenUsage
from lean_core.ledger_listener import LedgerListener
from lean_core.pricing import price_usage
from lean_core.telemetry import OTelLedgerExporter
from lean_core.telemetry import attributes as a

STAMP = datetime(2026, 12, 7, 4, 30, 15, 123456, tzinfo=UTC)
USAGE = TokenUsage(input_tokens=1_500, cached_input_tokens=1_024, cache_write_tokens=200,
                   output_tokens=400, reasoning_tokens=256)


class _Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])

    def exporter(self, **options: Any) -> OTelLedgerExporter:
        return OTelLedgerExporter(self.tracer_provider, self.meter_provider, **options)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        points: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


@pytest.fixture
def telemetry() -> Iterator[_Telemetry]:
    t = _Telemetry()
    yield t
    t.tracer_provider.shutdown()
    t.meter_provider.shutdown()


@pytest.fixture
def ledger() -> Iterator[CostLedger]:
    with CostLedger(":memory:") as led:
        yield led


def test_exporter_is_a_ledger_listener(telemetry: _Telemetry) -> None:
    assert isinstance(telemetry.exporter(), LedgerListener)


def test_call_span_follows_the_genai_conventions(telemetry: _Telemetry, ledger: CostLedger) -> None:
    record = ledger.record_call(model="gpt-4o", provider="openai", usage=USAGE, latency_s=1.25, tenant="acme",
                                tags=["rag", "eu"], run_id="run-7", timestamp=STAMP)
    telemetry.exporter().on_call(record)

    (span,) = telemetry.finished()
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    # the ledger stamps a call when it ends; the span starts latency_s earlier, to the nanosecond
    end_ns = int((STAMP - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1)) * 1_000
    assert (span.start_time, span.end_time) == (end_ns - 1_250_000_000, end_ns)
    attrs = dict(span.attributes or {})
    quote = price_usage(USAGE, "gpt-4o", provider="openai", at=STAMP)
    assert quote.priced and quote.total_cost_usd is not None and quote.total_cost_usd > 0
    assert attrs == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 1_500,
        "gen_ai.usage.output_tokens": 400,
        "gen_ai.usage.cache_read.input_tokens": 1_024,
        "gen_ai.usage.cache_creation.input_tokens": 200,
        "gen_ai.usage.reasoning.output_tokens": 256,
        "lean.usage_source": "provider",
        "lean.priced": True,
        "lean.cost_usd": float(quote.total_cost_usd),
        "lean.input_cost_usd": float(quote.input_cost_usd or 0),
        "lean.output_cost_usd": float(quote.output_cost_usd or 0),
        "lean.tenant": "acme",
        "lean.tags": ("rag", "eu"),
        "lean.call_id": record.id,
        "lean.run_id": "run-7",
    }


def test_unpriced_call_has_no_cost_and_says_why(telemetry: _Telemetry, ledger: CostLedger) -> None:
    usage = TokenUsage(input_tokens=30, output_tokens=12, source="tokenizer")
    record = ledger.record_call(model="smollm2-135m-instruct", provider="lean-vllm", usage=usage)
    telemetry.exporter(operation_name="text_completion", legacy_system_attribute=False,
                       capture_tenant=False).on_call(record)
    (span,) = telemetry.finished()
    attrs = dict(span.attributes or {})
    assert span.name == "text_completion smollm2-135m-instruct"
    assert span.start_time == span.end_time  # no latency recorded: a zero-length span at the stamp
    assert attrs["gen_ai.provider.name"] == "lean-vllm"  # not a well-known provider: passed through
    assert "gen_ai.system" not in attrs and "lean.tenant" not in attrs
    assert attrs["lean.priced"] is False and "lean.cost_usd" not in attrs
    assert attrs["lean.unpriced_reason"] and attrs["lean.usage_source"] == "tokenizer"


@pytest.mark.parametrize(("ledger_provider", "semconv"), [
    ("google", "gcp.gen_ai"), ("aws", "aws.bedrock"), ("azure", "azure.ai.openai"), ("x-ai", "x_ai"),
    ("mistral", "mistral_ai"), ("anthropic", "anthropic"),
])
def test_provider_ids_map_to_the_conventions_values(telemetry: _Telemetry, ledger: CostLedger,
                                                    ledger_provider: str, semconv: str) -> None:
    record = ledger.record_call(model="m", provider=ledger_provider, usage=TokenUsage(input_tokens=1))
    telemetry.exporter().on_call(record)
    assert telemetry.finished()[0].attributes["gen_ai.provider.name"] == semconv  # type: ignore[index]


def test_savings_of_a_call_is_a_child_span_of_that_call(telemetry: _Telemetry, ledger: CostLedger) -> None:
    exporter = telemetry.exporter()
    record = ledger.record_call(model="gpt-4o", provider="openai", usage=USAGE, latency_s=0.5, tenant="acme")
    exporter.on_call(record)
    event = ledger.record(SavingsEvent(layer="compression", model="gpt-4o", provider="openai",
                                       input_tokens_before=4_000, input_tokens_after=1_500, tenant="acme",
                                       call_id=record.id, timestamp=STAMP))
    exporter.on_savings(event)

    call_span, savings_span = telemetry.finished()
    assert savings_span.name == "lean.savings compression"
    assert savings_span.kind is SpanKind.INTERNAL
    assert savings_span.parent is not None and call_span.context is not None
    assert savings_span.parent.span_id == call_span.context.span_id
    assert savings_span.context is not None and savings_span.context.trace_id == call_span.context.trace_id
    attrs = dict(savings_span.attributes or {})
    assert event.cost_saved_usd is not None and event.cost_saved_usd > 0
    assert attrs == {
        "lean.layer": "compression", "lean.model": "gpt-4o",
        "lean.input_tokens_before": 4_000, "lean.input_tokens_after": 1_500, "lean.input_tokens_saved": 2_500,
        "lean.output_tokens_before": 0, "lean.output_tokens_after": 0, "lean.output_tokens_saved": 0,
        "lean.tokens_before": 4_000, "lean.tokens_after": 1_500, "lean.tokens_saved": 2_500,
        "lean.cost_saved_usd": float(event.cost_saved_usd), "lean.tenant": "acme",
        "lean.call_id": record.id, "lean.savings_id": event.id,
    }
    # a savings span is not a model call: GenAI-aware backends must not count it as one
    assert not any(key.startswith("gen_ai.") for key in attrs)


def test_savings_without_a_known_call_joins_the_current_context(telemetry: _Telemetry,
                                                                 ledger: CostLedger) -> None:
    exporter = telemetry.exporter()
    hit = ledger.record(SavingsEvent(layer="cache", model="gpt-4o", provider="openai", input_tokens_before=900,
                                     output_tokens_before=120, cache_hit=True))
    tracer = telemetry.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        exporter.on_savings(hit)
    savings_span, _request_span = telemetry.finished()
    assert savings_span.parent is not None and savings_span.parent.span_id == request.get_span_context().span_id
    attrs = dict(savings_span.attributes or {})
    assert attrs["lean.cache_hit"] is True and attrs["lean.tokens_saved"] == 1_020
    assert "lean.call_id" not in attrs

    exporter.on_savings(hit.model_copy(update={"call_id": "never-seen"}))
    orphan = telemetry.finished()[-1]
    assert orphan.parent is None  # no current span, unknown call: a trace of its own


def test_a_cache_miss_span_says_why_the_model_was_called(telemetry: _Telemetry, ledger: CostLedger) -> None:
    exporter = telemetry.exporter()
    exporter.on_savings(ledger.record(SavingsEvent(layer="cache", model="gpt-4o", cache_hit=False,
                                                   miss_reason="exploration")))
    (span,) = telemetry.finished()
    attrs = dict(span.attributes or {})
    assert attrs["lean.cache_hit"] is False and attrs["lean.cache_miss_reason"] == "exploration"


def test_linked_calls_are_bounded(telemetry: _Telemetry, ledger: CostLedger) -> None:
    exporter = telemetry.exporter(max_linked_calls=2)
    records = [ledger.record_call(model="gpt-4o", usage=TokenUsage(input_tokens=i + 1)) for i in range(3)]
    for record in records:
        exporter.on_call(record)
    for record in records:
        exporter.on_savings(SavingsEvent(layer="output", model="gpt-4o", call_id=record.id,
                                         output_tokens_before=10, output_tokens_after=4))
    savings = telemetry.finished()[3:]
    assert [s.parent is not None for s in savings] == [False, True, True]  # the oldest was forgotten


def test_metrics_follow_the_conventions(telemetry: _Telemetry, ledger: CostLedger) -> None:
    exporter = telemetry.exporter()
    record = ledger.record_call(model="gpt-4o", provider="openai", usage=USAGE, latency_s=2.0, tenant="acme")
    exporter.on_call(record)
    event = ledger.record(SavingsEvent(layer="cache", model="gpt-4o", provider="openai", input_tokens_before=900,
                                       output_tokens_before=100, cache_hit=True, tenant="acme"))
    exporter.on_savings(event)
    points = telemetry.metric_points()
    usage = {p.attributes["gen_ai.token.type"]: p for p in points["gen_ai.client.token.usage"]}
    assert (usage["input"].sum, usage["output"].sum) == (1_500, 400)
    assert usage["input"].attributes["gen_ai.provider.name"] == "openai"
    assert "lean.tenant" not in usage["input"].attributes  # the standard metric keeps standard attributes
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.sum == 2.0
    (cost,) = points["lean.cost"]
    assert cost.value == pytest.approx(float(record.cost_usd or 0)) and cost.attributes["lean.tenant"] == "acme"
    saved = {p.attributes["gen_ai.token.type"]: p.value for p in points["lean.tokens.saved"]}
    assert saved == {"input": 900, "output": 100}
    (cost_saved,) = points["lean.cost.saved"]
    assert cost_saved.value == pytest.approx(float(event.cost_saved_usd or 0))
    assert cost_saved.attributes == {"lean.layer": "cache", "lean.model": "gpt-4o", "lean.tenant": "acme"}


def test_attribute_names_match_the_installed_semantic_conventions() -> None:
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv
    from opentelemetry.semconv._incubating.metrics import gen_ai_metrics

    for name in [n for n in a.__all__ if n.startswith("GEN_AI_")]:
        assert getattr(a, name) == getattr(semconv, name), name
    assert a.METRIC_TOKEN_USAGE == gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
    assert a.METRIC_OPERATION_DURATION == gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
    known = {v.value for v in semconv.GenAiProviderNameValues}
    assert set(a.SEMCONV_PROVIDER_NAMES.values()) <= known


class _BrokenProcessor(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("the telemetry backend is down")


def test_a_failing_exporter_never_breaks_the_ledger(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider()
    provider.add_span_processor(_BrokenProcessor())
    with CostLedger(":memory:", listeners=[OTelLedgerExporter(provider)]) as ledger:
        record = ledger.record_call(model="gpt-4o", provider="openai", usage=USAGE)
        event = ledger.record(SavingsEvent(layer="cache", model="gpt-4o", input_tokens_before=5, cache_hit=True))
        assert [c.id for c in ledger.calls()] == [record.id]
        assert [e.id for e in ledger.savings()] == [event.id]
    assert "the telemetry backend is down" in caplog.text


async def test_the_ledger_feeds_the_exporter_on_both_paths(telemetry: _Telemetry) -> None:
    with CostLedger(":memory:", listeners=[telemetry.exporter()]) as ledger:
        record = ledger.record_call(model="gpt-4o", provider="openai", usage=USAGE, latency_s=0.1)
        arecord = await ledger.arecord_call(model="gpt-4o", provider="openai", usage=USAGE)
        event = await ledger.arecord(SavingsEvent(layer="output", model="gpt-4o", call_id=arecord.id,
                                                  output_tokens_before=300, output_tokens_after=120))
    spans = telemetry.finished()
    assert [s.name for s in spans] == ["chat gpt-4o", "chat gpt-4o", "lean.savings output"]
    assert [s.attributes["lean.call_id"] for s in spans] == [record.id, arecord.id, arecord.id]  # type: ignore[index]
    assert spans[2].attributes["lean.cost_saved_usd"] == float(event.cost_saved_usd or 0)  # type: ignore[index]
    assert spans[2].parent is not None and spans[1].context is not None
    assert spans[2].parent.span_id == spans[1].context.span_id


@pytest.mark.parametrize(("option", "value"), [
    ("capture_tenant", "yes"), ("operation_name", "embeddings"), ("max_linked_calls", -1),
    ("max_linked_calls", True), ("legacy_system_attribute", 1),
])
def test_bad_options_name_the_parameter(option: str, value: object) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(InvalidParameterError, match=option):
        OTelLedgerExporter(**options)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.trace", None)
    with pytest.raises(MissingExtraError, match=r"lean-inference\[otel\]"):
        OTelLedgerExporter()


def test_importing_lean_core_does_not_import_opentelemetry() -> None:
    code = ("import sys, json; import lean_core, lean_core.telemetry, lean_core.ledger_listener; "
            "from lean_core.telemetry import OTelLedgerExporter; "
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_decimal_costs_become_floats(telemetry: _Telemetry, ledger: CostLedger) -> None:
    event = SavingsEvent(layer="template", model="m", input_tokens_before=10, input_tokens_after=12,
                         cost_saved_usd=Decimal("-0.000002"))
    telemetry.exporter().on_savings(event)
    attrs = dict(telemetry.finished()[0].attributes or {})
    assert attrs["lean.tokens_saved"] == -2 and attrs["lean.cost_saved_usd"] == -2e-06


def test_public_surface_is_pinned() -> None:
    import lean_core.telemetry

    assert set(lean_core.telemetry.__all__) == {"OTelLedgerExporter", "OperationName"}
