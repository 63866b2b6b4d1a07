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
from typing import Any

from lean_core.budget import (
    BudgetOptions,
    BudgetRequest,
    BudgetSession,
    EarlyStopRule,
    ModelAnswer,
    with_brevity,
)
from lean_core.cache.normalize import prompt_key
from lean_core.cache.types import CacheLookup, CacheNamespace
from lean_core.compression.base import Compressor
from lean_core.compression.types import CompressionBudget
from lean_core.errors import InvalidParameterError
from lean_core.generation import ChatMessageDict
from lean_core.ledger import CostLedger
from lean_core.pipeline.settings import PipelineSettings
from lean_core.pipeline.types import (
    LayerStep,
    ModelCall,
    ModelReply,
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
    tenant: str
    started: float
    steps: list[LayerStep] = field(default_factory=list)
    context: str = ""
    messages: tuple[ChatMessageDict, ...] = ()
    session: BudgetSession | None = None
    baseline_input: int = 0
    baseline_output: int = 0


class LeanPipeline:
    """Answer requests through the enabled layers; every call lands in the ledger per layer.

    Args:
        model: the model port (see :class:`PipelineModel`).
        settings: the layers' switches and options (default: all on).
        ledger: where calls and per-layer savings are recorded (optional).
        cache: a ``ResponseCache`` to use (e.g. on PostgreSQL); default one from ``settings.cache``.
        compressor: a ``Compressor`` to use; default one from ``settings.compression.method``.

    Example::

        pipeline = LeanPipeline(model=EngineModel.local(), settings=PipelineSettings(), ledger=CostLedger())
        result = pipeline.invoke(PipelineRequest(question="When was it founded?", context=passages))
    """

    def __init__(self, model: PipelineModel, *, settings: PipelineSettings | None = None,
                 ledger: CostLedger | None = None, cache: Any | None = None,
                 compressor: Compressor | None = None, token_counter: TokenCounter | None = None) -> None:
        if not isinstance(model, PipelineModel):
            raise InvalidParameterError("model", allowed="a PipelineModel (model_name, complete, acomplete)",
                                        received=type(model).__name__)
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
            max_tokens=self.settings.budget.max_tokens)
        s = self.settings.template
        self._spec = PromptSpec(role=s.role, task=s.task, constraints=s.constraints,
                                context="Context:\n{context}", question="Question: {question}")
        # Async requests waiting on an identical one already at the model (same tenant and key).
        self._inflight: dict[tuple[str, str], asyncio.Future[PipelineResult]] = {}
        identity = f"{model.model_name}\n{self.settings.fingerprint()}\n{self.settings.cache.scope}"
        self._cache_identity = "lean-pipeline:" + hashlib.sha256(identity.encode()).hexdigest()[:32]

    # -- lazily built parts ------------------------------------------------------------------
    @property
    def cache(self) -> Any:
        if self._cache is None:
            from lean_core.cache import ResponseCache, SQLiteCacheStore

            c = self.settings.cache
            store = SQLiteCacheStore(c.path) if c.path else None
            self._cache = ResponseCache(store, mode=c.mode, ttl_s=c.ttl_s, ledger=None)
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
        hit = self._lookup(work)
        if hit is not None:
            return hit
        self._prepare(work)
        answer_text, usage, finish, early, seconds = self._run_model(work)
        return self._finish(work, answer_text, usage, finish, early, seconds)

    async def ainvoke(self, request: PipelineRequest | str) -> PipelineResult:
        """Async :meth:`invoke`: model, cache and ledger I/O are awaited; CPU-bound layers run in a thread.

        With the cache on, a request identical to one still at the model (same tenant, same
        normalised question) waits for that answer instead of a second model call ("single
        flight"), and is reported as an exact hit.
        """
        work = self._start(request)
        hit = await self._alookup(work)
        if hit is not None:
            return hit
        key = (work.tenant, prompt_key(work.request.question)) if self.settings.cache.enabled else None
        if key is not None and key in self._inflight:
            try:
                shared: PipelineResult | None = await asyncio.shield(self._inflight[key])
            except (Exception, asyncio.CancelledError):  # the first caller failed: ask the model ourselves
                shared = None
            if shared is not None and not shared.truncated:
                return self._coalesced(work, shared)
        future: asyncio.Future[PipelineResult] | None = None
        if key is not None and key not in self._inflight:
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
        try:
            await asyncio.to_thread(self._prepare, work)
            answer_text, usage, finish, early, seconds = await self._arun_model(work)
            result = await asyncio.to_thread(self._finish, work, answer_text, usage, finish, early, seconds)
        except BaseException as exc:
            if future is not None:
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                    future.exception()  # waiters fall back to their own call; keep the loop's log quiet
                else:
                    future.cancel()
            raise
        finally:
            if future is not None and key is not None and self._inflight.get(key) is future:
                del self._inflight[key]
        if future is not None:
            future.set_result(result)
        return result

    def _coalesced(self, work: _Work, shared: PipelineResult) -> PipelineResult:
        tokens_in, tokens_out = shared.reference_usage.input_tokens, shared.reference_usage.output_tokens
        step = LayerStep(layer="cache", input_tokens_before=tokens_in, output_tokens_before=tokens_out,
                         note="exact (joined the identical request in flight)")
        if self.ledger is not None:
            self.ledger.record_savings(layer="cache", model=self.settings.price_model, input_tokens_before=tokens_in,
                                       output_tokens_before=tokens_out, cache_hit=True, tenant=work.tenant)
        return PipelineResult(answer=shared.answer, tenant=work.tenant, cache_hit="exact", steps=(step,),
                              latency_s=time.perf_counter() - work.started)

    def batch(self, requests: Sequence[PipelineRequest | str]) -> list[PipelineResult]:
        """Requests in order (a later request may hit the cache entry an earlier one wrote)."""
        return [self.invoke(r) for r in requests]

    async def abatch(self, requests: Sequence[PipelineRequest | str]) -> list[PipelineResult]:
        return [await self.ainvoke(r) for r in requests]

    # -- stages ------------------------------------------------------------------------------
    def _start(self, request: PipelineRequest | str) -> _Work:
        if isinstance(request, str):
            request = PipelineRequest(question=request)
        elif not isinstance(request, PipelineRequest):
            raise InvalidParameterError("request", allowed="a PipelineRequest or a question str",
                                        received=type(request).__name__)
        return _Work(request=request, tenant=request.tenant or self.settings.tenant, started=time.perf_counter())

    def _namespace(self, work: _Work) -> CacheNamespace:
        return CacheNamespace(tenant=work.tenant, llm=self._cache_identity)

    def _lookup(self, work: _Work) -> PipelineResult | None:
        if not self.settings.cache.enabled:
            return None
        started = time.perf_counter()
        found = self.cache.lookup(work.request.question, namespace=self._namespace(work))
        return self._served(work, found, time.perf_counter() - started)

    async def _alookup(self, work: _Work) -> PipelineResult | None:
        if not self.settings.cache.enabled:
            return None
        started = time.perf_counter()
        found = await self.cache.alookup(work.request.question, namespace=self._namespace(work))
        return self._served(work, found, time.perf_counter() - started)

    def _served(self, work: _Work, found: CacheLookup, seconds: float) -> PipelineResult | None:
        entry = found.entry
        if entry is None:
            work.steps.append(LayerStep(layer="cache", seconds=seconds, note="miss"))
            return None
        step = LayerStep(layer="cache", input_tokens_before=entry.input_tokens, output_tokens_before=entry.output_tokens,
                         seconds=seconds, note=found.kind)
        if self.ledger is not None:
            self.ledger.record_savings(layer="cache", model=self.settings.price_model,
                                       input_tokens_before=entry.input_tokens, output_tokens_before=entry.output_tokens,
                                       cache_hit=True, tenant=work.tenant)
        return PipelineResult(answer=entry.payload, tenant=work.tenant, cache_hit=found.kind, steps=(step,),
                              latency_s=time.perf_counter() - work.started)

    def _count(self, text: str) -> int:
        return self.counter.count(text, self.settings.price_model).tokens

    def _count_messages(self, messages: Sequence[ChatMessageDict]) -> int:
        pairs = [(m["role"], m["content"]) for m in messages]
        return self.counter.count_messages(pairs, self.settings.price_model).tokens

    def _baseline_messages(self, context: str, question: str, *, rag: bool) -> tuple[ChatMessageDict, ...]:
        # Without retrieved context an un-optimised call is the question alone.
        if not rag:
            return as_messages([("user", question)])
        return as_messages([("user", _fill(self.settings.baseline_template, context, question))])

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
            c = s.compression
            result = self.compressor.compress(passages, question=question, budget=CompressionBudget(
                ratio=None if c.target_tokens else c.ratio, target_tokens=c.target_tokens,
                target_model=s.price_model))
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

    def _calls(self, work: _Work) -> ModelCall:
        if work.session is None:
            return ModelCall(messages=work.messages, max_tokens=self.settings.baseline_max_tokens)
        return _budget_call(work.messages, work.session.first_request())

    def _run_model(self, work: _Work) -> tuple[str, TokenUsage, str | None, str | None, float]:
        started = time.perf_counter()
        call = self._calls(work)
        replies: list[ModelReply] = []
        while True:
            reply = self.model.complete(call)
            replies.append(reply)
            follow = self._follow_up(work, reply)
            if follow is None:
                break
            call = follow
        return _merge(replies, time.perf_counter() - started)

    async def _arun_model(self, work: _Work) -> tuple[str, TokenUsage, str | None, str | None, float]:
        started = time.perf_counter()
        call = self._calls(work)
        replies: list[ModelReply] = []
        while True:
            reply = await self.model.acomplete(call)
            replies.append(reply)
            follow = self._follow_up(work, reply)
            if follow is None:
                break
            call = follow
        return _merge(replies, time.perf_counter() - started)

    def _follow_up(self, work: _Work, reply: ModelReply) -> ModelCall | None:
        if work.session is None:
            return None
        request = work.session.on_answer(ModelAnswer(text=reply.text, finish_reason=reply.finish_reason,
                                                     output_tokens=reply.usage.output_tokens))
        return None if request is None else _budget_call(work.messages, request)

    def _finish(self, work: _Work, text: str, usage: TokenUsage, finish: str | None, early: str | None,
                seconds: float) -> PipelineResult:
        s = self.settings
        output_ref = self._count(text)
        reference = TokenUsage(input_tokens=self._count_messages(work.messages), output_tokens=output_ref,
                               source="estimate")
        truncated = finish is not None and finish.lower() in ("length", "max_tokens")
        if work.session is not None:
            outcome = work.session.outcome
            truncated = outcome.truncated
            work.steps.append(LayerStep(layer="output", output_tokens_before=outcome.baseline_tokens,
                                        output_tokens_after=outcome.output_tokens,
                                        note=f"max_tokens={outcome.max_tokens}"))
        baseline = TokenUsage(input_tokens=work.baseline_input,
                              output_tokens=work.baseline_output or output_ref, source="estimate")
        if self.ledger is not None:
            self._record(work, usage)
        if s.cache.enabled and not truncated and text.strip():
            self.cache.update(work.request.question, text, namespace=self._namespace(work),
                              input_tokens=reference.input_tokens, output_tokens=reference.output_tokens)
        return PipelineResult(answer=text, tenant=work.tenant, messages=work.messages, usage=usage,
                              reference_usage=reference, baseline_reference_usage=baseline, finish_reason=finish,
                              truncated=truncated, steps=tuple(work.steps), model_seconds=seconds,
                              latency_s=time.perf_counter() - work.started)

    def _record(self, work: _Work, usage: TokenUsage) -> None:
        assert self.ledger is not None
        s = self.settings
        call = self.ledger.record_call(model=self.model.model_name, usage=usage, tenant=work.tenant,
                                       tags=("lean-pipeline",), latency_s=time.perf_counter() - work.started)
        for step in work.steps:
            if step.layer in ("compression", "template"):
                self.ledger.record_savings(layer=step.layer, model=s.price_model, tenant=work.tenant,
                                           input_tokens_before=step.input_tokens_before,
                                           input_tokens_after=step.input_tokens_after, call_id=call.id)
            elif step.layer == "cache":
                self.ledger.record_savings(layer="cache", model=s.price_model, tenant=work.tenant, cache_hit=False,
                                           call_id=call.id)
        if work.session is not None:
            event, length = work.session.records(model=self.model.model_name, tenant=work.tenant)
            # Priced at the reference model like the other layers (the served model may have no price).
            self.ledger.record_savings(**{**event, "model": s.price_model, "call_id": call.id})
            self.ledger.record_output_length(length)


def _fill(template: str, context: str, question: str) -> str:
    # str.replace, not str.format: contexts and questions may hold braces.
    return template.replace("{context}", context or "(none)").replace("{question}", question)


def _budget_call(messages: tuple[ChatMessageDict, ...], request: BudgetRequest) -> ModelCall:
    if request.continue_from is not None:
        messages = (*messages, {"role": "assistant", "content": request.continue_from},
                    {"role": "user", "content": request.continue_instruction})
    return ModelCall(messages=messages, max_tokens=request.max_tokens, stop=request.stop,
                     early_stop=request.early_stop)


def _merge(replies: list[ModelReply], seconds: float) -> tuple[str, TokenUsage, str | None, str | None, float]:
    usage = TokenUsage(
        input_tokens=sum(r.usage.input_tokens for r in replies),
        cached_input_tokens=sum(r.usage.cached_input_tokens for r in replies),
        output_tokens=sum(r.usage.output_tokens for r in replies),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in replies),
        source=replies[-1].usage.source)
    last = replies[-1]
    return "".join(r.text for r in replies), usage, last.finish_reason, last.early_stop, seconds
