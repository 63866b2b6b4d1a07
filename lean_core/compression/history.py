"""Agent history compression that keeps the prompt prefix stable.

An agent resends its whole history at every step, and providers (and vLLM's prefix cache) only
reuse what is byte-identical from the start of the prompt. Compressing the history afresh at each
step would rewrite earlier messages and lose those hits. So here **each message is compressed at
most once**, and the adapter stores the compressed text in place of the original (with a marker
saying it was done), so every later step sends exactly the same bytes:

- a **tool result** is compressed when it first enters the model's view (the step right after
  the tool ran), for the person's question (the last user turn);
- optionally, a turn that becomes **older than** ``older_than_turns`` user turns is compressed
  once, when it crosses that line (this rewrites the prefix from that message on, once);
- system messages, the last user turn (the question), non-text content and any message already
  compressed are never touched; a message under ``min_tokens`` is left as it is;
- within a message, only what :func:`~lean_core.compression.structure.find_context` reads as
  context is compressed (the whole text when it has no structure), protected spans (numbers,
  ids, URLs, code...) stay byte for byte, and the rest is spliced back around what was kept.

A message judged once is reported in :attr:`HistoryCompression.edits` even when compression kept
it whole (``changed`` False): the adapter marks it too, so it is not judged again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lean_core.compression.attribute import kept_per_passage
from lean_core.compression.options import CompressionJob
from lean_core.compression.structure import PromptLayout, find_context, splice
from lean_core.errors import InvalidParameterError
from lean_core.tokens import count_tokens

if TYPE_CHECKING:
    from lean_core.compression.options import CompressionOptions
    from lean_core.compression.types import CompressionResult

__all__ = ["HistoryCompression", "HistoryEdit", "HistoryMessage", "HistoryPlan", "HistoryPolicy", "acompress_history",
           "compress_history", "plan_history"]

USER_ROLE = "user"
TOOL_ROLE = "tool"
SYSTEM_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """One message of an agent's history, as the compressor sees it."""

    role: str
    """``"system"``, ``"user"``, ``"assistant"``, ``"tool"`` (or another speaker)."""
    text: str | None
    """The message's text; None when its content is not plain text (never compressed)."""
    compressed: bool = False
    """True when an earlier step already compressed (or judged) it: never touched again."""


@dataclass(frozen=True, slots=True)
class HistoryPolicy:
    """Which messages are compressed. Invalid values raise
    :class:`~lean_core.errors.InvalidParameterError` naming the field."""

    tool_results: bool = True
    """Compress each tool result when it first enters the model's view."""
    older_than_turns: int | None = None
    """Also compress every message (but system messages) before the N-th last user turn (an int
    >= 1: 1 compresses everything before the current question); None: never."""
    min_tokens: int = 200
    """Leave messages shorter than this many tokens (of the options' ``target_model``) as they are
    (an int >= 0): compressing a short result saves little and risks its one useful line."""

    def __post_init__(self) -> None:
        if not isinstance(self.tool_results, bool):
            raise InvalidParameterError("tool_results", allowed="True or False", received=self.tool_results)
        turns = self.older_than_turns
        if turns is not None and (isinstance(turns, bool) or not isinstance(turns, int) or turns < 1):
            raise InvalidParameterError("older_than_turns", allowed="an int >= 1 or None", received=turns)
        if isinstance(self.min_tokens, bool) or not isinstance(self.min_tokens, int) or self.min_tokens < 0:
            raise InvalidParameterError("min_tokens", allowed="an int >= 0", received=self.min_tokens)


@dataclass(frozen=True, slots=True)
class HistoryEdit:
    """What became of one message: its new text (the original when nothing was dropped)."""

    index: int
    text: str
    result: CompressionResult

    @property
    def changed(self) -> bool:
        """Whether compression dropped anything."""
        return self.result.compressed_tokens < self.result.original_tokens


@dataclass(frozen=True, slots=True)
class HistoryCompression:
    """The edits of one step (empty when no message was due) and the question they served."""

    edits: tuple[HistoryEdit, ...]
    question: str | None

    @property
    def results(self) -> list[CompressionResult]:
        """The compressor's results of the messages that changed (what the ledger records)."""
        return [e.result for e in self.edits if e.changed]


