"""The answer a cached payload holds, as text an answer-equivalence check can compare.

Adapters store payloads as JSON (``lean_chain.cache``: ``{"v": 1, "generations": [<dumpd
Generation>...]}``; ``lean_index._cache_codec``: ``{"v": 1, "kind": "completion", "text": ...}``
or ``{"v": 1, "kind": "chat", "message": {"blocks": [...]}}``). Anything else is taken as the
answer itself. Tool calls are part of the answer: two payloads that call different tools, or the
same tool with other arguments, must not compare equal because both carry no text.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["answer_text"]

_PAYLOAD_VERSION = 1


def answer_text(payload: str) -> str:
    """The answer text of an adapter payload (first generation / the message's text blocks, then
    its tool calls as canonical JSON); ``payload`` itself when it is not JSON of a known shape."""
    if not payload.startswith("{"):
        return payload
    try:
        data = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(data, dict) or data.get("v") != _PAYLOAD_VERSION:
        return payload
    found: str | None = None
    if isinstance(data.get("generations"), list):
        found = _langchain(data["generations"])
    elif data.get("kind") == "completion" and isinstance(data.get("text"), str):
        found = data["text"]
    elif data.get("kind") == "chat" and isinstance(data.get("message"), dict):
        found = _llamaindex_chat(data["message"])
    return payload if found is None else found


def _langchain(generations: list[Any]) -> str | None:
    if not generations or not isinstance(generations[0], dict):
        return None
    kwargs = generations[0].get("kwargs")
    if not isinstance(kwargs, dict):
        return None
    text: str = kwargs["text"] if isinstance(kwargs.get("text"), str) else ""
    message = kwargs.get("message")
    calls: Any = None
    if isinstance(message, dict) and isinstance(message.get("kwargs"), dict):
        inner = message["kwargs"]
        if not text:
            text = _content_text(inner.get("content"))
        calls = inner.get("tool_calls") or None
    if calls:
        # Ids are minted per response: compare what is called, not the id.
        calls = [{k: v for k, v in c.items() if k != "id"} if isinstance(c, dict) else c for c in calls]
    return _with_calls(text, calls)


def _llamaindex_chat(message: dict[str, Any]) -> str:
    texts: list[str] = []
    other: list[Any] = []
    for block in message.get("blocks") or ():
        if isinstance(block, dict) and block.get("block_type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        else:
            other.append(block)
    extra = message.get("additional_kwargs")
    calls = (extra or {}).get("tool_calls") if isinstance(extra, dict) else None
    return _with_calls("".join(texts), (other + list(calls or ())) or None)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part if isinstance(part, str) else str(part.get("text", ""))
                       for part in content if isinstance(part, str | dict))
    return ""


def _with_calls(text: str, calls: Any) -> str:
    if not calls:
        return text
    return f"{text}\n[tool calls] {json.dumps(calls, sort_keys=True, ensure_ascii=False, default=str)}"
