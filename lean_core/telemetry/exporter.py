"""OTelLedgerExporter: every ledger record as OpenTelemetry GenAI spans (and metrics).

A ledger listener (:class:`lean_core.ledger_listener.LedgerListener`): attach it with
``CostLedger(..., listeners=[OTelLedgerExporter()])`` and every call recorded from LangChain,
LlamaIndex or the pipeline also leaves as an OpenTelemetry span, through whatever exporter the
application configured (OTLP to a collector, LangSmith, Langfuse, Grafana, Datadog...).

**Calls.** One ``CLIENT`` span per model call, named ``"{gen_ai.operation.name} {model}"``, with
the GenAI semantic-convention attributes (model, provider, input/output/cache-read/cache-creation/
reasoning tokens) and cost under ``lean.*``. It ends at the record's timestamp (the ledger stamps a
call when it finishes) and starts ``latency_s`` earlier (zero length when the latency is unknown).

**Savings.** One short ``INTERNAL`` span per savings record, named ``"lean.savings {layer}"``,
carrying the layer, tokens before/after/saved and the saved cost. Why a span and not an event on
the call's span: a span's events must be added before it ends, and the ledger hands over a
savings record only after the call's record (the pipeline links them by ``call_id``) or before any
call exists (compression runs before the model; a cache hit never reaches it), so the call's span
is never open when its savings arrive. A savings span whose ``call_id`` names a call this exporter
has seen is made that call's child, so trace views show it under the call; otherwise it joins the
current context (e.g. the request span of an instrumented web app), or starts a trace. It carries
no ``gen_ai.*`` attributes: GenAI-aware backends would count it as one more model call.

**Metrics** (when a meter provider is configured): ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` as the conventions define them, the counter ``lean.cost``
(USD) and the up-down counters ``lean.cost.saved`` (USD) and ``lean.tokens.saved`` (net, per layer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from lean_core._extras import require
from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import CallRecord, SavingsEvent
from lean_core.telemetry import attributes as a

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import SpanContext, TracerProvider

__all__ = ["OTelLedgerExporter", "OperationName", "call_attributes", "savings_attributes"]

OperationName = Literal["chat", "text_completion", "generate_content"]
"""The GenAI ``gen_ai.operation.name`` values a ledger call can stand for."""
_OPERATIONS: tuple[OperationName, ...] = ("chat", "text_completion", "generate_content")
_INSTRUMENTATION_NAME = "lean_inference"
# The conventions' advisory bucket boundaries for these two histograms.
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


def provider_name(provider: str | None) -> str | None:
    """The conventions' ``gen_ai.provider.name`` for a ledger provider id (unknown ones unchanged)."""
    if provider is None:
        return None
    return a.SEMCONV_PROVIDER_NAMES.get(provider, provider)


