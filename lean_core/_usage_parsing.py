"""Read provider usage payloads (LangChain, OpenAI, Anthropic shapes) into TokenUsage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lean_core.usage import TokenUsage

__all__ = ["usage_from_payload"]


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"token count must be a number, got {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"token count must be a whole number, got {value!r}")
    return int(value)


def usage_from_payload(payload: Any) -> TokenUsage | None:
    """TokenUsage from a usage object or mapping, or None if it carries no token counts.

    Recognised shapes:
    * LangChain ``usage_metadata``: ``input_tokens`` (total), ``output_tokens``,
      ``input_token_details.cache_read`` / ``cache_creation`` / ``ephemeral_5m_input_tokens`` /
      ``ephemeral_1h_input_tokens`` (langchain-anthropic moves the writes to the last two and sets
      ``cache_creation`` to 0 when Anthropic reports the split), ``output_token_details.reasoning``;
    * OpenAI chat completions: ``prompt_tokens``, ``completion_tokens``,
      ``prompt_tokens_details.cached_tokens``, ``completion_tokens_details.reasoning_tokens``;
    * OpenAI responses: ``input_tokens`` (total), ``input_tokens_details.cached_tokens``,
      ``output_tokens_details.reasoning_tokens``;
    * Anthropic: ``input_tokens`` *excluding* ``cache_read_input_tokens`` and
      ``cache_creation_input_tokens``, ``cache_creation.ephemeral_1h_input_tokens``, ``output_tokens``.
    A wrapper with a ``usage`` field (an OpenAI response, a raw dict) is unwrapped first.
    """
    if payload is None:
        return None
    nested = _get(payload, "usage")
    if nested is not None and _get(payload, "prompt_tokens") is None and _get(payload, "input_tokens") is None:
        payload = nested
    if _get(payload, "prompt_tokens") is not None or _get(payload, "completion_tokens") is not None:
        prompt_details = _get(payload, "prompt_tokens_details")
        completion_details = _get(payload, "completion_tokens_details")
        return TokenUsage(
            input_tokens=_int(_get(payload, "prompt_tokens")),
            cached_input_tokens=_int(_get(prompt_details, "cached_tokens")),
            output_tokens=_int(_get(payload, "completion_tokens")),
            reasoning_tokens=_int(_get(completion_details, "reasoning_tokens")),
            source="provider",
        )
    if _get(payload, "input_tokens") is None and _get(payload, "output_tokens") is None:
        return None
    cache_read_anthropic = _get(payload, "cache_read_input_tokens")
    cache_write_anthropic = _get(payload, "cache_creation_input_tokens")
    if cache_read_anthropic is not None or cache_write_anthropic is not None:
        cached, written = _int(cache_read_anthropic), _int(cache_write_anthropic)
        split = _get(payload, "cache_creation")
        return TokenUsage(
            input_tokens=_int(_get(payload, "input_tokens")) + cached + written,
            cached_input_tokens=cached, cache_write_tokens=written,
            cache_write_1h_tokens=min(_int(_get(split, "ephemeral_1h_input_tokens")), written),
            output_tokens=_int(_get(payload, "output_tokens")),
            reasoning_tokens=_int(_get(_get(payload, "output_tokens_details"), "thinking_tokens")),
            source="provider",
        )
    input_details = _get(payload, "input_token_details")
    output_details = _get(payload, "output_token_details")
    responses_input = _get(payload, "input_tokens_details")  # OpenAI responses API
    responses_output = _get(payload, "output_tokens_details")
    written_1h = _int(_get(input_details, "ephemeral_1h_input_tokens"))
    return TokenUsage(
        input_tokens=_int(_get(payload, "input_tokens")),
        cached_input_tokens=_int(_get(input_details, "cache_read")) or _int(_get(responses_input, "cached_tokens")),
        cache_write_tokens=(_int(_get(input_details, "cache_creation")) + written_1h
                            + _int(_get(input_details, "ephemeral_5m_input_tokens"))),
        cache_write_1h_tokens=written_1h,
        output_tokens=_int(_get(payload, "output_tokens")),
        reasoning_tokens=_int(_get(output_details, "reasoning")) or _int(_get(responses_output, "reasoning_tokens")),
        source="provider",
    )
