"""The pipeline's helpers around the model call: building calls, merging replies, savings events,
and the tenant rule (who a request belongs to; a cache failure never fails a request)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from lean_core.budget import BudgetRequest
from lean_core.cache.tenancy import current_tenant
from lean_core.cache.types import check_tenant
from lean_core.generation import ChatMessageDict
from lean_core.ledger_records import SavingsEvent
from lean_core.pipeline.types import ModelCall, ModelReply, PipelineResult
from lean_core.usage import TokenUsage

__all__ = ["NO_TENANT_NOTE", "budget_call", "cache_failed", "fill_template", "merged_reply", "note_no_tenant",
           "resolve_tenant", "savings_event", "shareable"]

NO_TENANT_NOTE = "no tenant: not cached"
"""The cache step's note on a request without a tenant (neither served nor stored)."""
_log = logging.getLogger("lean_core.pipeline")
_warned: set[tuple[str, str]] = set()


def fill_template(template: str, context: str, question: str) -> str:
    # str.replace, not str.format: contexts and questions may hold braces.
    return template.replace("{context}", context or "(none)").replace("{question}", question)


def budget_call(messages: tuple[ChatMessageDict, ...], request: BudgetRequest) -> ModelCall:
    if request.continue_from is not None:
        messages = (*messages, {"role": "assistant", "content": request.continue_from},
                    {"role": "user", "content": request.continue_instruction})
    return ModelCall(messages=messages, max_tokens=request.max_tokens, stop=request.stop,
                     early_stop=request.early_stop)


def merged_reply(replies: list[ModelReply], seconds: float) -> ModelReply:
    """One reply for a request's calls (a continuation adds a second): the texts joined, the
    usages summed, the last call's finish reason, and the wall time of them all."""
    usage = TokenUsage(
        input_tokens=sum(r.usage.input_tokens for r in replies),
        cached_input_tokens=sum(r.usage.cached_input_tokens for r in replies),
        cache_write_tokens=sum(r.usage.cache_write_tokens for r in replies),
        cache_write_1h_tokens=sum(r.usage.cache_write_1h_tokens for r in replies),
        output_tokens=sum(r.usage.output_tokens for r in replies),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in replies),
        source=replies[-1].usage.source)
    last = replies[-1]
    return ModelReply(text="".join(r.text for r in replies), finish_reason=last.finish_reason, usage=usage,
                      early_stop=last.early_stop, seconds=seconds)


def savings_event(event: SavingsEvent | Mapping[str, Any], *, model: str) -> SavingsEvent:
    """A layer helper's savings event, priced at ``model`` (the pipeline's reference model: the
    served model may have no price).

    Helpers return a :class:`SavingsEvent`; older ones returned ``record_savings`` keywords,
    which are accepted too while both kinds are in the tree.
    """
    if isinstance(event, SavingsEvent):
        return event.model_copy(update={"model": model})
    if isinstance(event, Mapping):
        return SavingsEvent(**{**event, "model": model})
    raise TypeError(f"a savings event must be a SavingsEvent, not {type(event).__name__}")


def shareable(result: PipelineResult | None) -> PipelineResult | None:
    """``result`` when it may be served for an identical request (the same rule as caching it:
    a complete, non-empty answer), else None."""
    if result is None or result.truncated or not result.answer.strip():
        return None
    return result


def resolve_tenant(requested: str | None, configured: str | None) -> str | None:
    """The request's tenant: its own, else the caller's :func:`~lean_core.cache.tenant_scope`, else
    the settings' (an explicit shared namespace); None when there is none (fail closed). A tenant
    that is given but invalid raises rather than falling back to another."""
    for tenant in (requested, current_tenant(), configured):
        if tenant is not None:
            return check_tenant(tenant)
    return None


def note_no_tenant(cache: object, question: str) -> None:
    """Count a request without a tenant in a ResponseCache's stats (``no_tenant``): its lookup
    without a namespace touches no store. Other caches offer no such counter."""
    from lean_core.cache.response_cache import ResponseCache

    if isinstance(cache, ResponseCache):
        cache.lookup(question, namespace=None)


def cache_failed(operation: Literal["lookup", "store"], exc: Exception) -> None:
    """Log a failure of the pipeline's cache (a miss or a skipped write, never a failed request):
    a warning on the first failure of each kind, debug afterwards."""
    kind = (operation, type(exc).__name__)
    first = kind not in _warned
    _warned.add(kind)
    message = "pipeline cache %s failed (%s: %.200s); the request goes on without the cache"
    if first:
        _log.warning(message, operation, kind[1], exc)
    else:
        _log.debug(message, operation, kind[1], exc)
