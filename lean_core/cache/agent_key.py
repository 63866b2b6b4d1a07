"""The cache key of one agent step: the conversation, the tools the model may call, and the model.

An agent's model call is answered by the whole request, not only by its messages: the same
messages with another tool set (or another ``tool_choice``) may call another tool. So the key of
an agent step is :func:`~lean_core.cache.conversation_key` of its turns (system prompt included,
as the first turn), with the model identity extended by a digest of the bound tools (names,
descriptions and parameter schemas, in the order they are bound) and ``tool_choice``:

- another tool set, another schema, another ``tool_choice`` or another model is another
  namespace: never served, whatever the similarity;
- an agent step never shares a namespace with a plain chat call of the same model (its payloads
  differ), even with no tools bound;
- **exact only** as soon as tools are in play in the conversation: a turn with role
  :data:`TOOL_ROLE` (a tool result) or whose extras hold a non-empty ``"tool_calls"`` makes the
  step exact-only, whatever its last turn. Only a conversation of plain text turns ending in a
  person's question may be matched by meaning (and only that question may be reworded).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lean_core.cache.conversation_key import ConversationTurn, conversation_key
from lean_core.cache.types import CacheNamespace
from lean_core.errors import InvalidParameterError

__all__ = ["TOOL_CALLS_EXTRA", "TOOL_ROLE", "AgentStepKey", "agent_step_key", "has_tool_activity"]

TOOL_ROLE = "tool"
"""The role name a tool result is translated to."""
TOOL_CALLS_EXTRA = "tool_calls"
"""The extras key under which a turn carries the tool calls it makes."""
# Separates the model identity from the tool digest; a model identity never contains it.
_STEP_MARK = "\n<|lean:agent-step|>"


@dataclass(frozen=True, slots=True)
class AgentStepKey:
    """Where one agent step lives in the response cache."""

    prompt: str
    """The text looked up: the final turn's text."""
    llm: str
    """The namespace's model identity: the model, the tool digest and the conversation digest."""
    semantic: bool
    """Whether the prompt may be matched by meaning (plain text conversation, no tool activity)."""
    tools_digest: str
    """Hex SHA-256 of the bound tools and ``tool_choice`` (for logs and tests)."""

    def namespace(self, tenant: str) -> CacheNamespace:
        """The namespace of this step for ``tenant``."""
        return CacheNamespace(tenant, self.llm)


def has_tool_activity(turn: ConversationTurn) -> bool:
    """Whether ``turn`` is a tool result or makes tool calls."""
    extras = turn.extras
    return turn.role == TOOL_ROLE or (isinstance(extras, Mapping) and bool(extras.get(TOOL_CALLS_EXTRA)))


def agent_step_key(turns: Sequence[ConversationTurn], *, model: str, tools: Sequence[Mapping[str, Any]] = (),
                   tool_choice: Any = None) -> AgentStepKey:
    """The cache key of an agent step (see the module docstring).

    ``model``: the model identity with its generation parameters (LangChain's ``llm_string``).
    ``tools``: each bound tool as plain JSON data (e.g. the OpenAI tool schema). ``tool_choice``:
    as sent (None, a str, or plain JSON data). Raises
    :class:`~lean_core.errors.InvalidParameterError` for an empty model identity, tools or a
    ``tool_choice`` that are not plain JSON data, and whatever :func:`conversation_key` refuses.
    """
    if not isinstance(model, str) or not model:
        raise InvalidParameterError("model", allowed="a non-empty str naming the model and its parameters",
                                    received=model)
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise InvalidParameterError("tools", allowed="a sequence of tool schemas (plain JSON mappings)",
                                    received=type(tools).__name__)
    try:
        canonical = json.dumps({"tools": list(tools), "tool_choice": tool_choice}, sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("tools", allowed="tool schemas and tool_choice as plain JSON data",
                                    received=str(exc)) from exc
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    key = conversation_key(turns)
    semantic = key.semantic and not any(has_tool_activity(t) for t in turns)
    return AgentStepKey(prompt=key.prompt, llm=key.scoped(f"{model}{_STEP_MARK}{digest}"), semantic=semantic,
                        tools_digest=digest)
