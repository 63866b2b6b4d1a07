"""vLLM's completion fields as our result types, the same for the in-process engine and a server."""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["finish_reason", "token_logprobs"]


def finish_reason(reason: str | None) -> Literal["stop", "length", "abort"]:
    """vLLM's finish reason as a :class:`~lean_core.generation.Choice` takes it (``stop`` covers
    end of sequence, stop strings and tool calls)."""
    if reason == "length":
        return "length"
    if reason == "abort":
        return "abort"
    return "stop"


def token_logprobs(completion: Any) -> tuple[float, ...] | None:
    """The log-probability of each generated token of an in-process vLLM completion, or None when
    none were asked for."""
    if not completion.logprobs:
        return None
    return tuple(float(step[token].logprob) for token, step in zip(completion.token_ids, completion.logprobs,
                                                                     strict=False))
