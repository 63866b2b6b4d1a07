"""LeanLedgerMiddleware: every model call of a LangChain agent recorded in the cost ledger."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

from lean_chain.middleware._common import (
    CACHE_METADATA_KEY,
    check_tenant_key,
    model_labels,
    request_messages,
    resolve_tenant,
    response_message,
)
from lean_core._validation import check_tags
from lean_core.agent_step import AgentStepUsage, prompt_cache_saved_usd
from lean_core.cache.types import check_tenant
from lean_core.call_tracker import CallTracker
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.ledger_records import CallRecord
from lean_core.tokens import TokenCounter

__all__ = ["LeanLedgerMiddleware"]


class LeanLedgerMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Record every model call of an agent (each step of its loop) in a :class:`~lean_core.CostLedger`.

    Each call becomes one ledger row (``CallRecord``) with the provider's usage: input tokens,
    input tokens served from the provider's prompt cache, output and reasoning tokens (from the
    AIMessage's ``usage_metadata``; counted with the model's tokenizer and marked so when the
    provider reports none), latency, tenant, and the tags ``agent`` and ``step:N`` (N = 1 for the
    first call after the person's message, 2 after the first tool round, ...). A step answered by
    :class:`LeanCacheMiddleware` is not a paid call and gets no row.

    **Attribution, one writer per fact.** Each layer records what it saved where it knows it, in
    the same ledger, as the Runnables do outside agents: give the ledger to
    ``LeanCacheMiddleware`` (layer "cache": hits with the tokens they saved, misses),
    ``LeanCompressMiddleware`` (layer "compression": tokens before and after) and
    ``LeanBudgetMiddleware`` (layer "output": predicted vs generated tokens). This middleware
    writes what was actually paid, which only the call itself shows; the provider's prompt cache
    needs no event of its own: its tokens are on the call row, priced at the cache-read rate, and
    :attr:`steps` carries what it saved per step (``prompt_cache_saved_usd``). Place it first
    (outermost) so it sees every call the other middleware make, continuations included.

    Args:
        ledger: the ledger; default a :class:`~lean_core.CostLedger` at its default path.
        tenant_key: the context / metadata key naming the tenant.
        default_tenant: the tenant of calls whose tenant is not resolved (a label only here).
        token_counter: counts tokens when the provider reports no usage.
        tags: tags on every row, before ``step:N``.
    """

    def __init__(self, ledger: CostLedger | None = None, *, tenant_key: str = "tenant",
                 default_tenant: str | None = None, token_counter: TokenCounter | None = None,
                 tags: Iterable[str] = ("agent",)) -> None:
        super().__init__()
        if ledger is not None and not isinstance(ledger, CostLedger):
            raise InvalidParameterError("ledger", allowed="a lean_core.CostLedger or None", received=type(ledger).__name__)
        self.ledger: CostLedger = ledger if ledger is not None else CostLedger()
        self.tenant_key = check_tenant_key(tenant_key)
        self.default_tenant = None if default_tenant is None else check_tenant(default_tenant, parameter="default_tenant")
        self.tags = check_tags("tags", tags)
        self._tracker = CallTracker(self.ledger, token_counter=token_counter, default_tenant=self.default_tenant)
        self._lock = threading.Lock()
        self.steps: list[AgentStepUsage] = []
        """Every step this instance saw, in completion order (cache hits included)."""

    @property
    def records(self) -> list[CallRecord]:
        """The ledger rows this instance wrote, in completion order."""
        return [s.call for s in self.steps if s.call is not None]

    # -- the hooks ------------------------------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> ModelResponse[Any]:
        run_id, step = self._start(request)
        try:
            response = handler(request)
        except BaseException:
            self._tracker.discard(run_id)
            raise
        self._finish(run_id, step, request, response)
        return response

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
                               ) -> ModelResponse[Any]:
        run_id, step = self._start(request)
        try:
            response = await handler(request)
        except BaseException:
            self._tracker.discard(run_id)
            raise
        await asyncio.to_thread(self._finish, run_id, step, request, response)
        return response

    # -- helpers --------------------------------------------------------------------------------
    def _start(self, request: ModelRequest[Any]) -> tuple[str, int]:
        run_id = uuid.uuid4().hex
        step = _step_number(request.messages)
        model, provider = model_labels(request.model)
        tenant = resolve_tenant(request.runtime, tenant_key=self.tenant_key)
        self._tracker.start(run_id, model=model, provider=provider, tenant=tenant,
                            prompt_texts=[f"{m.type}: {m.text}" for m in request_messages(request)],
                            tags=(*self.tags, f"step:{step}"))
        return run_id, step

    def _finish(self, run_id: str, step: int, request: ModelRequest[Any], response: ModelResponse[Any]) -> None:
        message = response_message(response)
        if message is not None and CACHE_METADATA_KEY in (message.response_metadata or {}):
            self._tracker.discard(run_id)
            self._append(AgentStepUsage(step=step, call=None, cache_hit=True, prompt_cache_saved_usd=Decimal(0)))
            return
        metadata = (message.response_metadata or {}) if message is not None else {}
        model = metadata.get("model_name") or metadata.get("model")
        record = self._tracker.finish(run_id, usage=None if message is None else message.usage_metadata,
                                      output_texts=[] if message is None else [message.text],
                                      model=model if isinstance(model, str) and model else None)
        if record is not None:
            self._append(AgentStepUsage(step=step, call=record, cache_hit=False,
                                        prompt_cache_saved_usd=prompt_cache_saved_usd(record)))

    def _append(self, step: AgentStepUsage) -> None:
        with self._lock:
            self.steps.append(step)

    def __repr__(self) -> str:
        return f"LeanLedgerMiddleware(ledger={self.ledger!r})"


def _step_number(messages: list[Any]) -> int:
    """1 + the model calls already made since the last human message."""
    count = 0
    for message in reversed(messages):
        if message.type == "human":
            break
        count += message.type == "ai"
    return count + 1
