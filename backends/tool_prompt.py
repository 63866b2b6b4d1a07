"""How a chat with tools reaches a model's chat template, and the fallback for templates without tools.

The messages of a tool chat are role/content dicts that may also carry ``tool_calls`` (an
assistant turn: :class:`~lean_backends.tool_calling.ToolCall` objects or OpenAI dicts) and
``tool_call_id`` / ``name`` (a ``tool`` turn holding a tool's result).

A template that uses ``tools`` (Qwen, Llama 3.1+, Hermes, Mistral, ...) gets them as Hugging Face
defines it: ``tools=`` in OpenAI format, assistant ``tool_calls`` and ``tool`` messages as they are.

A template without tools (the bundled SmolLM2's knows only role and content) gets the Hermes
convention written into plain messages, so any model can follow it and ``tool_parser="hermes"``
can parse it:

- the tools are described in the system message (appended to the first one, or a new first one),
  inside ``<tools>...</tools>``, with the instruction to answer ``<tool_call>{"name": ...,
  "arguments": {...}}</tool_call>``;
- an assistant turn's calls are appended to its content as ``<tool_call>`` blocks;
- a tool result becomes a ``user`` turn holding ``<tool_response>{"name", "tool_call_id",
  "content"}</tool_response>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from lean_backends.tool_calling import ToolCall, ToolRequest
from lean_core.errors import InvalidParameterError

__all__ = ["ToolChatMessage", "fallback_messages", "has_tool_turns", "render_tool_chat", "template_messages",
           "template_supports_tools"]

ToolChatMessage = Mapping[str, Any]
"""``{"role", "content"}`` plus, where they apply, ``tool_calls``, ``tool_call_id`` and ``name``."""

_ROLES = frozenset({"system", "user", "assistant", "tool"})
_TOOLS_VARIABLE = re.compile(r"\btools\b")


def template_supports_tools(template: str | None) -> bool:
    """Whether a chat template reads ``tools`` (and so renders tool turns in the model's format)."""
    return bool(template) and _TOOLS_VARIABLE.search(str(template)) is not None


def has_tool_turns(messages: Sequence[Any]) -> bool:
    """Whether a chat holds tool calls or tool results (and so needs :func:`render_tool_chat`)."""
    return any(isinstance(m, Mapping) and (m.get("role") == "tool" or m.get("tool_calls")) for m in messages)


def _checked(messages: Sequence[ToolChatMessage]) -> list[ToolChatMessage]:
    if not messages:
        raise InvalidParameterError("messages", allowed="at least one message", received=list(messages))
    for message in messages:
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _ROLES or not isinstance(message.get("content", ""), str):
            raise InvalidParameterError("messages", allowed=f"dicts with a role in {sorted(_ROLES)} and string "
                                        "content", received=message)
    return list(messages)


def _call_dict(call: Any) -> dict[str, Any]:
    """A call as ``{"id", "name", "arguments": dict}``, from a ToolCall or an OpenAI dict."""
    if isinstance(call, ToolCall):
        return {"id": call.id, "name": call.name, "arguments": call.arguments}
    if isinstance(call, Mapping):
        function = call.get("function", call)
        arguments = function.get("arguments", function.get("args", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as exc:
                raise InvalidParameterError("messages[].tool_calls", allowed="arguments as a JSON object",
                                            received=arguments) from exc
        return {"id": call.get("id"), "name": function.get("name"), "arguments": arguments}
    raise InvalidParameterError("messages[].tool_calls", allowed="ToolCall objects or OpenAI tool-call dicts",
                                received=call)


def template_messages(messages: Sequence[ToolChatMessage]) -> list[dict[str, Any]]:
    """The messages in the shape Hugging Face tool templates read."""
    out: list[dict[str, Any]] = []
    for message in _checked(messages):
        item: dict[str, Any] = {"role": message["role"], "content": message.get("content", "")}
        if message.get("tool_calls"):
            item["tool_calls"] = [{"id": c["id"], "type": "function",
                                   "function": {"name": c["name"], "arguments": c["arguments"]}}
                                  for c in map(_call_dict, message["tool_calls"])]
        for key in ("tool_call_id", "name"):
            if message.get(key) is not None:
                item[key] = message[key]
        out.append(item)
    return out


def _tools_prompt(request: ToolRequest) -> str:
    described = "\n".join(json.dumps(spec.to_openai(), ensure_ascii=False) for spec in request.tools)
    return ("You can call these tools:\n<tools>\n" + described + "\n</tools>\n"
            "To call a tool, answer with a JSON object inside tags, one per call:\n"
            '<tool_call>\n{"name": <tool name>, "arguments": <arguments object>}\n</tool_call>')


def fallback_messages(messages: Sequence[ToolChatMessage], request: ToolRequest | None) -> list[dict[str, str]]:
    """Role/content messages carrying tools, calls and results in the Hermes convention."""
    out: list[dict[str, str]] = []
    names: dict[str, str] = {}
    for message in _checked(messages):
        role, content = str(message["role"]), str(message.get("content", ""))
        if role == "assistant" and message.get("tool_calls"):
            blocks = []
            for call in map(_call_dict, message["tool_calls"]):
                names[str(call["id"])] = str(call["name"])
                blocks.append("<tool_call>\n" + json.dumps({"name": call["name"], "arguments": call["arguments"]},
                                                           ensure_ascii=False) + "\n</tool_call>")
            content = "\n".join(([content] if content else []) + blocks)
        elif role == "tool":
            call_id = message.get("tool_call_id")
            result = {"name": message.get("name") or names.get(str(call_id)), "tool_call_id": call_id,
                      "content": content}
            role, content = "user", "<tool_response>\n" + json.dumps(result, ensure_ascii=False) + "\n</tool_response>"
        out.append({"role": role, "content": content})
    if request is not None and request.tools:
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + _tools_prompt(request)}
        else:
            out.insert(0, {"role": "system", "content": _tools_prompt(request)})
    return out


def render_tool_chat(tokenizer: Any, messages: Sequence[ToolChatMessage], request: ToolRequest | None) -> str:
    """The prompt text: through the template's own tool format when it has one, else the fallback."""
    if template_supports_tools(getattr(tokenizer, "chat_template", None)):
        tools = request.openai_tools() if request is not None and request.tools else None
        return str(tokenizer.apply_chat_template(template_messages(messages), tools=tools, tokenize=False,
                                                 add_generation_prompt=True))
    return str(tokenizer.apply_chat_template(fallback_messages(messages, request), tokenize=False,
                                             add_generation_prompt=True))
