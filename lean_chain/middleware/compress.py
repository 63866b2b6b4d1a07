"""LeanCompressMiddleware: compress an agent's tool results (and old turns) once, keeping the prefix stable."""

from __future__ import annotations

from typing import Any

from langchain.agents.middleware import AgentMiddleware, AgentState
from langchain_core.messages import BaseMessage
from langgraph.runtime import Runtime

from lean_chain.middleware._common import check_tenant_key, resolve_tenant, role_of
from lean_core.compression.history import (
    HistoryCompression,
    HistoryMessage,
    HistoryPolicy,
    acompress_history,
    compress_history,
)
from lean_core.compression.options import CompressionOptions
from lean_core.errors import InvalidParameterError

__all__ = ["COMPRESS_METADATA_KEY", "LeanCompressMiddleware"]

COMPRESS_METADATA_KEY = "lean_compress"
"""``response_metadata`` key of a message this middleware judged: ``{"original_tokens",
"compressed_tokens", "method", "changed"}``. Its presence means "never compress again"."""


class LeanCompressMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Compress tool results (and optionally old turns) for the person's question, each message
    once, so that every later step sends the same bytes and prefix caches keep hitting.

    It runs before each model call (``before_model``). A tool result that has just entered the
    conversation is compressed for the last human message (the question) with the compression
    core (:class:`~lean_core.compression.CompressionOptions`: query-aware sentence selection by
    default, protected spans such as numbers, ids, URLs and code kept byte for byte), and the
    compressed message **replaces the original in the agent's state** (same message id, so
    LangGraph's ``add_messages`` swaps it in place), marked with
    ``response_metadata["lean_compress"]``. Every later step therefore sends exactly what the first
    step after the tool sent: the prompt grows only at its end, and provider or vLLM prefix caches
    keep serving it. A marked message is never compressed again (also across runs of a thread
    with a checkpointer, and when a caller passes the history back in). With ``older_than_turns``,
    a turn is compressed once when it falls that many user turns behind: that rewrites the prefix
    from that message on, once. See :mod:`lean_core.compression.history` for the rules.

    The original text is not kept in the state (the point is that the model never sees it again);
    give the agent a checkpointer and read the tool's own output (or the tool's artifact) if you
    need it.

    Args:
        options: the compression options (budget, method, protected spans, ledger); or give
            them as keywords (``ratio=0.4``, ``target_tokens=300``, ``ratio="auto"``,
            ``method="lean"``, ``ledger=...``), exactly those of
            :class:`~lean_core.compression.CompressionOptions`. The budget applies to each
            compressed message on its own.
        tool_results: compress each tool result when it first enters the model's view.
        older_than_turns: also compress (once) every non-system message before the N-th last
            user turn; None (the default): never.
        min_tokens: leave messages shorter than this many tokens (of ``target_model``) alone.
        tenant_key: the context / metadata key naming the tenant of the ledger's events.

    Example::

        agent = create_agent(model, tools, middleware=[LeanCompressMiddleware(ratio=0.4, ledger=ledger)])
    """

    def __init__(self, options: CompressionOptions | None = None, *, tool_results: bool = True,
                 older_than_turns: int | None = None, min_tokens: int = 200, tenant_key: str = "tenant",
                 **compression_options: Any) -> None:
        super().__init__()
        if options is not None and compression_options:
            raise InvalidParameterError("options", allowed="either a CompressionOptions or its keywords, not both",
                                        received=sorted(compression_options))
        if options is not None and not isinstance(options, CompressionOptions):
            raise InvalidParameterError("options", allowed="a lean_core.compression.CompressionOptions or None",
                                        received=type(options).__name__)
        self.options: CompressionOptions = options if options is not None else CompressionOptions(**compression_options)
        """Budget, compressor and ledger."""
        self.policy = HistoryPolicy(tool_results=tool_results, older_than_turns=older_than_turns,
                                    min_tokens=min_tokens)
        """Which messages are compressed."""
        self.tenant_key = check_tenant_key(tenant_key)
        self._last: HistoryCompression | None = None

    @property
    def last_compression(self) -> HistoryCompression | None:
        """What this instance's latest step did (None before the first; read the messages'
        ``lean_compress`` metadata under concurrent use)."""
        return self._last

    # -- the hooks ------------------------------------------------------------------------------
    def before_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages: list[BaseMessage] = list(state["messages"])
        done = compress_history(_history(messages), options=self.options, policy=self.policy)
        if done.results:
            self.options.record_compression(done.results, tenant=self._tenant(runtime))
        return self._update(messages, done)

    async def abefore_model(self, state: AgentState[Any], runtime: Runtime[Any]) -> dict[str, Any] | None:
        messages: list[BaseMessage] = list(state["messages"])
        done = await acompress_history(_history(messages), options=self.options, policy=self.policy)
        if done.results:
            await self.options.arecord_compression(done.results, tenant=self._tenant(runtime))
        return self._update(messages, done)

    # -- helpers --------------------------------------------------------------------------------
    def _tenant(self, runtime: Runtime[Any]) -> str | None:
        return resolve_tenant(runtime, tenant_key=self.tenant_key)

    def _update(self, messages: list[BaseMessage], done: HistoryCompression) -> dict[str, Any] | None:
        self._last = done
        replaced = []
        for edit in done.edits:
            message = messages[edit.index]
            mark = {"original_tokens": edit.result.original_tokens, "compressed_tokens": edit.result.compressed_tokens,
                    "method": edit.result.method, "changed": edit.changed}
            replaced.append(message.model_copy(update={
                "content": edit.text,
                "response_metadata": {**(message.response_metadata or {}), COMPRESS_METADATA_KEY: mark},
            }))
        return {"messages": replaced} if replaced else None

    def __repr__(self) -> str:
        return f"LeanCompressMiddleware(budget={self.options.budget!r}, policy={self.policy!r})"


def _history(messages: list[BaseMessage]) -> list[HistoryMessage]:
    """The state's messages as the compressor sees them. A message without an id could not be
    replaced in place (``add_messages`` would append a copy), so it is treated as already done."""
    return [HistoryMessage(role=role_of(m), text=m.content if isinstance(m.content, str) else None,
                           compressed=COMPRESS_METADATA_KEY in (m.response_metadata or {}) or m.id is None)
            for m in messages]
