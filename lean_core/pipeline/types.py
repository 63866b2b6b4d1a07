"""What goes into the pipeline, what the model port exchanges, and what comes out."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Sequence
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lean_core.budget import EarlyStopRule
from lean_core.cache.types import CacheLookup, CacheNamespace, HitKind
from lean_core.generation import ChatMessageDict
from lean_core.usage import TokenUsage

__all__ = ["LayerStep", "ModelCall", "ModelReply", "PipelineCache", "PipelineModel", "PipelineRequest",
           "PipelineResult", "SaltedPrefixCacheModel"]

StepLayer = Literal["cache", "template", "compression", "output"]


# A lone surrogate (a str code point in U+D800..U+DFFF: JSON's "\\ud800" escape decodes to one)
# cannot be encoded as UTF-8, so neither pydantic nor any model client accepts it. The request
# carries U+FFFD in its place, as a UTF-8 decoder would, and the model still answers.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _well_formed(value: object) -> object:
    return _LONE_SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value


class PipelineRequest(BaseModel):
    """One question, with the retrieved context it should be answered from (if any)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    context: tuple[str, ...] = ()
    """Retrieved passages, best first or in document order; empty for a plain question."""
    tenant: str | None = None
    """Overrides ``PipelineSettings.tenant`` for this request."""

    @field_validator("question", mode="before")
    @classmethod
    def _question_text(cls, value: object) -> object:
        return _well_formed(value)

    @field_validator("question")
    @classmethod
    def _non_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question must hold text")
        return value

    @field_validator("context", mode="before")
    @classmethod
    def _passages(cls, value: object) -> object:
        if isinstance(value, str):
            return (_well_formed(value),)
        if isinstance(value, list | tuple):
            return tuple(_well_formed(v) for v in value)
        return value


class ModelCall(BaseModel):
    """What the pipeline asks the model for."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    messages: tuple[ChatMessageDict, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()
    early_stop: EarlyStopRule | None = None


class ModelReply(BaseModel):
    """What the model returned: text, why it ended, and provider-reported usage."""

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: str | None
    usage: TokenUsage
    early_stop: str | None = None
    seconds: float | None = Field(None, ge=0)
    """Wall-clock seconds the call took, when measured. Model ports may leave it None; the
    pipeline measures its model calls (continuations included) and fills it in."""


@runtime_checkable
class PipelineModel(Protocol):
    """The model at the end of the pipeline: the local vLLM engine, a vLLM server, or any
    LangChain / LlamaIndex chat model through their adapters."""

    @property
    def model_name(self) -> str: ...

    def complete(self, call: ModelCall) -> ModelReply: ...

    def acomplete(self, call: ModelCall) -> Awaitable[ModelReply]: ...


@runtime_checkable
class PipelineCache(Protocol):
    """What the pipeline needs from its response cache (:class:`~lean_core.cache.ResponseCache`
    on SQLite or PostgreSQL satisfies it): tenant-scoped lookups and writes, each sync and async.

    The pipeline reads only ``CacheLookup.entry`` and ``CacheLookup.kind`` and ignores what the
    writes return.
    """

    def lookup(self, prompt: str, *, namespace: CacheNamespace) -> CacheLookup: ...

    def alookup(self, prompt: str, *, namespace: CacheNamespace) -> Awaitable[CacheLookup]: ...

    def update(self, prompt: str, payload: str, *, namespace: CacheNamespace, input_tokens: int = 0,
               output_tokens: int = 0) -> object: ...

    def aupdate(self, prompt: str, payload: str, *, namespace: CacheNamespace, input_tokens: int = 0,
                output_tokens: int = 0) -> Awaitable[object]: ...


@runtime_checkable
class SaltedPrefixCacheModel(Protocol):
    """A pipeline model whose engine prefix cache is partitioned by a salt (the local vLLM model):
    requests under different salts never share cached blocks."""

    cache_salt: str | None


class LayerStep(BaseModel):
    """What one layer did to one request, in the reference model's tokens."""

    model_config = ConfigDict(frozen=True)

    layer: StepLayer
    input_tokens_before: int = 0
    input_tokens_after: int = 0
    output_tokens_before: int = 0
    output_tokens_after: int = 0
    seconds: float = 0.0
    note: str | None = None


class PipelineResult(BaseModel):
    """The answer and how it was obtained."""

    model_config = ConfigDict(frozen=True)

    answer: str
    tenant: str | None
    """The tenant the request ran under; None when none was resolved (nothing was shared)."""
    cache_hit: HitKind | None = None
    """``exact`` / ``semantic`` when the answer came from the cache (no model call)."""
    messages: tuple[ChatMessageDict, ...] = ()
    """What was sent to the model (empty on a cache hit)."""
    usage: TokenUsage = TokenUsage()
    """The served model's own usage (zero on a cache hit)."""
    reference_usage: TokenUsage = TokenUsage()
    """The same call counted in ``price_model``'s tokenizer (zero on a cache hit): what an API
    call would be billed."""
    baseline_reference_usage: TokenUsage = TokenUsage()
    """An un-optimised call for this request in ``price_model`` tokens: the verbose template,
    the whole context, and the answer length the predictor expects without brevity."""
    finish_reason: str | None = None
    truncated: bool = False
    steps: tuple[LayerStep, ...] = ()
    latency_s: float = 0.0
    model_seconds: float = 0.0
    """Seconds spent in the model call(s)."""


def as_messages(pairs: Sequence[tuple[str, str]]) -> tuple[ChatMessageDict, ...]:
    return tuple({"role": role, "content": content} for role, content in pairs)
