"""Chat-message compression: history and tool results shrink, instructions and the ask do not.

System (and developer) messages carry the instructions and the last user message carries the
question, so both are kept verbatim; every other message with text content (older turns,
assistant replies, tool results, retrieved context) is compressed *for the last user message*,
under one budget shared by all of them. No message is removed and none changes role: one with
nothing kept comes back with empty content, so tool-call pairings stay valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lean_core.compression.attribute import kept_per_passage
from lean_core.compression.base import Compressor
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError

__all__ = ["CompressedMessages", "MessagePlan", "acompress_messages", "compress_messages", "plan_messages"]

_KEPT_ROLES = frozenset({"system", "developer"})
_USER_ROLES = frozenset({"user", "human"})


@dataclass(frozen=True)
class MessagePlan:
    """Which messages are compressed (``indices``), their texts, and the question they serve."""

    indices: tuple[int, ...]
    passages: tuple[str, ...]
    question: str | None

    def contents(self, result: CompressionResult) -> list[str]:
        """The kept text of each planned message, in ``indices`` order."""
        return kept_per_passage(result.text, list(self.passages))


@dataclass(frozen=True)
class CompressedMessages:
    """The messages with compressed contents, and what the compressor did (None: nothing to do)."""

    messages: list[dict[str, Any]]
    result: CompressionResult | None


def plan_messages(roles: Sequence[str], contents: Sequence[object]) -> MessagePlan:
    """Plan a compression from each message's role and content (non-str content is never touched)."""
    if len(roles) != len(contents):
        raise InvalidParameterError("messages", allowed="one role per content",
                                    received=f"{len(roles)} roles, {len(contents)} contents")
    last_user = max((i for i, role in enumerate(roles) if role in _USER_ROLES), default=None)
    question = contents[last_user] if last_user is not None else None
    indices = tuple(i for i, (role, content) in enumerate(zip(roles, contents, strict=True))
                    if i != last_user and role not in _KEPT_ROLES and isinstance(content, str) and content.strip())
    return MessagePlan(indices=indices, passages=tuple(str(contents[i]) for i in indices),
                       question=(question.strip() or None) if isinstance(question, str) else None)


def _checked(messages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidParameterError("messages", allowed="a list of {'role': ..., 'content': ...} mappings",
                                    received=type(messages).__name__)
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise InvalidParameterError(f"messages[{i}]", allowed="a mapping with a str 'role'",
                                        received=repr(message)[:80])
    return list(messages)


def _rebuilt(messages: list[Mapping[str, Any]], plan: MessagePlan,
             result: CompressionResult | None) -> CompressedMessages:
    out = [dict(m) for m in messages]
    if result is not None:
        for i, content in zip(plan.indices, plan.contents(result), strict=True):
            out[i]["content"] = content
    return CompressedMessages(messages=out, result=result)


def _checked_call(compressor: object, budget: object) -> CompressionBudget:
    if not isinstance(compressor, Compressor):
        raise InvalidParameterError("compressor", allowed="a lean_core.compression.Compressor",
                                    received=type(compressor).__name__)
    return CompressionBudget.of(budget)


def compress_messages(messages: Sequence[Mapping[str, Any]], *, compressor: Compressor,
                      budget: CompressionBudget | float) -> CompressedMessages:
    """Compress OpenAI-style ``{"role", "content", ...}`` messages; other keys are kept as given.
    ``budget``: a CompressionBudget, or a float in (0, 1] read as its ratio."""
    budget = _checked_call(compressor, budget)
    checked = _checked(messages)
    plan = plan_messages([m["role"] for m in checked], [m.get("content") for m in checked])
    result = (compressor.compress(list(plan.passages), budget=budget, question=plan.question)
              if plan.indices else None)
    return _rebuilt(checked, plan, result)


async def acompress_messages(messages: Sequence[Mapping[str, Any]], *, compressor: Compressor,
                             budget: CompressionBudget | float) -> CompressedMessages:
    """Async :func:`compress_messages`."""
    budget = _checked_call(compressor, budget)
    checked = _checked(messages)
    plan = plan_messages([m["role"] for m in checked], [m.get("content") for m in checked])
    result = (await compressor.acompress(list(plan.passages), budget=budget, question=plan.question)
              if plan.indices else None)
    return _rebuilt(checked, plan, result)
