"""The one rule for keying a chat conversation in the response cache.

Both framework caches (``lean_chain.LeanCache``, ``lean_index.LeanCachedLLM``) translate their
message types into :class:`ConversationTurn` and key the conversation here:

- the **prompt** (what is looked up, exactly and, in semantic mode, by meaning) is the final
  turn's text;
- everything else the conversation says (every earlier turn, whole, and the final turn's role and
  non-text parts) joins the **namespace** as a SHA-256 digest of its canonical JSON, so an exact
  hit needs the whole conversation to match and a semantic hit only ever rewords the final turn
  of an otherwise identical conversation;
- only a final turn that is **plain user text** (role ``"user"``, nothing but text) may be matched
  by meaning: a conversation ending in a tool result, an assistant turn, a named speaker or a
  non-text block is matched exactly (``semantic`` is False), since rewording is only defined for
  what a person asks.

A lone plain user turn keys exactly like a completion prompt of the same text in the same
namespace: the rule adds nothing to the namespace when there is nothing else to say.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lean_core.cache.types import CacheNamespace
from lean_core.errors import InvalidParameterError

__all__ = ["USER_ROLE", "ConversationKey", "ConversationTurn", "conversation_key"]

USER_ROLE = "user"
"""The role name a person's turn is translated to (LangChain's ``"human"``, LlamaIndex's ``USER``)."""
# Separates the model identity from the conversation digest in ``CacheNamespace.llm``; a model
# identity (LangChain's llm_string, LlamaIndex's canonical JSON) never contains it.
_CONTEXT_MARK = "\n<|lean:context|>"


@dataclass(frozen=True, slots=True)
class ConversationTurn:
    """One message, as the cache sees it."""

    role: str
    """The speaker: :data:`USER_ROLE` for a person's turn; any other non-empty str otherwise."""
    text: str
    """The message's text (its text blocks joined); ``""`` when it has none."""
    extras: Any = None
    """Everything else the message holds (non-text blocks, name, tool-call ids, provider kwargs)
    as plain JSON data (dicts with str keys, lists, str, numbers, bools, None); None when the
    message is text only."""


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Where one conversation lives in the response cache."""

    prompt: str
    """The text looked up: the final turn's text."""
    context: str | None
    """Hex SHA-256 of everything else in the conversation; None for a lone plain user turn."""
    semantic: bool
    """Whether the prompt may be matched by meaning (the final turn is plain user text)."""

    def scoped(self, llm: str) -> str:
        """The namespace's ``llm`` for the model identity ``llm``: ``llm`` itself when
        :attr:`context` is None, else ``llm`` followed by the conversation digest."""
        return llm if self.context is None else f"{llm}{_CONTEXT_MARK}{self.context}"

    def namespace(self, tenant: str, llm: str) -> CacheNamespace:
        """The namespace of this key for ``tenant`` under the model identity ``llm``."""
        return CacheNamespace(tenant, self.scoped(llm))


def conversation_key(turns: Sequence[ConversationTurn]) -> ConversationKey:
    """The cache key of a conversation (see the module docstring for the rule).

    Raises :class:`~lean_core.errors.InvalidParameterError` for an empty conversation, a turn that
    is not a :class:`ConversationTurn`, or extras that are not plain JSON data.
    """
    if isinstance(turns, str | bytes) or not isinstance(turns, Sequence) or not turns:
        raise InvalidParameterError("turns", allowed="a non-empty sequence of ConversationTurn", received=turns)
    bad = [type(t).__name__ for t in turns if not isinstance(t, ConversationTurn)]
    if bad:
        raise InvalidParameterError("turns", allowed="ConversationTurn items", received=bad[0])
    *history, final = turns
    plain = final.role == USER_ROLE and final.extras is None
    if plain and not history:
        return ConversationKey(prompt=final.text, context=None, semantic=True)
    rest = {"history": [_turn_json(t) for t in history], "final": {"role": final.role, "extras": final.extras}}
    try:
        canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError("extras", allowed="plain JSON data (str keys, no NaN)",
                                    received=str(exc)) from exc
    return ConversationKey(prompt=final.text, context=hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
                           semantic=plain)


def _turn_json(turn: ConversationTurn) -> dict[str, Any]:
    return {"role": turn.role, "text": turn.text, "extras": turn.extras}
