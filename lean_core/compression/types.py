"""Compression budgets and results: the typed contract every compressor honours."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from lean_core.errors import InvalidParameterError

__all__ = ["AUTO", "CompressionBudget", "CompressionResult", "DroppedSegment", "check_ratio",
           "check_target_tokens"]

_RATIO = "a float in (0, 1] (0.33 = keep a third)"
AUTO = "auto"
_RATIO_OR_AUTO = f"{_RATIO}, 'auto'"


def check_ratio(value: Any, *, allowed: str) -> Any:
    """``value`` if it is None or a kept share in (0, 1] (bools refused); else a named error."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                              or not 0.0 < value <= 1.0):
        raise InvalidParameterError("ratio", allowed=allowed, received=value)
    return value


def check_target_tokens(value: Any) -> Any:
    """``value`` if it is None or a whole number of tokens >= 1 (bools refused); else a named error."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise InvalidParameterError("target_tokens", allowed="an int >= 1 or None", received=value)
    return value


class CompressionBudget(BaseModel):
    """How small the output must be: a ratio of the input, or an absolute token target.

    Tokens are counted in the *target* model's tokenizer (``target_model``), since that is what
    the compressed prompt will cost. Bad values raise
    :class:`~lean_core.errors.InvalidParameterError` naming the field. Every compressor also takes
    a bare float as ``budget``: ``budget=0.3`` means ``CompressionBudget(ratio=0.3)`` (counted in
    gpt-4o tokens), as LangChain options take a number where a number is the whole intent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ratio: float | None = None
    """Keep at most this share of the input tokens, in (0, 1] (0.33 = "3x compression").
    ``ratio="auto"`` is read as ``auto=True, ratio=1.0``."""
    target_tokens: int | None = None
    """Keep at most this many tokens (an int >= 1)."""
    target_model: str = "gpt-4o"
    """Model whose tokenizer counts the budget (see lean_core.tokens)."""
    auto: bool = False
    """The compressor keeps the smallest context that still holds what the question needs, judged
    from its own relevance scores (``LeanCompressor``); ``ratio`` / ``target_tokens`` is then only
    a ceiling. A compressor that cannot judge relevance just applies the ceiling (with
    ``ratio="auto"``, 1.0: it keeps everything)."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            from lean_core.compression._checks import raise_parameter_error

            raise_parameter_error(exc)

    @model_validator(mode="before")
    @classmethod
    def _read_auto(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("ratio") == AUTO:
            if data.get("auto") is False:
                raise InvalidParameterError("auto", allowed="True or left out with ratio='auto'", received=False)
            return {**data, "ratio": 1.0, "auto": True}
        return data

    @field_validator("ratio", mode="before")
    @classmethod
    def _check_ratio(cls, value: Any) -> Any:
        return check_ratio(value, allowed=f"{_RATIO_OR_AUTO} or None")

    @field_validator("target_tokens", mode="before")
    @classmethod
    def _check_target_tokens(cls, value: Any) -> Any:
        return check_target_tokens(value)

    @field_validator("auto", mode="before")
    @classmethod
    def _check_auto(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise InvalidParameterError("auto", allowed="a bool", received=value)
        return value

    @field_validator("target_model", mode="before")
    @classmethod
    def _check_target_model(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise InvalidParameterError("target_model", allowed="a non-empty model name (str)", received=value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> CompressionBudget:
        if (self.ratio is None) == (self.target_tokens is None):
            raise InvalidParameterError(
                "ratio", allowed="exactly one of ratio (0, 1] or target_tokens (>= 1)",
                received=f"ratio={self.ratio!r}, target_tokens={self.target_tokens!r}")
        return self

    @classmethod
    def of(cls, budget: object, *, parameter: str = "budget") -> CompressionBudget:
        """``budget`` as a CompressionBudget: one as it is, a float in (0, 1] as its ratio."""
        if isinstance(budget, CompressionBudget):
            return budget
        if isinstance(budget, float) and 0.0 < budget <= 1.0:
            return cls(ratio=budget)
        if budget == AUTO:
            return cls(ratio=AUTO)
        # An int is refused rather than guessed: budget=1 could mean "all of it" or "one token".
        raise InvalidParameterError(
            parameter, allowed=f"a CompressionBudget, {_RATIO} meaning CompressionBudget(ratio=...), "
            "or 'auto'; "
            "a token target is CompressionBudget(target_tokens=N)",
            received=budget if isinstance(budget, int | float | str | None) else type(budget).__name__)

    @property
    def is_auto(self) -> bool:
        """True for ``auto=True`` (or ``ratio="auto"``): the compressor chooses how much to keep."""
        return self.auto

    def tokens_for(self, original_tokens: int) -> int:
        """The token target for an input of ``original_tokens`` tokens (never more than the input;
        under ``auto`` the ceiling)."""
        if self.target_tokens is not None:
            return min(self.target_tokens, original_tokens)
        assert self.ratio is not None  # _exactly_one guarantees it
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
