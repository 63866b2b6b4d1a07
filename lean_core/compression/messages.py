"""Chat-message compression: context shrinks wherever it is, instructions and the ask do not.

Every text message is read with :func:`~lean_core.compression.structure.find_context`. In system
(and developer) messages and the last user message only a recognised context section (a
"Context:" heading, ``<context>`` tags, a delimited block, numbered sources...) is compressed;
the rest of them, instructions and question, is kept byte for byte. Every other message (older
turns, assistant replies, tool results) is context by position: its context sections, or the
whole message when it has none. All of it is compressed *for the question* (the last user turn's
"Question:" segment or trailing question, else that whole turn) under one budget. No message is
removed and none changes role: one with nothing kept comes back with empty content, so tool-call
pairings stay valid. When nothing is compressible the messages come back as given, with a
typed ``reason``, and a warning is logged once per process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lean_core.compression.attribute import kept_per_passage
from lean_core.compression.base import Compressor
from lean_core.compression.structure import (
    NothingToCompress,
    PromptLayout,
    find_context,
    splice,
    warn_nothing_compressed,
)
from lean_core.compression.types import CompressionBudget, CompressionResult
from lean_core.errors import InvalidParameterError

__all__ = ["CompressedMessages", "MessagePlan", "acompress_messages", "compress_messages", "plan_messages"]

_KEPT_ROLES = frozenset({"system", "developer"})
_USER_ROLES = frozenset({"user", "human"})
_WARNED: set[NothingToCompress] = set()  # per process: a warning per reason, not per call


@dataclass(frozen=True)
class MessagePlan:
    """Which messages are compressed (``indices``), their texts, and the question they serve."""

    indices: tuple[int, ...]
    passages: tuple[str, ...]
    question: str | None
    layouts: tuple[PromptLayout, ...] = ()
    """Where the context is in each planned message (``indices`` order)."""
    reason: NothingToCompress | None = None
    """Why nothing is planned (None when ``indices`` is not empty)."""

    def contents(self, result: CompressionResult) -> list[str]:
        """The new text of each planned message, in ``indices`` order: its context replaced by
        what was kept of it, everything else byte for byte."""
        kept = kept_per_passage(result.text, list(self.passages))
        out, cursor = [], 0
        for layout in self.layouts:
            count = len(layout.passages)
            out.append(splice(layout, kept[cursor:cursor + count]))
            cursor += count
        return out


@dataclass(frozen=True)
class CompressedMessages:
    """The messages with compressed contents, and what the compressor did (None: nothing to do,
    and ``reason`` says why)."""

    messages: list[dict[str, Any]]
    result: CompressionResult | None
    reason: NothingToCompress | None = None


def plan_messages(roles: Sequence[str], contents: Sequence[object]) -> MessagePlan:
    """Plan a compression from each message's role and content (non-str content is never touched)."""
    if len(roles) != len(contents):
        raise InvalidParameterError("messages", allowed="one role per content",
                                    received=f"{len(roles)} roles, {len(contents)} contents")
    last_user = max((i for i, role in enumerate(roles) if role in _USER_ROLES), default=None)
    indices: list[int] = []
    layouts: list[PromptLayout] = []
    question: str | None = None
    for i, (role, content) in enumerate(zip(roles, contents, strict=True)):
        if not isinstance(content, str) or not content.strip():
            continue
        # Instructions and the ask hold context only where it is marked; other turns are context.
        layout = find_context(content, whole_if_unstructured=i != last_user and role not in _KEPT_ROLES)
        if i == last_user:
            question = layout.question if layout.regions else (content.strip() or None)
        if layout.regions:
            indices.append(i)
            layouts.append(layout)
    has_text = any(isinstance(c, str) and c.strip() for c in contents)
    reason = None if indices else (NothingToCompress.NO_CONTEXT_FOUND if has_text else NothingToCompress.NO_TEXT)
    return MessagePlan(indices=tuple(indices), passages=tuple(p for lay in layouts for p in lay.passages),
                       question=question, layouts=tuple(layouts), reason=reason)


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
    elif plan.reason is not None:
        warn_nothing_compressed(plan.reason, _WARNED, where="compress_messages")
    return CompressedMessages(messages=out, result=result, reason=plan.reason)


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
