"""PromptCacheSettings: the options of provider prompt caching, declared and validated once."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from lean_core._validation import ParameterCheckedModel
from lean_core.errors import InvalidParameterError
from lean_core.prompt_cache.providers import CacheProvider, check_cache_provider

__all__ = ["ANTHROPIC_MAX_BREAKPOINTS", "CacheTTL", "PromptCacheSettings"]

ANTHROPIC_MAX_BREAKPOINTS = 4
"""Anthropic refuses a request with more than four ``cache_control`` blocks."""

CacheTTL = Literal["5m", "1h"]
"""Anthropic cache lifetimes: 5 minutes (write at 1.25x input price) or 1 hour (write at 2x)."""


class PromptCacheSettings(ParameterCheckedModel):
    """What to mark for a provider's prompt cache. Every LangChain form (middleware, Runnable,
    template, pipeline) takes these same options.

    A bad value raises :class:`~lean_core.errors.InvalidParameterError` at construction; so does
    asking for more than :data:`ANTHROPIC_MAX_BREAKPOINTS` breakpoints.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: CacheProvider | Literal["auto"] = "auto"
    """``"auto"``: detected from the chat model's class and model name; else forced."""
    ttl: CacheTTL = "5m"
    """Anthropic cache lifetime of every breakpoint this plan writes."""
    tenant: str | None = Field(None, min_length=1, max_length=256)
    """Default tenant for the OpenAI ``prompt_cache_key`` (a run's metadata ``{"tenant": ...}``
    wins). Only its hash is sent."""
    namespace: str = Field("", max_length=256)
    """Mixed into the ``prompt_cache_key`` hash: set it per application so two applications
    with the same tenant names never share a key (and a tenant name cannot be confirmed by
    hashing guesses without it)."""
    cache_tools: StrictBool = True
    """Anthropic: a breakpoint on the last tool definition (caches every tool)."""
    cache_system: StrictBool = True
    """Anthropic: a breakpoint on the last block of the system prompt."""
    turn_breakpoints: StrictInt = Field(1, ge=0, le=ANTHROPIC_MAX_BREAKPOINTS)
    """Anthropic: breakpoints on the last stable turns (a turn that ends right before a user or
    tool input), newest first; 1 marks the message before the newest input."""
    min_messages: StrictInt = Field(0, ge=0)
    """Send no markers while the request has fewer messages than this (system included)."""

    @field_validator("provider", mode="before")
    @classmethod
    def _provider(cls, value: object) -> object:
        return value if value == "auto" else check_cache_provider(value)

    @model_validator(mode="after")
    def _at_most_four(self) -> PromptCacheSettings:
        count = self.requested_breakpoints
        if count > ANTHROPIC_MAX_BREAKPOINTS:
            raise InvalidParameterError(
                "turn_breakpoints", allowed=f"cache_tools + cache_system + turn_breakpoints <= "
                f"{ANTHROPIC_MAX_BREAKPOINTS} Anthropic cache breakpoints", received=count)
        return self

    @property
    def requested_breakpoints(self) -> int:
        """Anthropic breakpoints this plan may place (fewer when a request has no tools, ...)."""
        return int(self.cache_tools) + int(self.cache_system) + self.turn_breakpoints

    @property
    def cache_control(self) -> dict[str, str]:
        """The Anthropic ``cache_control`` value every breakpoint carries."""
        return {"type": "ephemeral", "ttl": self.ttl}
