"""The two kinds of rows the cost ledger holds: LLM calls and per-layer savings events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal, get_args

from pydantic import ConfigDict, Field, StrictInt, model_validator

from lean_core._validation import ParameterCheckedModel
from lean_core.errors import InvalidParameterError
from lean_core.usage import TokenUsage

__all__ = ["CACHE_MISS_REASONS", "LAYERS", "CacheMissReason", "CallRecord", "Layer", "OutputLengthRecord",
           "SavingsEvent"]

Layer = Literal["compression", "template", "pruning", "output", "cache"]
"""The layers that attribute savings: input compression, lean templates, model pruning,
output budgets and response caching."""
LAYERS: tuple[Layer, ...] = ("compression", "template", "pruning", "output", "cache")

CacheMissReason = Literal["no_tenant", "lookup_error", "no_entry", "vetoed", "below_threshold", "look_alike",
                          "uncertain", "exploration", "evidence_rebuilt"]
"""Why a cache lookup served nothing (the deciding candidate is the nearest one no hard veto refused):

* ``no_tenant``: no tenant could be resolved, so nothing was looked up (the cache fails closed).
* ``lookup_error``: the store, the embedder or the encoding failed; answered as a miss.
* ``no_entry``: no exact entry, and no semantic candidate near enough (or an exact-only lookup).
* ``vetoed``: every candidate was refused by a hard veto (numbers, entities, negation, roles, ...).
* ``below_threshold``: without an error budget, the static verifier's probability was too low.
* ``look_alike``: with an error budget, the entry has a wrong answer at a similarity this close.
* ``uncertain``: with an error budget, too little evidence to serve and too weak to explore.
* ``exploration``: with an error budget, the model is called and its answer compared with the
  cached one (an exploration of an uncertain candidate, or an audit of a would-be hit): what
  learning the boundary costs.
* ``evidence_rebuilt``: the store found its evidence damaged and rebuilt it; nothing was served.
"""
CACHE_MISS_REASONS: tuple[CacheMissReason, ...] = get_args(CacheMissReason)


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class CallRecord(ParameterCheckedModel):
    """One LLM call as the ledger stores it (a bad field raises InvalidParameterError naming it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=_new_id)
    timestamp: datetime = Field(default_factory=_now)
    model: str = Field(min_length=1)
    provider: str | None = None
    usage: TokenUsage
    latency_s: float | None = Field(None, ge=0, allow_inf_nan=False)
    """Wall-clock seconds from request to last token, when known."""
    priced: bool = False
    input_cost_usd: Decimal | None = None
    output_cost_usd: Decimal | None = None
    cost_usd: Decimal | None = None
    """Total cost; None (never 0) when the model is unpriced."""
    unpriced_reason: str | None = None
    tenant: str | None = None
    tags: tuple[str, ...] = ()
    run_id: str | None = None
    """The framework's run id (LangChain run_id, LlamaIndex span id), for joining traces."""

    @model_validator(mode="after")
    def _priced_has_cost(self) -> CallRecord:
        if self.priced and self.cost_usd is None:
            raise InvalidParameterError("cost_usd", allowed="a Decimal for a priced call", received=None)
        if not self.priced and self.cost_usd is not None:
            raise InvalidParameterError("cost_usd", allowed="None for an unpriced call", received=self.cost_usd)
        return self


class SavingsEvent(ParameterCheckedModel):
    """What one layer saved (or, for a cache miss, failed to save) on one request.

    Token counts are in the target model's tokens. A cache hit saves the whole call:
    ``*_before`` are the tokens the call would have used and ``*_after`` are 0.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=_new_id)
    timestamp: datetime = Field(default_factory=_now)
    layer: Layer
    model: str = Field(min_length=1)
    provider: str | None = None
    input_tokens_before: StrictInt = Field(0, ge=0)
    input_tokens_after: StrictInt = Field(0, ge=0)
    output_tokens_before: StrictInt = Field(0, ge=0)
    output_tokens_after: StrictInt = Field(0, ge=0)
    cache_hit: bool | None = None
    """For the cache layer: hit (True) or miss (False); None for other layers."""
    miss_reason: CacheMissReason | None = None
    """For a cache miss: why nothing was served (``exploration`` marks what exploring costs);
    None for hits, other layers, and misses recorded before reasons were (ledger schema < 4)."""
    cost_saved_usd: Decimal | None = None
    """Price of the tokens saved at the model's prices; None when the model is unpriced."""
    tenant: str | None = None
    call_id: str | None = None
    """The CallRecord this event belongs to, when there is one (a cache hit has none)."""

    @model_validator(mode="after")
    def _reason_is_a_cache_miss(self) -> SavingsEvent:
        if self.miss_reason is not None and (self.layer != "cache" or self.cache_hit is not False):
            raise InvalidParameterError("miss_reason", allowed="None except on a cache miss (layer 'cache', "
                                        "cache_hit False)", received=self.miss_reason)
        return self

    @property
    def input_tokens_saved(self) -> int:
        return self.input_tokens_before - self.input_tokens_after

    @property
    def output_tokens_saved(self) -> int:
        return self.output_tokens_before - self.output_tokens_after


class OutputLengthRecord(ParameterCheckedModel):
    """One answer's real length with the features of its query (never the query's text): the
    history the length predictor is refreshed from (``LengthPredictor.refreshed``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=_new_id)
    timestamp: datetime = Field(default_factory=_now)
    model: str = Field(min_length=1)
    feature_version: str
    features: tuple[float, ...]
    output_tokens: StrictInt = Field(ge=0)
    max_tokens: StrictInt | None = Field(None, ge=1)
    """The budget the request was sent with."""
    finish_reason: str | None = None
    """``"length"`` marks an answer cut by its budget (its natural length is unknown)."""
    tenant: str | None = None
