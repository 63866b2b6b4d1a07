"""LeanPipeline: cache → template → compression → output budget → model, recorded in the ledger.

The pipeline is framework-free: the model is a :class:`PipelineModel` port (local vLLM engine,
vLLM server, or a LangChain / LlamaIndex chat model through the adapters in ``lean_backends``,
``lean_chain`` and ``lean_index``). Every layer can be switched off in :class:`PipelineSettings`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast, get_args

from lean_core.budget import (
    BudgetOptions,
    BudgetSession,
    EarlyStopReason,
    EarlyStopRule,
    ModelAnswer,
    with_brevity,
)
from lean_core.cache.normalize import prompt_key
from lean_core.cache.tenancy import prefix_salt_scope
from lean_core.cache.types import CacheLookup, CacheNamespace
from lean_core.compression.base import Compressor
from lean_core.compression.types import CompressionBudget
from lean_core.errors import InvalidParameterError
from lean_core.generation import ChatMessageDict
from lean_core.ledger import CostLedger
from lean_core.ledger_records import CacheMissReason, OutputLengthRecord, SavingsEvent
from lean_core.pipeline._calls import (
    NO_TENANT_NOTE,
    budget_call,
    cache_failed,
    fill_template,
    merged_reply,
    note_no_tenant,
    resolve_tenant,
    savings_event,
    shareable,
)
from lean_core.pipeline._single_flight import Flight, FlightKey, SingleFlight
from lean_core.pipeline.settings import PipelineSettings
from lean_core.pipeline.types import (
    LayerStep,
    ModelCall,
    ModelReply,
    PipelineCache,
    PipelineModel,
    PipelineRequest,
    PipelineResult,
    as_messages,
)
from lean_core.templates import PromptSpec, render_prompt
from lean_core.tokens import TokenCounter
from lean_core.usage import TokenUsage

__all__ = ["LeanPipeline"]

_PASSAGE_SEPARATOR = "\n\n"


@dataclass
class _Work:
    """One request on its way through the layers (shared by the sync and async paths)."""

    request: PipelineRequest
    tenant: str | None
    """None: no tenant resolved, so the cache is neither read nor written (fail closed)."""
    started: float
    steps: list[LayerStep] = field(default_factory=list)
    context: str = ""
    messages: tuple[ChatMessageDict, ...] = ()
    session: BudgetSession | None = None
    baseline_input: int = 0
    baseline_output: int = 0
    cache_miss_reason: CacheMissReason | None = None
    """Why the cache served nothing (recorded with the ledger's cache miss)."""


@dataclass(frozen=True)
class _Answered:
    """The model's answer to one request and its accounting, computed before any ledger or cache I/O."""

    reply: ModelReply
    reference: TokenUsage
    baseline: TokenUsage
    truncated: bool
    output_event: SavingsEvent | None
    """The output layer's savings (budget on), priced at the reference model; call id not yet set."""
    length: OutputLengthRecord | None


@dataclass(frozen=True)
class _Served:
    """An answer served without a model call (cache hit or coalesced), with its savings event."""

    result: PipelineResult
    event: SavingsEvent


class LeanPipeline:
    """Answer requests through the enabled layers; every call lands in the ledger per layer.

    Args:
        model: the model port (see :class:`PipelineModel`).
        settings: the layers' switches and options (default: all on).
        ledger: where calls and per-layer savings are recorded (optional).
        cache: a :class:`PipelineCache` such as ``ResponseCache`` (e.g. on PostgreSQL); default one
            from ``settings.cache``.
        compressor: a ``Compressor`` to use; default one from ``settings.compression.method``.

    With the cache on, a request identical to one still at the model (same tenant, same
    normalised question) waits for that answer instead of a second model call ("single flight"),
    on the sync and async paths alike, and is reported as an exact hit. If that call fails, the
    requests waiting for it call the model themselves.

    **Tenant**: ``PipelineRequest.tenant``, else :func:`lean_core.cache.tenant_scope` active in the
    caller's context, else ``PipelineSettings.tenant``. A request without one fails closed: it is
    not served from or stored into the cache, never coalesced with another request, and its model
    calls get a prefix-cache salt of their own (:func:`lean_core.cache.prefix_salt_scope`); its
    cache step reads "no tenant" and its ledger records carry no tenant. The cache never breaks a
    request: a cache that raises is a miss (lookup) or a skipped write (store), logged.

    Example::

        pipeline = LeanPipeline(model=EngineModel.local(), settings=PipelineSettings(), ledger=CostLedger())
        result = pipeline.invoke(PipelineRequest(question="When was it founded?", context=passages))
    """

    def __init__(self, model: PipelineModel, *, settings: PipelineSettings | None = None,
                 ledger: CostLedger | None = None, cache: PipelineCache | None = None,
                 compressor: Compressor | None = None, token_counter: TokenCounter | None = None) -> None:
        if not isinstance(model, PipelineModel):
            raise InvalidParameterError("model", allowed="a PipelineModel (model_name, complete, acomplete)",
                                        received=type(model).__name__)
        if cache is not None and not isinstance(cache, PipelineCache):
            raise InvalidParameterError("cache", allowed="a PipelineCache such as ResponseCache "
                                        "(lookup, alookup, update, aupdate)", received=type(cache).__name__)
        self.model = model
        self.settings = settings or PipelineSettings()
        self.ledger = ledger
        self._cache = cache
        self._compressor = compressor
        self.counter = token_counter or TokenCounter()
        self._budget_options = BudgetOptions(
            brevity=self.settings.budget.brevity,
            early_stop=EarlyStopRule() if self.settings.budget.early_stop else None,
            on_truncation=self.settings.budget.on_truncation, min_tokens=self.settings.budget.min_tokens,
            max_tokens=self.settings.budget.max_tokens, fact_sentences=self.settings.budget.fact_sentences)
        s = self.settings.template
        self._spec = PromptSpec(role=s.role, task=s.task, constraints=s.constraints,
                                context="Context:\n{context}", question="Question: {question}")
        # Requests at the model, which identical ones (same tenant and key) wait for.
        self._flights: SingleFlight[PipelineResult] = SingleFlight()
        identity = f"{model.model_name}\n{self.settings.fingerprint()}\n{self.settings.cache.scope}"
        self._cache_identity = "lean-pipeline:" + hashlib.sha256(identity.encode()).hexdigest()[:32]

    # -- lazily built parts ------------------------------------------------------------------
    @property
    def cache(self) -> PipelineCache:
        if self._cache is None:
            from lean_core.cache import ResponseCache, SQLiteCacheStore

            c = self.settings.cache
            store = SQLiteCacheStore(c.path) if c.path else None
            self._cache = ResponseCache(store, mode=c.mode, ttl_s=c.ttl_s, ledger=None, max_error_rate=c.max_error_rate)
        return self._cache

    @property
    def compressor(self) -> Compressor:
        if self._compressor is None:
            from lean_core.compression import compressor_for

            method = self.settings.compression.method
            self._compressor = compressor_for("lean+llmlingua" if method == "coarse-to-fine" else method)
        return self._compressor

    # -- public API --------------------------------------------------------------------------
    def invoke(self, request: PipelineRequest | str) -> PipelineResult:
        """Answer one request (a bare str is a question without context)."""
        work = self._start(request)
        served = self._lookup(work)
        if served is not None:
            return self._recorded(served)
        flight: Flight[PipelineResult] | None = None
        key = self._flight_key(work)
        if key is not None:
            flight, leading = self._flights.join_or_lead(key)
            if not leading:
                shared = self._flights.wait(flight)
                if shared is not None:
                    return self._recorded(self._coalesced(work, shared))
                flight = self._flights.lead(key)
        result: PipelineResult | None = None
        try:
            self._prepare(work)
            answered = self._answered(work, self._run_model(work))
            if self.ledger is not None:
                call = self.ledger.record_call(model=self.model.model_name, usage=answered.reply.usage,
                                               tenant=work.tenant, tags=("lean-pipeline",),
                                               latency_s=time.perf_counter() - work.started)
                for event in self._savings(work, answered, call.id):
                    self.ledger.record(event)
                if answered.length is not None:
                    self.ledger.record_output_length(answered.length)
            namespace = self._namespace(work)
            if namespace is not None and self._cacheable(answered):
                try:
                    self.cache.update(work.request.question, answered.reply.text, namespace=namespace,
                                      input_tokens=answered.reference.input_tokens,
                                      output_tokens=answered.reference.output_tokens)
                except Exception as exc:  # the answer is paid for: it reaches the caller regardless
                    cache_failed("store", exc)
            result = self._result(work, answered)
            return result
        finally:
            self._flights.land(flight, shareable(result))

    async def ainvoke(self, request: PipelineRequest | str) -> PipelineResult:
        """Async :meth:`invoke`: model, cache and ledger I/O are awaited; CPU-bound layers run in a thread."""
        work = self._start(request)
        served = await self._alookup(work)
        if served is not None:
            return await self._arecorded(served)
        flight: Flight[PipelineResult] | None = None
        key = self._flight_key(work)
        if key is not None:
            flight, leading = self._flights.join_or_lead(key)
            if not leading:
                shared = await self._flights.await_(flight)
                if shared is not None:
                    return await self._arecorded(self._coalesced(work, shared))
                flight = self._flights.lead(key)
        result: PipelineResult | None = None
        try:
            await asyncio.to_thread(self._prepare, work)
            reply = await self._arun_model(work)
            answered = await asyncio.to_thread(self._answered, work, reply)
            if self.ledger is not None:
                call = await self.ledger.arecord_call(model=self.model.model_name, usage=answered.reply.usage,
                                                      tenant=work.tenant, tags=("lean-pipeline",),
                                                      latency_s=time.perf_counter() - work.started)
                for event in self._savings(work, answered, call.id):
                    await self.ledger.arecord(event)
                if answered.length is not None:
                    await self.ledger.arecord_output_length(answered.length)
            namespace = self._namespace(work)
            if namespace is not None and self._cacheable(answered):
                try:
                    await self.cache.aupdate(work.request.question, answered.reply.text, namespace=namespace,
                                             input_tokens=answered.reference.input_tokens,
                                             output_tokens=answered.reference.output_tokens)
                except Exception as exc:
                    cache_failed("store", exc)
            result = self._result(work, answered)
            return result
        finally:
            # On failure or cancellation too: the followers then call the model themselves.
            self._flights.land(flight, shareable(result))

    def batch(self, requests: Sequence[PipelineRequest | str]) -> list[PipelineResult]:
        """Requests in order (a later request may hit the cache entry an earlier one wrote)."""
        return [self.invoke(r) for r in requests]

    async def abatch(self, requests: Sequence[PipelineRequest | str]) -> list[PipelineResult]:
        return [await self.ainvoke(r) for r in requests]

    # -- served without a model call -----------------------------------------------------------
    def _recorded(self, served: _Served) -> PipelineResult:
        if self.ledger is not None:
            self.ledger.record(served.event)
        return served.result

    async def _arecorded(self, served: _Served) -> PipelineResult:
        if self.ledger is not None:
            await self.ledger.arecord(served.event)
        return served.result

    def _hit_event(self, work: _Work, input_tokens: int, output_tokens: int) -> SavingsEvent:
        # A hit saves the whole call: "before" is what it would have cost, "after" nothing.
        return SavingsEvent(layer="cache", model=self.settings.price_model, input_tokens_before=input_tokens,
                            output_tokens_before=output_tokens, cache_hit=True, tenant=work.tenant)

    def _flight_key(self, work: _Work) -> FlightKey | None:
        # Only with the cache on and a tenant: coalescing serves one answer for another, as a cache
        # hit does, so a request without a tenant shares with no one.
        if not self.settings.cache.enabled or work.tenant is None:
            return None
        return work.tenant, prompt_key(work.request.question)

    def _coalesced(self, work: _Work, shared: PipelineResult) -> _Served:
        tokens_in, tokens_out = shared.reference_usage.input_tokens, shared.reference_usage.output_tokens
        step = LayerStep(layer="cache", input_tokens_before=tokens_in, output_tokens_before=tokens_out,
                         note="exact (joined the identical request in flight)")
        result = PipelineResult(answer=shared.answer, tenant=work.tenant, cache_hit="exact", steps=(step,),
                                latency_s=time.perf_counter() - work.started)
        return _Served(result, self._hit_event(work, tokens_in, tokens_out))

    # -- stages ------------------------------------------------------------------------------
    def _start(self, request: PipelineRequest | str) -> _Work:
        if isinstance(request, str):
            request = PipelineRequest(question=request)
        elif not isinstance(request, PipelineRequest):
            raise InvalidParameterError("request", allowed="a PipelineRequest or a question str",
                                        received=type(request).__name__)
        return _Work(request=request, tenant=resolve_tenant(request.tenant, self.settings.tenant),
                     started=time.perf_counter())

    def _namespace(self, work: _Work) -> CacheNamespace | None:
        return None if work.tenant is None else CacheNamespace(tenant=work.tenant, llm=self._cache_identity)

    def _lookup_namespace(self, work: _Work) -> CacheNamespace | None:
        """Where to look ``work`` up; None when the cache is off or no tenant was resolved (noted)."""
        if not self.settings.cache.enabled:
            return None
        namespace = self._namespace(work)
        if namespace is None:
            note_no_tenant(self.cache, work.request.question)
            work.steps.append(LayerStep(layer="cache", note=NO_TENANT_NOTE))
            work.cache_miss_reason = "no_tenant"
        return namespace

    def _lookup(self, work: _Work) -> _Served | None:
        started = time.perf_counter()
        namespace = self._lookup_namespace(work)
        if namespace is None:
            return None
        try:
            found: CacheLookup | None = self.cache.lookup(work.request.question, namespace=namespace)
        except Exception as exc:  # a broken cache is a miss, never a failed request
            cache_failed("lookup", exc)
            found = None
        return self._served(work, found, time.perf_counter() - started)

    async def _alookup(self, work: _Work) -> _Served | None:
        started = time.perf_counter()
        namespace = self._lookup_namespace(work)
        if namespace is None:
            return None
        try:
            found: CacheLookup | None = await self.cache.alookup(work.request.question, namespace=namespace)
        except Exception as exc:
            cache_failed("lookup", exc)
            found = None
        return self._served(work, found, time.perf_counter() - started)

    def _served(self, work: _Work, found: CacheLookup | None, seconds: float) -> _Served | None:
        entry = None if found is None else found.entry
        if found is None or entry is None:
            work.steps.append(LayerStep(layer="cache", seconds=seconds, note="miss"))
            work.cache_miss_reason = "lookup_error" if found is None else found.miss_reason
            return None
        step = LayerStep(layer="cache", input_tokens_before=entry.input_tokens, output_tokens_before=entry.output_tokens,
                         seconds=seconds, note=found.kind)
        result = PipelineResult(answer=entry.payload, tenant=work.tenant, cache_hit=found.kind, steps=(step,),
                                latency_s=time.perf_counter() - work.started)
        return _Served(result, self._hit_event(work, entry.input_tokens, entry.output_tokens))

    def _count(self, text: str) -> int:
        return self.counter.count(text, self.settings.price_model).tokens

    def _count_messages(self, messages: Sequence[ChatMessageDict]) -> int:
        pairs = [(m["role"], m["content"]) for m in messages]
        return self.counter.count_messages(pairs, self.settings.price_model).tokens

    def _baseline_messages(self, context: str, question: str, *, rag: bool) -> tuple[ChatMessageDict, ...]:
        # Without retrieved context an un-optimised call is the question alone.
        if not rag:
            return as_messages([("user", question)])
        return as_messages([("user", fill_template(self.settings.baseline_template, context, question))])

    def _prepare(self, work: _Work) -> None:
        """Compression, template and budget: the messages and the output plan."""
        s, question = self.settings, work.request.question
        passages = list(work.request.context)
        rag = bool(passages)
        full_context = _PASSAGE_SEPARATOR.join(passages)
        work.baseline_input = self._count_messages(self._baseline_messages(full_context, question, rag=rag))
        work.context = full_context
        if s.compression.enabled and rag:
            started = time.perf_counter()
            result = self.compressor.compress(passages, question=question,
                                              budget=self._compression_budget(full_context))
            work.context = result.text
            work.steps.append(LayerStep(layer="compression", input_tokens_before=result.original_tokens,
                                        input_tokens_after=result.compressed_tokens,
                                        seconds=time.perf_counter() - started, note=result.method))
        messages = self._baseline_messages(work.context, question, rag=rag)
        if s.template.enabled and rag:
            before = self._count_messages(messages)
            rendered = render_prompt(self._spec, {"context": work.context, "question": question},
                                     model=s.price_model, counter=self.counter)
            messages = tuple(rendered.to_dicts())
            work.steps.append(LayerStep(layer="template", input_tokens_before=before,
                                        input_tokens_after=self._count_messages(messages)))
        if s.budget.enabled:
            work.session = BudgetSession(question, self._budget_options)
            instruction = work.session.plan.brevity_instruction
            last: ChatMessageDict = {"role": messages[-1]["role"],
                                     "content": with_brevity(messages[-1]["content"], instruction)}
            messages = (*messages[:-1], last)
            work.baseline_output = work.session.plan.baseline_tokens
        work.messages = messages

    def _compression_budget(self, context: str) -> CompressionBudget:
        c, model = self.settings.compression, self.settings.price_model
        if c.target_tokens is not None:
            return CompressionBudget(target_tokens=c.target_tokens, target_model=model)
        if c.ratio == "auto":  # auto under the ceiling: the lower of max_ratio and max_tokens
            budget = CompressionBudget(ratio=c.max_ratio, auto=True, target_model=model)
            if c.max_tokens is not None and budget.tokens_for(self._count(context)) > c.max_tokens:
                return CompressionBudget(target_tokens=c.max_tokens, auto=True, target_model=model)
            return budget
        return CompressionBudget(ratio=c.ratio, target_model=model)

    def _calls(self, work: _Work) -> ModelCall:
        if work.session is None:
            return ModelCall(messages=work.messages, max_tokens=self.settings.baseline_max_tokens)
        return budget_call(work.messages, work.session.first_request())

    def _run_model(self, work: _Work) -> ModelReply:
        started = time.perf_counter()
        call = self._calls(work)
        replies: list[ModelReply] = []
        # The engine's prefix cache is partitioned like the response cache (see prefix_salt_scope).
        with prefix_salt_scope(work.tenant):
            while True:
                reply = self.model.complete(call)
                replies.append(reply)
                follow = self._follow_up(work, reply)
                if follow is None:
                    break
                call = follow
        return merged_reply(replies, time.perf_counter() - started)

    async def _arun_model(self, work: _Work) -> ModelReply:
        started = time.perf_counter()
        call = self._calls(work)
        replies: list[ModelReply] = []
        with prefix_salt_scope(work.tenant):
            while True:
                reply = await self.model.acomplete(call)
                replies.append(reply)
                follow = self._follow_up(work, reply)
                if follow is None:
                    break
                call = follow
        return merged_reply(replies, time.perf_counter() - started)

    def _follow_up(self, work: _Work, reply: ModelReply) -> ModelCall | None:
        if work.session is None:
            return None
        early = reply.early_stop if reply.early_stop in get_args(EarlyStopReason) else None
        request = work.session.on_answer(ModelAnswer(text=reply.text, finish_reason=reply.finish_reason,
                                                     output_tokens=reply.usage.output_tokens,
                                                     early_stop=cast("EarlyStopReason | None", early)))
        return None if request is None else budget_call(work.messages, request)

    def _answered(self, work: _Work, reply: ModelReply) -> _Answered:
        """Count the answer in the reference model's tokens and settle the budget's accounting
        (CPU only: the async path runs it in a thread)."""
        output_ref = self._count(reply.text)
        reference = TokenUsage(input_tokens=self._count_messages(work.messages), output_tokens=output_ref,
                               source="estimate")
        finish = reply.finish_reason
        truncated = finish is not None and finish.lower() in ("length", "max_tokens")
        output_event, length = None, None
        if work.session is not None:
            outcome = work.session.outcome
            truncated = outcome.truncated
            work.steps.append(LayerStep(layer="output", output_tokens_before=outcome.baseline_tokens,
                                        output_tokens_after=outcome.output_tokens,
                                        note=f"max_tokens={outcome.max_tokens}" + (
                                            f", early_stop={outcome.early_stop}" if outcome.early_stop else "")))
            if self.ledger is not None:
                event, length = work.session.records(model=self.model.model_name, tenant=work.tenant)
                output_event = savings_event(event, model=self.settings.price_model)
        baseline = TokenUsage(input_tokens=work.baseline_input,
                              output_tokens=work.baseline_output or output_ref, source="estimate")
        return _Answered(reply=reply, reference=reference, baseline=baseline, truncated=truncated,
                         output_event=output_event, length=length)

    def _cacheable(self, answered: _Answered) -> bool:
        # A cut or empty answer is not worth serving again; single flight shares by the same rule.
        return self.settings.cache.enabled and not answered.truncated and bool(answered.reply.text.strip())

    def _savings(self, work: _Work, answered: _Answered, call_id: str) -> list[SavingsEvent]:
        """The per-layer savings of one model call, each tied to its ledger call record."""
        price_model = self.settings.price_model
        events: list[SavingsEvent] = []
        for step in work.steps:
            if step.layer in ("compression", "template"):
                events.append(SavingsEvent(layer=step.layer, model=price_model, tenant=work.tenant,
                                           input_tokens_before=step.input_tokens_before,
                                           input_tokens_after=step.input_tokens_after, call_id=call_id))
            elif step.layer == "cache":
                events.append(SavingsEvent(layer="cache", model=price_model, tenant=work.tenant, cache_hit=False,
                                           miss_reason=work.cache_miss_reason, call_id=call_id))
        if answered.output_event is not None:
            events.append(answered.output_event.model_copy(update={"call_id": call_id}))
        return events

    def _result(self, work: _Work, answered: _Answered) -> PipelineResult:
        reply = answered.reply
        return PipelineResult(answer=reply.text, tenant=work.tenant, messages=work.messages, usage=reply.usage,
                              reference_usage=answered.reference, baseline_reference_usage=answered.baseline,
                              finish_reason=reply.finish_reason, truncated=answered.truncated,
                              steps=tuple(work.steps), model_seconds=reply.seconds or 0.0,
                              latency_s=time.perf_counter() - work.started)
