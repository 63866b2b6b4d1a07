"""What LeanCachedLLM keys on and stores: model identities, chat keys and response payloads.

Everything here is pure (no I/O, no cache): the class in :mod:`lean_index.cached_llm` decides
when to look up and store, this module decides what a request *is* and how a response becomes
a string and back.
"""

from __future__ import annotations

import enum
import importlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from llama_index.core.base.llms.types import (
    CachePoint,
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LogProb,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms.llm import LLM
from llama_index.core.tools.types import BaseTool
from pydantic import BaseModel, SecretBytes, SecretStr

from lean_core._usage_parsing import usage_from_payload
from lean_core.cache.agent_key import TOOL_CALLS_EXTRA, agent_step_key
from lean_core.cache.conversation_key import ConversationTurn, conversation_key
from lean_core.cache.types import HitKind
from lean_index._function_calling import has_tool_calls, has_tool_traffic, tool_description

__all__ = [
    "CacheKey",
    "Uncacheable",
    "chat_key",
    "class_name_of",
    "completion_key",
    "dump_chat",
    "dump_completion",
    "llm_identity",
    "load_chat",
    "load_completion",
    "restored",
    "usage_tokens",
]

CallKind = Literal["complete", "chat"]
_PAYLOAD_VERSION = 1
# Blocks whose JSON form is the whole block: safe to key on and to store. Media blocks may point
# at a path or URL whose content can change under the same JSON, so they are never cached.
_PLAIN_BLOCKS = (TextBlock, ThinkingBlock, ToolCallBlock, CachePoint)
# Field names whose values are credentials: never part of an identity (and never hashed into it).
_SECRET_PARTS = ("api_key", "apikey", "secret", "password", "passwd", "credential", "authorization",
                 "access_token", "auth_token", "refresh_token", "session_token", "bearer",
                 "private_key", "header", "cookie")
_SECRET_NAMES = frozenset({"auth", "token", "key"})
# Provider SDK data classes that may sit in a message's ``additional_kwargs`` (OpenAI's and
# Anthropic's tool calls): plain data, stored with their class and rebuilt on a hit, so a served
# message holds the same objects the provider's client made. Anything else is not JSON data.
_SDK_TYPE_MODULES = ("openai.types.", "anthropic.types.")
_SDK_TAG = "__lean_sdk_type__"
# Client plumbing that cannot change an answer.
_OPERATIONAL = frozenset({"callback_manager", "rate_limiter", "timeout", "request_timeout", "max_retries",
                          "retry_on_rate_limit", "reuse_client", "http_client", "async_http_client",
                          "num_workers", "show_progress", "verbose"})


class Uncacheable(Exception):
    """The request or response cannot be keyed or stored faithfully: pass it straight through."""


@dataclass(frozen=True)
class CacheKey:
    """One request as the cache sees it: the text looked up and the model identity around it."""

    prompt: str
    """The text that is matched exactly and, unless ``exact_only``, by meaning."""
    llm: str
    """Everything else that shapes the answer (the namespace's ``llm``): canonical JSON, followed
    for a conversation by the digest of its other turns."""
    exact_only: bool = False
    """Only an exact match may serve it (a conversation whose final turn is not plain user text)."""


# -- identities -------------------------------------------------------------------------------
def llm_identity(llm: LLM) -> dict[str, Any]:
    """The wrapped model's identity: class, metadata and every output-shaping field, no secrets."""
    kind = type(llm)
    return {"class": f"{kind.__module__}.{kind.__qualname__}", "class_name": class_name_of(llm),
            "metadata": _describe(llm.metadata.model_dump(mode="json")), "params": _params(llm)}


def completion_key(identity: Mapping[str, Any], prompt: str, formatted: bool,
                   kwargs: Mapping[str, Any]) -> CacheKey:
    """The key of ``complete(prompt, formatted, **kwargs)``. Raises :class:`Uncacheable`."""
    scope = {"call": "complete", "formatted": bool(formatted), "kwargs": canonical(dict(kwargs))}
    return CacheKey(prompt=prompt, llm=_dumps({"lean_cached_llm": _PAYLOAD_VERSION, **identity, **scope}))


def chat_key(identity: Mapping[str, Any], messages: Sequence[ChatMessage],
             kwargs: Mapping[str, Any]) -> CacheKey:
    """The key of ``chat(messages, **kwargs)``, by :func:`~lean_core.cache.conversation_key`: the
    final turn's text is the looked-up prompt, the rest of the conversation joins the namespace.

    A tool step (tools bound, or tool calls / tool results in the conversation) is keyed by
    :func:`~lean_core.cache.agent_key.agent_step_key`, the rule LangChain's agent cache uses too:
    the bound tools (names, descriptions, schemas, as the wrapped model prepared them) and
    ``tool_choice`` join the namespace, and a conversation with tool activity anywhere is matched
    exactly only (a reworded question must not replay tool arguments taken from another
    exchange). Raises :class:`Uncacheable`."""
    turns = [_turn(message) for message in messages]
    tools = kwargs.get("tools")
    if tools or has_tool_traffic(messages):
        rest = {name: value for name, value in kwargs.items() if name not in ("tools", "tool_choice")}
        scope = {"call": "chat", "kwargs": canonical(rest)}
        model = _dumps({"lean_cached_llm": _PAYLOAD_VERSION, **identity, **scope})
        step = agent_step_key(turns, model=model, tools=_tool_specs(tools),
                              tool_choice=canonical(kwargs.get("tool_choice")))
        return CacheKey(prompt=step.prompt, llm=step.llm, exact_only=not step.semantic or has_tool_traffic(messages))
    key = conversation_key(turns)
    scope = {"call": "chat", "kwargs": canonical(dict(kwargs))}
    llm = _dumps({"lean_cached_llm": _PAYLOAD_VERSION, **identity, **scope})
    return CacheKey(prompt=key.prompt, llm=key.scoped(llm), exact_only=not key.semantic)


def _tool_specs(tools: Any) -> list[Any]:
    """The bound tools as key data; tool objects a wrapped model passes on as they are become what
    the model is told about them (name, description, parameter schema)."""
    if not tools:
        return []
    if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
        raise Uncacheable(f"tools given as a {type(tools).__name__}")
    return [canonical(tool_description(tool) if isinstance(tool, BaseTool) else tool) for tool in tools]


def _turn(message: ChatMessage) -> ConversationTurn:
    """A message as a turn: its text blocks joined are the text; the block layout (when it is not
    one text block), non-text blocks and ``additional_kwargs`` are the extras."""
    texts: list[str] = []
    layout: list[Any] = []
    for block in message.blocks:
        if not isinstance(block, _PLAIN_BLOCKS):
            raise Uncacheable(f"message block {type(block).__name__}")
        if isinstance(block, TextBlock):
            texts.append(block.text)
            layout.append(None)  # the position of the text, which is keyed as the turn's text
        else:
            layout.append(canonical(block.model_dump(mode="json")))
    extras: dict[str, Any] = {}
    if layout != [None]:
        extras["blocks"] = layout
    if has_tool_calls(message):
        # Marks the turn as tool activity for the key rule (the calls themselves are in the blocks
        # and additional_kwargs already).
        extras[TOOL_CALLS_EXTRA] = True
    if message.additional_kwargs:
        extras["additional_kwargs"] = canonical(message.additional_kwargs)
    return ConversationTurn(role=message.role.value, text="\n".join(texts), extras=extras or None)


def _params(llm: LLM) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in type(llm).model_fields.items():
        if field.exclude or name in _OPERATIONAL or _is_secret(name):
            continue
        value = getattr(llm, name, None)
        if isinstance(value, SecretStr | SecretBytes):
            continue
        out[name] = _describe(value)
    return out


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_NAMES or any(part in lowered for part in _SECRET_PARTS)


def class_name_of(llm: LLM) -> str:
    """``llm.class_name()``, or the Python class name when that fails."""
    try:
        return str(llm.class_name())
    except Exception:  # a class_name that needs state: the Python class names it well enough
        return type(llm).__qualname__


def _describe(value: Any, depth: int = 0) -> Any:
    """A JSON value for an identity: like :func:`canonical`, but objects become their type name."""
    if depth > 8:
        return "<...>"
    if isinstance(value, enum.Enum):
        return _describe(value.value, depth + 1)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, SecretStr | SecretBytes):
        return "<secret>"
    if isinstance(value, Mapping):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()
                if not (isinstance(k, str) and _is_secret(k))}
    if isinstance(value, list | tuple):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name, None) for name, field in type(value).model_fields.items()
                  if not field.exclude}
        return {"<model>": type(value).__qualname__, **_describe(fields, depth + 1)}
    kind = type(value)
    if callable(value):
        name = getattr(value, "__qualname__", kind.__qualname__)
        return f"<callable {getattr(value, '__module__', '?')}.{name}>"
    return f"<{kind.__module__}.{kind.__qualname__}>"


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data, or :class:`Uncacheable` when it is not JSON data to begin with.

    Provider SDK data objects (OpenAI's and Anthropic's ``openai.types`` / ``anthropic.types``
    models, such as the tool calls in a message's ``additional_kwargs``) become a tagged dict that
    :func:`restored` turns back into an equal object; one that would not come back equal is
    :class:`Uncacheable`.
    """
    if isinstance(value, enum.Enum):
        if isinstance(value.value, str | int):
            return value.value
        raise Uncacheable(f"a {type(value).__name__} value")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Uncacheable("a non-finite float")
        return value
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise Uncacheable("a mapping with non-string keys")
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, BaseModel) and _is_sdk_type(type(value)):
        return _sdk_object(value)
    raise Uncacheable(f"a {type(value).__name__} value")


def _is_sdk_type(kind: type) -> bool:
    return kind.__module__.startswith(_SDK_TYPE_MODULES)


def _sdk_object(value: BaseModel) -> dict[str, Any]:
    kind = type(value)
    data = canonical(value.model_dump(mode="json"))
    try:
        same = kind.model_validate(data) == value
    except Exception as exc:
        raise Uncacheable(f"a {kind.__qualname__} that does not rebuild: {exc}") from exc
    if not same:
        raise Uncacheable(f"a {kind.__qualname__} that does not rebuild equal")
    return {_SDK_TAG: f"{kind.__module__}:{kind.__qualname__}", "data": data}


def restored(value: Any) -> Any:
    """``value`` (stored JSON) with every tagged SDK object rebuilt (see :func:`canonical`); a tag
    that names anything outside the SDK type modules is refused (:class:`Uncacheable`), so a
    stored payload can never import other code."""
    if isinstance(value, list):
        return [restored(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {_SDK_TAG, "data"} and isinstance(value[_SDK_TAG], str):
        module_name, _, qualname = value[_SDK_TAG].partition(":")
        if not module_name.startswith(_SDK_TYPE_MODULES) or not qualname.isidentifier():
            raise Uncacheable(f"a stored object of the foreign type {value[_SDK_TAG]!r}")
        try:
            kind = getattr(importlib.import_module(module_name), qualname)
        except (ImportError, AttributeError) as exc:
            raise Uncacheable(f"a stored object of the missing type {value[_SDK_TAG]!r}") from exc
        if not (isinstance(kind, type) and issubclass(kind, BaseModel) and _is_sdk_type(kind)):
            raise Uncacheable(f"a stored object of the foreign type {value[_SDK_TAG]!r}")
        return kind.model_validate(value["data"])
    return {k: restored(v) for k, v in value.items()}


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# -- payloads ---------------------------------------------------------------------------------
def dump_completion(response: CompletionResponse, *, text: str | None = None) -> str:
    """The stored form of a completion: text, JSON-safe ``additional_kwargs`` and logprobs.

    ``raw`` is not stored: it describes a provider call that a hit does not make (handlers read
    token usage from it). Raises :class:`Uncacheable` when the text is not a str.
    """
    body = text if text is not None else response.text
    if not isinstance(body, str):
        raise Uncacheable("a response without text")
    return _dumps({"v": _PAYLOAD_VERSION, "kind": "completion", "text": body,
                   "additional_kwargs": _json_items(response.additional_kwargs),
                   "logprobs": _dump_logprobs(response.logprobs)})


def dump_chat(response: ChatResponse, *, message: ChatMessage | None = None) -> str:
    """The stored form of a chat response: the message (role, blocks, ``additional_kwargs``) and
    JSON-safe response ``additional_kwargs``. Raises :class:`Uncacheable` when the message holds
    anything that would not come back identical (media blocks, client objects in its kwargs)."""
    chosen = message if message is not None else response.message
    blocks = []
    for block in chosen.blocks:
        if not isinstance(block, _PLAIN_BLOCKS):
            raise Uncacheable(f"response block {type(block).__name__}")
        blocks.append(canonical(block.model_dump(mode="json")))
    stored = {"role": chosen.role.value, "blocks": blocks, "additional_kwargs": canonical(chosen.additional_kwargs)}
    if has_tool_calls(chosen) and not _same_message(_message(stored), chosen):
        # A served tool call must be the very call the model made: ids, names, arguments, types.
        raise Uncacheable("a tool-call message that would not come back identical")
    return _dumps({"v": _PAYLOAD_VERSION, "kind": "chat", "message": stored,
                   "additional_kwargs": _json_items(response.additional_kwargs),
                   "logprobs": _dump_logprobs(response.logprobs)})


def _message(stored: Mapping[str, Any]) -> ChatMessage:
    return ChatMessage(role=MessageRole(stored["role"]), blocks=stored["blocks"],
                       additional_kwargs=restored(dict(stored.get("additional_kwargs") or {})))


def _same_message(loaded: ChatMessage, original: ChatMessage) -> bool:
    return (loaded.role == original.role and loaded.blocks == original.blocks
            and loaded.additional_kwargs == original.additional_kwargs)


def load_completion(payload: str, kind: HitKind) -> CompletionResponse:
    """A stored completion as a fresh response, marked ``additional_kwargs["lean_cache"] = kind``."""
    data = _load(payload, "completion")
    return CompletionResponse(text=data["text"], additional_kwargs=_marked(data, kind),
                              logprobs=_load_logprobs(data.get("logprobs")))


def load_chat(payload: str, kind: HitKind) -> ChatResponse:
    """A stored chat response as a fresh one, marked ``additional_kwargs["lean_cache"] = kind``."""
    data = _load(payload, "chat")
    return ChatResponse(message=_message(data["message"]), additional_kwargs=_marked(data, kind),
                        logprobs=_load_logprobs(data.get("logprobs")))


def _load(payload: str, kind: str) -> dict[str, Any]:
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("kind") != kind or data.get("v") != _PAYLOAD_VERSION:
        # Same namespace means same call kind, so this is a foreign or future entry: not served.
        raise Uncacheable(f"a stored payload that is not a v{_PAYLOAD_VERSION} {kind} response")
    return data


def _marked(data: Mapping[str, Any], kind: HitKind) -> dict[str, Any]:
    return {**dict(data.get("additional_kwargs") or {}), "lean_cache": kind}


def _json_items(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The JSON-safe items of a response's ``additional_kwargs`` (the rest is dropped)."""
    out: dict[str, Any] = {}
    for key, value in (kwargs or {}).items():
        if key == "lean_cache" or not isinstance(key, str):
            continue
        try:
            out[key] = canonical(value)
        except Uncacheable:
            continue
    return out


def _dump_logprobs(logprobs: list[list[LogProb]] | None) -> list[list[dict[str, Any]]] | None:
    if logprobs is None:
        return None
    return [[canonical(item.model_dump(mode="json")) for item in row] for row in logprobs]


def _load_logprobs(rows: Any) -> list[list[LogProb]] | None:
    if rows is None:
        return None
    return [[LogProb(**item) for item in row] for row in rows]


# -- token counts ------------------------------------------------------------------------------
def usage_tokens(response: CompletionResponse | ChatResponse) -> tuple[int, int]:
    """(input, output) tokens the provider reported for ``response``; (0, 0) when it reported none.

    Read from ``raw["usage"]`` / ``raw.usage`` (OpenAI or Anthropic shape), else from
    ``prompt_tokens``/``completion_tokens`` in ``additional_kwargs``.
    """
    raw = response.raw
    candidates: list[Any] = []
    if raw is not None:
        candidates.append(raw.get("usage") if isinstance(raw, Mapping) else getattr(raw, "usage", None))
    candidates.append(response.additional_kwargs or None)
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            usage = usage_from_payload(candidate)
        except (TypeError, ValueError, AttributeError):
            continue
        if usage is not None:
            return max(int(usage.input_tokens), 0), max(int(usage.output_tokens), 0)
    return 0, 0
