"""One agent step as the ledger sees it: the paid call (or a cache hit) and what the provider's
prompt cache saved on it.

The response cache, compression and output budgets record their savings as ledger events of
their own layers. The provider's prompt (prefix) cache has no event: its saving is already in the
call's usage (``cached_input_tokens``, priced at the cache-read rate), so it is computed from the
call record here, as the difference between the same usage priced with and without the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import CallRecord
from lean_core.pricing import PriceQuote, price_usage

__all__ = ["AgentStepUsage", "prompt_cache_saved_usd"]


def prompt_cache_saved_usd(call: CallRecord, *, pricer: Callable[..., PriceQuote] = price_usage) -> Decimal | None:
    """What the prompt cache saved on ``call``: its usage priced as if no input token had been
    cached, minus its price as it was. ``Decimal(0)`` with no cached tokens; None when the model
    is unpriced."""
    if not isinstance(call, CallRecord):
        raise InvalidParameterError("call", allowed="a lean_core.CallRecord", received=type(call).__name__)
    if call.usage.cached_input_tokens == 0:
        return Decimal(0)
    uncached = call.usage.model_copy(update={"cached_input_tokens": 0})
    actual = pricer(call.usage, call.model, provider=call.provider, at=call.timestamp)
    baseline = pricer(uncached, call.model, provider=call.provider, at=call.timestamp)
    if not (actual.priced and baseline.priced) or actual.total_cost_usd is None or baseline.total_cost_usd is None:
        return None
    return baseline.total_cost_usd - actual.total_cost_usd


@dataclass(frozen=True)
class AgentStepUsage:
    """One model call of an agent run."""

    step: int
    """1 for the first model call after the person's message, 2 after the first tool round, ..."""
    call: CallRecord | None
    """The ledger's record of the paid call; None when the response cache answered the step."""
    cache_hit: bool
    """True when the response cache answered the step (its saving is the cache layer's event)."""
    prompt_cache_saved_usd: Decimal | None = None
    """What the provider's prompt cache saved on the call (see :func:`prompt_cache_saved_usd`)."""

    @property
    def cached_input_tokens(self) -> int:
        """Input tokens the provider served from its prompt cache (0 for a cache hit)."""
        return 0 if self.call is None else self.call.usage.cached_input_tokens

    def as_dict(self) -> dict[str, Any]:
        """Plain data for logs and JSON."""
        return {"step": self.step, "cache_hit": self.cache_hit, "cached_input_tokens": self.cached_input_tokens,
                "call_id": None if self.call is None else self.call.id,
                "prompt_cache_saved_usd": None if self.prompt_cache_saved_usd is None
                else str(self.prompt_cache_saved_usd)}