@dataclass(frozen=True, slots=True)
class _Planned:
    index: int
    original: str
    layout: PromptLayout


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """The messages due for compression at this step, and the question they are compressed for."""

    planned: tuple[_Planned, ...]
    question: str | None

    @property
    def indices(self) -> tuple[int, ...]:
        return tuple(p.index for p in self.planned)

    def jobs(self) -> list[CompressionJob]:
        """One compressor job per due message (each message alone, so its result depends only on
        its own text and the question: the same history compresses the same way every time)."""
        return [CompressionJob(p.layout.passages, self.question) for p in self.planned]

    def finish(self, results: Sequence[CompressionResult]) -> HistoryCompression:
        edits = []
        for planned, result in zip(self.planned, results, strict=True):
            passages = planned.layout.passages
            text = splice(planned.layout, kept_per_passage(result.text, passages))
            if result.compressed_tokens >= result.original_tokens:
                text = planned.original  # kept whole: the original bytes, not a re-spliced copy
            edits.append(HistoryEdit(index=planned.index, text=text, result=result))
        return HistoryCompression(edits=tuple(edits), question=self.question)


def _question(messages: Sequence[HistoryMessage]) -> tuple[int | None, str | None]:
    last_user = max((i for i, m in enumerate(messages) if m.role == USER_ROLE), default=None)
    if last_user is None:
        return None, None
    text = messages[last_user].text
    if not text or not text.strip():
        return last_user, None
    layout = find_context(text)
    return last_user, (layout.question if layout.regions and layout.question else text.strip())


def plan_history(messages: Sequence[HistoryMessage], policy: HistoryPolicy, *,
                 target_model: str = "gpt-4o") -> HistoryPlan:
    """The messages due for compression now (see the module docstring). Nothing is due without a
    user turn to take the question from: a query-aware compressor has nothing to keep evidence for."""
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidParameterError("messages", allowed="a sequence of HistoryMessage", received=type(messages).__name__)
    bad = [type(m).__name__ for m in messages if not isinstance(m, HistoryMessage)]
    if bad:
        raise InvalidParameterError("messages", allowed="HistoryMessage items", received=bad[0])
    if not isinstance(policy, HistoryPolicy):
        raise InvalidParameterError("policy", allowed="a HistoryPolicy", received=type(policy).__name__)
    last_user, question = _question(messages)
    if last_user is None or question is None:
        return HistoryPlan(planned=(), question=None)
    old_before = -1
    if policy.older_than_turns is not None:
        users = [i for i, m in enumerate(messages) if m.role == USER_ROLE]
        if len(users) >= policy.older_than_turns:
            old_before = users[-policy.older_than_turns]
    planned = []
    for i, message in enumerate(messages):
        text = message.text
        if message.compressed or i == last_user or message.role in SYSTEM_ROLES or not text or not text.strip():
            continue
        due = (policy.tool_results and message.role == TOOL_ROLE) or i < old_before
        if not due or count_tokens(text, target_model).tokens < policy.min_tokens:
            continue
        layout = find_context(text, whole_if_unstructured=True)
        if layout.regions:
            planned.append(_Planned(index=i, original=text, layout=layout))
    return HistoryPlan(planned=tuple(planned), question=question)


def compress_history(messages: Sequence[HistoryMessage], *, options: CompressionOptions,
                     policy: HistoryPolicy) -> HistoryCompression:
    """Compress the messages due at this step with ``options``' compressor and budget (the budget
    applies to each message on its own: ``ratio`` keeps that share of every compressed message,
    ``target_tokens`` is a ceiling per message)."""
    plan = plan_history(messages, policy, target_model=options.target_model)
    return plan.finish(options.compress_jobs(plan.jobs()) if plan.planned else [])


async def acompress_history(messages: Sequence[HistoryMessage], *, options: CompressionOptions,
                            policy: HistoryPolicy) -> HistoryCompression:
    """Async :func:`compress_history` (the messages are compressed concurrently)."""
    plan = plan_history(messages, policy, target_model=options.target_model)
    return plan.finish(await options.acompress_jobs(plan.jobs()) if plan.planned else [])
