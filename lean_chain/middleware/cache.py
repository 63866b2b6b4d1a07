"""LeanCacheMiddleware: the lean-inference response cache around each model call of a LangChain agent."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage
from langchain_core.utils.function_calling import convert_to_openai_tool

from lean_chain._payload import PayloadCodec
from lean_chain.cache import LeanCache
from lean_chain.middleware._common import (
    CACHE_METADATA_KEY,
    check_tenant_key,
    model_labels,
    resolve_tenant,
    response_message,
    turns_of,
)
from lean_core.budget import finish_reason_of, is_truncated
from lean_core.cache.agent_key import agent_step_key
from lean_core.cache.answer_equivalence import AnswerEquivalence
from lean_core.cache.response_cache import CacheMode, ResponseCache
from lean_core.cache.types import CacheLookup, CacheNamespace, CacheStats, check_tenant
from lean_core.ledger import CostLedger

__all__ = ["CACHE_METADATA_KEY", "LeanCacheMiddleware"]

_log = logging.getLogger(__name__)
# Revived payloads may only build AI messages.
_CODEC = PayloadCodec(field="messages", allowed=[AIMessage], expected=AIMessage, owner="LeanCacheMiddleware")


@dataclass(frozen=True)
class _Step:
    """Where one model call lives in the cache (``namespace`` None: no tenant, not cached)."""

    prompt: str
    namespace: CacheNamespace | None
    model: str
    exact_only: bool


class LeanCacheMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Serve an agent's model calls from the lean-inference response cache, per tenant.

    Add it to ``create_agent(model, tools, middleware=[LeanCacheMiddleware(...)])``: each model
    call (each step of the agent loop) is looked up before the model is called and stored after.
    A hit returns the stored AIMessage: its text and its **tool calls exactly** (names, args and
    ids), so the agent runs the same tools as the first time (tools are never cached, only the
    model's decisions). The hit carries ``response_metadata["lean_cache"]`` and, as langchain-core
    marks its own cache hits, ``usage_metadata["total_cost"] == 0``; its message ``id`` is new,
    since LangGraph replaces a state message that has the same id.

    **The key** (:func:`lean_core.cache.agent_key.agent_step_key`): the system prompt, every
    message (text, tool calls by name and args, tool results by position; message and tool-call
    ids are left out, providers mint new ones on every run), the bound tools (names, descriptions,
    JSON schemas), ``tool_choice``, the model's identity with its settings (LangChain's
    ``llm_string``) and the tenant. Another tool set or another tenant is another namespace.
    Semantic hits (``mode="semantic"``) only ever reword the question of a conversation without
    tool activity (in practice: the first step); once a tool call or result is in the
    conversation, only an exact match is served.

    **Tenants** fail closed, as in :class:`~lean_chain.LeanCache`: the tenant is taken from
    :func:`lean_core.cache.tenant_scope`, the run's context (``context={"tenant": ...}``), the
    run's config metadata (``config={"metadata": {"tenant": ...}}``), then ``default_tenant``;
    with none, the call is neither served nor stored, and counted in ``stats.no_tenant``.

    **Never breaks a step**: a store or encoding failure is a miss or a skipped write (counted in
    ``stats``). Nothing is stored from a failed step: an exception, an answer cut by its budget
    (``finish_reason`` "length" and kin), a content filter, invalid tool calls. Steps with a
    ``response_format`` (structured output) are passed through uncached.

    Args:
        cache: the response cache; default a new :class:`~lean_core.cache.ResponseCache` over the
            default SQLite file.
        mode: ``"semantic"`` or ``"exact"`` (default ``"semantic"``, or ``cache``'s mode).
        ttl_s: seconds an entry may be served (> 0); None: the cache's default.
        default_tenant: namespace shared by calls whose tenant is not resolved (explicit opt-in);
            None: such calls are not cached.
        tenant_key: the context / metadata key naming the tenant.
        ledger: where hits (with the tokens they saved) and misses are recorded as layer "cache";
            only without ``cache`` (give a ``ResponseCache`` its own ledger instead).
        max_error_rate: δ in (0, 0.5]: semantic hits under an error budget instead of the static
            threshold (see :class:`~lean_chain.LeanCache`); only without ``cache``.
        answer_equivalence: with ``max_error_rate``, how a fresh answer is compared with a cached
            one; only without ``cache``.
    """

    def __init__(self, *, cache: ResponseCache | None = None, mode: CacheMode | None = None,
                 ttl_s: float | None = None, default_tenant: str | None = None, tenant_key: str = "tenant",
                 ledger: CostLedger | None = None, max_error_rate: float | None = None,
                 answer_equivalence: AnswerEquivalence | Callable[[str, str], bool] | None = None) -> None:
        super().__init__()
        check_tenant_key(tenant_key)
        # LeanCache validates the options and builds the ResponseCache exactly as the chat-model
        # cache does; this middleware shares its store and stats.
        self._lean = LeanCache(cache=cache, mode=mode, ttl_s=ttl_s, default_tenant=default_tenant,
                               tenant_key=tenant_key, ledger=ledger, max_error_rate=max_error_rate,
                               answer_equivalence=answer_equivalence)
        self.cache: ResponseCache = self._lean.cache
        """The response cache holding the entries."""
        self.ttl_s = ttl_s
        self.default_tenant = None if default_tenant is None else check_tenant(default_tenant, parameter="default_tenant")
        self.tenant_key = tenant_key

    @property
    def stats(self) -> CacheStats:
        """Lookups, hits, misses, writes, no-tenant and failure counts of :attr:`cache`."""
        return self.cache.stats

    # -- the hooks ------------------------------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> ModelResponse[Any]:
        step = self._step(request)
        if step is None:
            return handler(request)
        served = _served(self.cache.lookup(step.prompt, namespace=step.namespace, model=step.model,
                                           exact_only=step.exact_only))
        if served is not None:
            return served
        response = handler(request)
        planned = self._write_plan(step, response)
        if planned is not None:
            payload, input_tokens, output_tokens = planned
            self.cache.update(step.prompt, payload, namespace=step.namespace, ttl_s=self.ttl_s,
                              input_tokens=input_tokens, output_tokens=output_tokens, exact_only=step.exact_only)
        return response

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
                               ) -> ModelResponse[Any]:
        step = self._step(request)
        if step is None:
            return await handler(request)
        served = _served(await self.cache.alookup(step.prompt, namespace=step.namespace, model=step.model,
                                                  exact_only=step.exact_only))
        if served is not None:
            return served
        response = await handler(request)
        planned = self._write_plan(step, response)
        if planned is not None:
            payload, input_tokens, output_tokens = planned
            await self.cache.aupdate(step.prompt, payload, namespace=step.namespace, ttl_s=self.ttl_s,
                                     input_tokens=input_tokens, output_tokens=output_tokens,
                                     exact_only=step.exact_only)
        return response

    # -- keys and payloads ----------------------------------------------------------------------
    def _step(self, request: ModelRequest[Any]) -> _Step | None:
        """The step's cache key; None when the step is not cacheable (structured output) or keying
        failed (counted as a lookup error: the model answers)."""
        if request.response_format is not None:
            return None
        tenant = resolve_tenant(request.runtime, tenant_key=self.tenant_key, default_tenant=self.default_tenant)
        try:
            llm_string = request.model._get_llm_string(**request.model_settings)
            tools = [t if isinstance(t, dict) else convert_to_openai_tool(t) for t in request.tools]
            key = agent_step_key(turns_of(request.system_message, request.messages), model=llm_string,
                                 tools=tools, tool_choice=request.tool_choice)
        except Exception as exc:
            self.cache.report_failure("lookup", exc)
            return None
        model = model_labels(request.model)[0]
        return _Step(key.prompt, None if tenant is None else key.namespace(tenant), model, not key.semantic)

    def _write_plan(self, step: _Step, response: ModelResponse[Any]) -> tuple[str, int, int] | None:
        """(payload, input tokens, output tokens) to store, or None: no tenant, a failed step, or
        serialising failed (counted as a store error)."""
        if step.namespace is None:
            return None
        message = response_message(response)
        if message is None or not _storable(response, message):
            return None
        try:
            payload = _CODEC.encode(response.result)
        except Exception as exc:
            self.cache.report_failure("store", exc)
            return None
        if payload is None:  # something in the step LangChain cannot serialise (logged)
            return None
        usage = message.usage_metadata
        if usage is None:
            return payload, 0, 0
        return payload, int(usage["input_tokens"]), int(usage["output_tokens"])

    def __repr__(self) -> str:
        return f"LeanCacheMiddleware(mode={self.cache.mode!r}, tenant_key={self.tenant_key!r})"


def _storable(response: ModelResponse[Any], message: AIMessage) -> bool:
    """Only a complete, well-formed step is stored: one AIMessage, no structured output, no
    invalid tool calls, not cut by a budget or a content filter."""
    if response.structured_response is not None or len(response.result) != 1 or message.invalid_tool_calls:
        return False
    reason = finish_reason_of(message.response_metadata or {})
    return not (is_truncated(reason) or (reason or "").lower() in ("content_filter", "error"))


def _served(result: CacheLookup) -> ModelResponse[Any] | None:
    """The cached step as a response, or None (a miss, or a payload that does not revive)."""
    messages = None if result.entry is None else _CODEC.decode(result.entry.payload)
    if messages is None:
        return None
    hit = {"hit": result.kind, "similarity": result.similarity}
    return ModelResponse(result=[_as_hit(m, hit) for m in messages])


def _as_hit(message: AIMessage, hit: dict[str, Any]) -> AIMessage:
    usage = message.usage_metadata
    return message.model_copy(update={
        "id": f"lean-cache-{uuid.uuid4().hex}",
        "response_metadata": {**(message.response_metadata or {}), CACHE_METADATA_KEY: hit},
        "usage_metadata": None if usage is None else {**usage, "total_cost": 0},
    })
