"""A validated token-usage record: what one LLM call consumed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictInt, ValidationInfo, field_validator, model_validator

from lean_core._validation import ParameterCheckedModel, check_count
from lean_core.errors import InvalidParameterError

__all__ = ["TokenUsage", "UsageSource"]

UsageSource = Literal["provider", "tokenizer", "estimate"]
"""Where the counts come from: the provider's reported usage (exact), the target model's own
tokenizer (exact for what was sent, but not reported by the provider), or an estimate with a
different tokenizer (approximate, marked so in every report)."""


class TokenUsage(ParameterCheckedModel):
    """Token counts of one call, following the LangChain ``usage_metadata`` convention:
    ``input_tokens`` includes cached and cache-written tokens, ``output_tokens`` includes
    reasoning tokens.

    A bad count (negative, bool, float, str) or a part larger than its total raises
    :class:`~lean_core.errors.InvalidParameterError` naming the field; so does
    ``model_copy(update=...)``, which validates here (pydantic's own skips validation).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: StrictInt = Field(0, ge=0)
    """All prompt tokens, cached ones included (>= 0)."""
    cached_input_tokens: StrictInt = Field(0, ge=0)
    """Prompt tokens served from a prompt/prefix cache (0 ..= input_tokens)."""
    cache_write_tokens: StrictInt = Field(0, ge=0)
    """Prompt tokens written to a provider's prompt cache (0 ..= input_tokens - cached_input_tokens)."""
    cache_write_1h_tokens: StrictInt = Field(0, ge=0)
    """Of ``cache_write_tokens``, those written with a 1-hour lifetime (Anthropic ``ttl="1h"``,
    priced higher than 5-minute writes) (0 ..= cache_write_tokens)."""
    output_tokens: StrictInt = Field(0, ge=0)
    """All generated tokens, reasoning tokens included (>= 0)."""
    reasoning_tokens: StrictInt = Field(0, ge=0)
    """Hidden reasoning tokens (0 ..= output_tokens)."""
    source: UsageSource = "provider"
    """Where the counts come from; anything but ``"provider"`` is reported as not provider-exact."""

    @field_validator("input_tokens", "cached_input_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                     "output_tokens", "reasoning_tokens", mode="before")
    @classmethod
    def _count(cls, value: Any, info: ValidationInfo) -> int:
        return check_count(info.field_name or "token count", value)

    @model_validator(mode="after")
    def _parts_within_totals(self) -> TokenUsage:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise InvalidParameterError(
                "cached_input_tokens", allowed="cached_input_tokens + cache_write_tokens <= input_tokens",
                received=f"{self.cached_input_tokens} + {self.cache_write_tokens} > {self.input_tokens}",
            )
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise InvalidParameterError(
                "cache_write_1h_tokens", allowed="cache_write_1h_tokens <= cache_write_tokens",
                received=f"{self.cache_write_1h_tokens} > {self.cache_write_tokens}",
            )
        if self.reasoning_tokens > self.output_tokens:
            raise InvalidParameterError(
                "reasoning_tokens", allowed="reasoning_tokens <= output_tokens",
                received=f"{self.reasoning_tokens} > {self.output_tokens}",
            )
        return self

    def model_copy(self, *, update: Any = None, deep: bool = False) -> TokenUsage:
        """A copy with ``update`` applied and validated (a negative count is refused, not stored)."""
        if not update:
            return super().model_copy(deep=deep)
        return TokenUsage(**{**self.model_dump(), **dict(update)})

    @property
    def estimated(self) -> bool:
        """True when the counts are not the provider's own figures."""
        return self.source != "provider"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        # The sum is only as exact as its least exact part.
        order = ("provider", "tokenizer", "estimate")
        source = max(self.source, other.source, key=order.index)
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            source=source,
        )
