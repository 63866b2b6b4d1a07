"""A validated token-usage record: what one LLM call consumed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

__all__ = ["TokenUsage", "UsageSource"]

UsageSource = Literal["provider", "tokenizer", "estimate"]
"""Where the counts come from: the provider's reported usage (exact), the target model's own
tokenizer (exact for what was sent, but not reported by the provider), or an estimate with a
different tokenizer (approximate, marked so in every report)."""


class TokenUsage(BaseModel):
    """Token counts of one call, following the LangChain ``usage_metadata`` convention:
    ``input_tokens`` includes cached and cache-written tokens, ``output_tokens`` includes
    reasoning tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: StrictInt = Field(0, ge=0)
    """All prompt tokens, cached ones included (>= 0)."""
    cached_input_tokens: StrictInt = Field(0, ge=0)
    """Prompt tokens served from a prompt/prefix cache (0 ..= input_tokens)."""
    cache_write_tokens: StrictInt = Field(0, ge=0)
    """Prompt tokens written to a provider's prompt cache (0 ..= input_tokens - cached_input_tokens)."""
    output_tokens: StrictInt = Field(0, ge=0)
    """All generated tokens, reasoning tokens included (>= 0)."""
    reasoning_tokens: StrictInt = Field(0, ge=0)
    """Hidden reasoning tokens (0 ..= output_tokens)."""
    source: UsageSource = "provider"
    """Where the counts come from; anything but ``"provider"`` is reported as not provider-exact."""

    @model_validator(mode="after")
    def _parts_within_totals(self) -> TokenUsage:
        if self.cached_input_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cached_input_tokens + cache_write_tokens must be <= input_tokens, received "
                f"{self.cached_input_tokens} + {self.cache_write_tokens} > {self.input_tokens}"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                "reasoning_tokens must be <= output_tokens, received "
                f"{self.reasoning_tokens} > {self.output_tokens}"
            )
        return self

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
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            source=source,
        )
