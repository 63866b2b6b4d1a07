"""Compression budgets and results: the typed contract every compressor honours."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

__all__ = ["CompressionBudget", "CompressionResult", "DroppedSegment"]


class CompressionBudget(BaseModel):
    """How small the output must be: a ratio of the input, or an absolute token target.

    Tokens are counted in the *target* model's tokenizer (``target_model``), since that is what
    the compressed prompt will cost.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ratio: float | None = Field(None, gt=0.0, le=1.0)
    """Keep at most this share of the input tokens, in (0, 1] (0.33 = "3x compression")."""
    target_tokens: StrictInt | None = Field(None, ge=1)
    """Keep at most this many tokens (>= 1)."""
    target_model: str = "gpt-4o"
    """Model whose tokenizer counts the budget (see lean_core.tokens)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> CompressionBudget:
        if (self.ratio is None) == (self.target_tokens is None):
            raise ValueError("give exactly one of ratio (0, 1] or target_tokens (>= 1)")
        return self

    def tokens_for(self, original_tokens: int) -> int:
        """The token target for an input of ``original_tokens`` tokens (never more than the input)."""
        if self.target_tokens is not None:
            return min(self.target_tokens, original_tokens)
        assert self.ratio is not None
        return max(1, min(original_tokens, int(original_tokens * self.ratio)))


class DroppedSegment(BaseModel):
    """A piece of the input the compressor removed, with where it was."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["passage", "sentence", "tokens", "duplicate", "whitespace"]
    text: str
    start: int
    """Character offset in the original text (-1 when the piece is not contiguous)."""


class CompressionResult(BaseModel):
    """What a compressor did to one input."""

    model_config = ConfigDict(frozen=True)

    text: str
    method: str
    original_tokens: int
    compressed_tokens: int
    target_tokens: int
    tokenizer: str
    estimated_counts: bool
    """True when the target model's tokenizer is not available offline (counts are estimates)."""
    budget_met: bool
    """False only when protected content alone exceeds the target (see ``note``): protected spans
    are never altered to meet a budget."""
    protected_spans: int = 0
    dropped: tuple[DroppedSegment, ...] = ()
    seconds: float = 0.0
    note: str | None = None

    @property
    def ratio(self) -> float:
        """Achieved compression as original / compressed tokens (3.0 = "3x")."""
        return self.original_tokens / self.compressed_tokens if self.compressed_tokens else float("inf")

    @property
    def kept_share(self) -> float:
        """compressed / original tokens, the quantity a ``ratio`` budget bounds."""
        return self.compressed_tokens / self.original_tokens if self.original_tokens else 1.0
