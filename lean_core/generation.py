"""Engine-neutral generation types: sampling options in, typed results and chunks out.

Every backend (in-process vLLM, a remote vLLM server) takes :class:`SamplingOptions` and returns
:class:`GenerationResult` / :class:`GenerationChunk`, so the LangChain and LlamaIndex classes
translate one shape, whatever serves the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from typing_extensions import TypedDict  # pydantic validates it on Python 3.11 only in this form

from lean_core.budget.early_stop import EarlyStopReason, EarlyStopRule
from lean_core.usage import TokenUsage

__all__ = [
    "ChatMessageDict",
    "Choice",
    "FinishReason",
    "GenerationChunk",
    "GenerationResult",
    "SamplingOptions",
]

FinishReason = Literal["stop", "length", "abort"]
"""``stop``: end of sequence or a stop string; ``length``: hit ``max_tokens`` (truncated)."""


class ChatMessageDict(TypedDict):
    role: str
    content: str


class SamplingOptions(BaseModel):
    """Per-request sampling options, validated once (errors name parameter, range and value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: StrictInt = Field(256, ge=1)
    """Most tokens to generate (>= 1). Always sent: vLLM's own default is a silent 16."""
    temperature: float = Field(0.0, ge=0.0)
    """Sampling temperature (>= 0); 0 is greedy."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass in (0, 1]."""
    seed: int | None = None
    """Per-request random seed, for reproducible sampling."""
    n: StrictInt = Field(1, ge=1, le=64)
    """Number of candidates (1..64)."""
    stop: tuple[str, ...] = ()
    """Stop strings; generation ends before the first one (not included in the text)."""
    json_schema: dict[str, Any] | None = None
    """Constrain the output to JSON matching this schema (guided decoding)."""
    logprobs: StrictInt | None = Field(None, ge=0, le=20)
    """Return this many top log-probabilities per generated token (0..20)."""
    ignore_eos: bool = False
    """Keep generating past the end-of-sequence token up to ``max_tokens`` (benchmarks that must
    compare equal work); stop strings still apply."""
    early_stop: EarlyStopRule | None = None
    """End the answer once it is complete (confidence or repetition, see
    ``lean_core.budget.EarlyStopRule``); in-process vLLM engine only, one candidate (n=1)."""
    lora_adapter: str | None = Field(None, min_length=1)
    """A LoRA adapter directory (PEFT format: ``adapter_config.json`` + weights) applied to this
    request on top of the base model; in-process vLLM engine only (a vLLM server serves adapters
    under their own model names: ``vllm serve --lora-modules NAME=PATH``, then ``model=NAME``)."""

    @field_validator("stop", mode="before")
    @classmethod
    def _normalise_stop(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        return value

    @field_validator("stop")
    @classmethod
    def _non_empty_stops(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s for s in value):
            raise ValueError("stop strings must be non-empty")
        return value

    @model_validator(mode="after")
    def _early_stop_single(self) -> SamplingOptions:
        if self.early_stop is not None and self.n != 1:
            raise ValueError(f"early_stop needs n=1, got n={self.n}")
        if self.early_stop is not None and self.ignore_eos:
            raise ValueError("early_stop and ignore_eos=True contradict each other: choose one")
        return self


class Choice(BaseModel):
    """One generated candidate."""

    model_config = ConfigDict(frozen=True)

    text: str
    finish_reason: FinishReason
    completion_tokens: int
    token_logprobs: tuple[float, ...] | None = None
    """Log-probability of each generated token, when logprobs were requested."""
    early_stop: EarlyStopReason | None = None
    """Why the answer ended early (``finish_reason`` is then "stop"), if it did."""


class GenerationResult(BaseModel):
    """A finished request: candidates plus usage (prompt, cached prompt, completion tokens)."""

    model_config = ConfigDict(frozen=True)

    model: str
    choices: tuple[Choice, ...]
    usage: TokenUsage
    """``cached_input_tokens`` is the engine's prefix-cache hit (vLLM ``num_cached_tokens``)."""
    request_id: str | None = None

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def finish_reason(self) -> FinishReason:
        return self.choices[0].finish_reason


class GenerationChunk(BaseModel):
    """A streamed piece of candidate ``index``; the last chunk of a request carries ``usage``."""

    model_config = ConfigDict(frozen=True)

    text: str
    index: int = 0
    finish_reason: FinishReason | None = None
    usage: TokenUsage | None = None
    model: str | None = None


def normalise_messages(messages: Sequence[ChatMessageDict | tuple[str, str]]) -> list[ChatMessageDict]:
    """Validate a chat as role/content dicts (tuples accepted); raises on an empty chat."""
    from lean_core.errors import InvalidParameterError

    if not messages:
        raise InvalidParameterError("messages", allowed="at least one message", received=list(messages))
    out: list[ChatMessageDict] = []
    for message in messages:
        if isinstance(message, tuple):
            role, content = message
        else:
            role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            raise InvalidParameterError("messages", allowed="role and content strings", received=message)
        out.append({"role": role, "content": content})
    return out