def _usd(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _without_none(attributes: dict[str, Any]) -> dict[str, Any]:
    # OTel drops None attribute values with a warning; leave them out instead.
    return {k: v for k, v in attributes.items() if v is not None}


def call_attributes(record: CallRecord, *, operation_name: OperationName = "chat", capture_tenant: bool = True,
                    legacy_system_attribute: bool = True) -> dict[str, Any]:
    """The span attributes of one call record (pure: no OpenTelemetry import)."""
    usage = record.usage
    provider = provider_name(record.provider)
    attributes: dict[str, Any] = {
        a.GEN_AI_OPERATION_NAME: operation_name,
        a.GEN_AI_PROVIDER_NAME: provider,
        a.GEN_AI_SYSTEM: provider if legacy_system_attribute else None,
        # The ledger keeps one model name: the response's when the provider reported it.
        a.GEN_AI_REQUEST_MODEL: record.model,
        a.GEN_AI_RESPONSE_MODEL: record.model,
        a.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        a.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
        a.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: usage.cached_input_tokens,
        a.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: usage.cache_write_tokens,
        a.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: usage.reasoning_tokens,
        a.LEAN_CACHE_WRITE_1H_TOKENS: usage.cache_write_1h_tokens or None,
        a.LEAN_USAGE_SOURCE: usage.source,
        a.LEAN_PRICED: record.priced,
        a.LEAN_COST_USD: _usd(record.cost_usd),
        a.LEAN_INPUT_COST_USD: _usd(record.input_cost_usd),
        a.LEAN_OUTPUT_COST_USD: _usd(record.output_cost_usd),
        a.LEAN_UNPRICED_REASON: record.unpriced_reason,
        a.LEAN_TENANT: record.tenant if capture_tenant else None,
        a.LEAN_TAGS: list(record.tags) or None,
        a.LEAN_CALL_ID: record.id,
        a.LEAN_RUN_ID: record.run_id,
    }
    return _without_none(attributes)


def savings_attributes(event: SavingsEvent, *, capture_tenant: bool = True) -> dict[str, Any]:
    """The span attributes of one savings record (pure: no OpenTelemetry import)."""
    before = event.input_tokens_before + event.output_tokens_before
    after = event.input_tokens_after + event.output_tokens_after
    attributes: dict[str, Any] = {
        a.LEAN_LAYER: event.layer,
        a.LEAN_MODEL: event.model,
        a.LEAN_INPUT_TOKENS_BEFORE: event.input_tokens_before,
        a.LEAN_INPUT_TOKENS_AFTER: event.input_tokens_after,
        a.LEAN_INPUT_TOKENS_SAVED: event.input_tokens_saved,
        a.LEAN_OUTPUT_TOKENS_BEFORE: event.output_tokens_before,
        a.LEAN_OUTPUT_TOKENS_AFTER: event.output_tokens_after,
        a.LEAN_OUTPUT_TOKENS_SAVED: event.output_tokens_saved,
        a.LEAN_TOKENS_BEFORE: before,
        a.LEAN_TOKENS_AFTER: after,
        a.LEAN_TOKENS_SAVED: before - after,
        a.LEAN_COST_SAVED_USD: _usd(event.cost_saved_usd),
        a.LEAN_CACHE_HIT: event.cache_hit,
        a.LEAN_CACHE_MISS_REASON: event.miss_reason,
        a.LEAN_TENANT: event.tenant if capture_tenant else None,
        a.LEAN_CALL_ID: event.call_id,
        a.LEAN_SAVINGS_ID: event.id,
    }
    return _without_none(attributes)


def _unix_ns(moment: datetime) -> int:
    if moment.tzinfo is None:  # the ledger stores UTC; a naive stamp is read as such
        moment = moment.replace(tzinfo=UTC)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    # Integer arithmetic: a float of seconds since 1970 loses the sub-microsecond digits.
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


class OTelLedgerExporter:
    """Sends every call and savings record of a :class:`~lean_core.CostLedger` to OpenTelemetry.

    Implements :class:`~lean_core.ledger_listener.LedgerListener`: pass it in
    ``CostLedger(..., listeners=[...])``. Needs ``pip install 'lean-inference[otel]'``; the
    constructor raises :class:`~lean_core.errors.MissingExtraError` naming the extra otherwise.

    Args:
        tracer_provider: where spans go; None uses the global provider (``trace.set_tracer_provider``),
            as OpenTelemetry instrumentations do.
        meter_provider: where the token, duration, cost and savings metrics go; None uses the
            global provider (a no-op until the application configures one).
        capture_tenant: write ``lean.tenant`` on spans and ``lean.*`` metrics. Turn it off when
            tenant ids must not leave the process or would make metric cardinality too high.
        operation_name: ``gen_ai.operation.name`` of every call span. The ledger does not record
            which API a call used; ``"chat"`` fits chat models, ``"text_completion"`` completion LLMs.
        legacy_system_attribute: also write the deprecated ``gen_ai.system`` (same value as
            ``gen_ai.provider.name``), which several backends still read.
        max_linked_calls: how many recent call spans are remembered so that later savings records
            with their ``call_id`` become their children (>= 0; 0 never links).
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        capture_tenant: bool = True,
        operation_name: OperationName = "chat",
        legacy_system_attribute: bool = True,
        max_linked_calls: int = 4096,
    ) -> None:
        feature = "OpenTelemetry export (OTelLedgerExporter)"
        trace_api = require("opentelemetry.trace", extra="otel", feature=feature)
        metrics_api = require("opentelemetry.metrics", extra="otel", feature=feature)
        for name, flag in (("capture_tenant", capture_tenant), ("legacy_system_attribute", legacy_system_attribute)):
            if not isinstance(flag, bool):
                raise InvalidParameterError(name, allowed="True or False", received=flag)
        if operation_name not in _OPERATIONS:
            raise InvalidParameterError("operation_name", allowed=f"one of {list(_OPERATIONS)}",
                                        received=operation_name)
        if isinstance(max_linked_calls, bool) or not isinstance(max_linked_calls, int) or max_linked_calls < 0:
            raise InvalidParameterError("max_linked_calls", allowed="an int >= 0", received=max_linked_calls)
        self.capture_tenant = capture_tenant
        self.operation_name: OperationName = operation_name
        self.legacy_system_attribute = legacy_system_attribute
        self.max_linked_calls = max_linked_calls
        self._trace = trace_api
        from lean_core import __version__

        self._tracer = trace_api.get_tracer(_INSTRUMENTATION_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics_api.get_meter(_INSTRUMENTATION_NAME, __version__, meter_provider=meter_provider)
        self._token_usage = meter.create_histogram(
            a.METRIC_TOKEN_USAGE, unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS))
        self._duration = meter.create_histogram(
            a.METRIC_OPERATION_DURATION, unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS))
        self._cost = meter.create_counter(a.METRIC_COST, unit="USD", description="Cost of priced model calls.")
        # Up-down counters: a layer can cost tokens on a request (a lean template longer than the
        # prompt it replaced), and the net is what a dashboard must add up.
        self._cost_saved = meter.create_up_down_counter(
            a.METRIC_COST_SAVED, unit="USD", description="Net cost saved by each lean-inference layer.")
        self._tokens_saved = meter.create_up_down_counter(
            a.METRIC_TOKENS_SAVED, unit="{token}", description="Net tokens saved by each lean-inference layer.")
        self._recent_calls: OrderedDict[str, SpanContext] = OrderedDict()
        self._lock = threading.Lock()

    # -- LedgerListener ------------------------------------------------------------------------
    def on_call(self, record: CallRecord) -> None:
        """Emit the span (and metrics) of one stored call."""
        attributes = call_attributes(record, operation_name=self.operation_name, capture_tenant=self.capture_tenant,
                                     legacy_system_attribute=self.legacy_system_attribute)
        end = _unix_ns(record.timestamp)
        start = end - round(record.latency_s * 1e9) if record.latency_s is not None else end
        span = self._tracer.start_span(f"{self.operation_name} {record.model}", kind=self._trace.SpanKind.CLIENT,
                                       start_time=start, attributes=attributes)
        span.end(end_time=end)
        self._remember(record.id, span.get_span_context())
        self._call_metrics(record, attributes)

    def on_savings(self, event: SavingsEvent) -> None:
        """Emit the span (and metrics) of one stored savings record."""
        parent = self._linked_call(event.call_id)
        context = None if parent is None else self._trace.set_span_in_context(self._trace.NonRecordingSpan(parent))
        moment = _unix_ns(event.timestamp)
        span = self._tracer.start_span(f"lean.savings {event.layer}", context=context,
                                       kind=self._trace.SpanKind.INTERNAL, start_time=moment,
                                       attributes=savings_attributes(event, capture_tenant=self.capture_tenant))
        span.end(end_time=moment)
        self._savings_metrics(event)

    # -- helpers --------------------------------------------------------------------------------
    def _remember(self, call_id: str, context: SpanContext) -> None:
        if self.max_linked_calls == 0 or not context.is_valid:
            return
        with self._lock:
            self._recent_calls[call_id] = context
            while len(self._recent_calls) > self.max_linked_calls:
                self._recent_calls.popitem(last=False)

    def _linked_call(self, call_id: str | None) -> SpanContext | None:
        if call_id is None:
            return None
        with self._lock:
            return self._recent_calls.get(call_id)

    def _tenant(self, tenant: str | None) -> dict[str, str]:
        return {a.LEAN_TENANT: tenant} if self.capture_tenant and tenant is not None else {}

    @staticmethod
    def _with(attributes: dict[str, Any], key: str, value: str) -> dict[str, Any]:
        return {**attributes, key: value}

    def _call_metrics(self, record: CallRecord, span_attributes: dict[str, Any]) -> None:
        keys: tuple[str, ...] = (a.GEN_AI_OPERATION_NAME, a.GEN_AI_PROVIDER_NAME, a.GEN_AI_REQUEST_MODEL,
                                 a.GEN_AI_RESPONSE_MODEL)
        standard: dict[str, Any] = {k: span_attributes[k] for k in keys if k in span_attributes}
        for token_type, tokens in (("input", record.usage.input_tokens), ("output", record.usage.output_tokens)):
            self._token_usage.record(tokens, self._with(standard, a.GEN_AI_TOKEN_TYPE, token_type))
        if record.latency_s is not None:
            self._duration.record(record.latency_s, standard)
        if record.cost_usd is not None:
            self._cost.add(float(record.cost_usd), {**standard, **self._tenant(record.tenant)})

    def _savings_metrics(self, event: SavingsEvent) -> None:
        labels: dict[str, Any] = {a.LEAN_LAYER: event.layer, a.LEAN_MODEL: event.model,
                                  **self._tenant(event.tenant)}
        for token_type, saved in (("input", event.input_tokens_saved), ("output", event.output_tokens_saved)):
            if saved:
                self._tokens_saved.add(saved, self._with(labels, a.GEN_AI_TOKEN_TYPE, token_type))
        if event.cost_saved_usd:
            self._cost_saved.add(float(event.cost_saved_usd), labels)
