"""Tool calling on the vLLM backends, once for LangChain and LlamaIndex alike.

A :class:`ToolRequest` holds the tools a call may use and the caller's tool choice, validated once:

- ``"auto"``: the model decides. In process, a configured vLLM tool parser (``tool_parser=``, e.g.
  ``"hermes"``) extracts calls from the model's own tool format; with no parser configured the
  call is plain text generation and returns no tool calls (a model without a tool format, like the
  bundled SmolLM2, cannot be parsed reliably). A vLLM server applies its own parser.
- ``"required"`` (``"any"`` and ``True`` are accepted for it): a call of any bound tool, produced
  by guided decoding against :meth:`ToolRequest.guided_schema` (a ``{"name", "arguments"}``
  object, one ``anyOf`` branch per tool) -- works for any model. One call per turn unless
  ``parallel_tool_calls=True`` (then an array of one or more calls: guided decoding cannot tell
  when a model is done, and small models repeat calls until ``max_tokens``).
- a tool name (or ``{"type": "function", "function": {"name": ...}}``): exactly that tool, its
  arguments guided by the tool's own JSON schema.
- ``"none"``: no tool calls; tools are still shown to the model.

Everything the model produces is checked against the bound tools: an unknown tool name or
arguments that are not a JSON object raise :class:`ToolCallOutputError`; nothing is dropped.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lean_core.errors import InvalidParameterError
from lean_core.generation import Choice, GenerationChunk

__all__ = [
    "ToolCall",
    "ToolCallDelta",
    "ToolCallOutputError",
    "ToolCallingChoice",
    "ToolCallingChunk",
    "ToolChoiceMode",
    "ToolRequest",
    "ToolSpec",
    "new_tool_call_id",
]

ToolChoiceMode = Literal["auto", "required", "none", "named"]
"""How tools are chosen: the model decides, at least one call, no call, or one named tool."""

_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_REQUIRED_ALIASES = ("required", "any")
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


class ToolCallOutputError(InvalidParameterError):
    """The model's output is not a valid call of a bound tool (unknown name, arguments that are
    not a JSON object). ``received`` is the offending output."""

    def __init__(self, *, allowed: str, received: Any) -> None:
        super().__init__("tool call in the model output", allowed=allowed, received=received)


def new_tool_call_id() -> str:
    """A fresh tool-call id in OpenAI's shape (``call_`` + 24 hex digits)."""
    return f"call_{uuid.uuid4().hex[:24]}"


class ToolSpec(BaseModel):
    """One tool: a name, what it does, and the JSON schema of its arguments (an object)."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(_EMPTY_OBJECT))
    """JSON schema of the arguments; always an object schema."""

    @classmethod
    def from_openai(cls, tool: Mapping[str, Any] | ToolSpec) -> ToolSpec:
        """From OpenAI's ``{"type": "function", "function": {...}}`` or a flat ``{"name", ...}``."""
        if isinstance(tool, ToolSpec):
            return tool
        if not isinstance(tool, Mapping):
            raise InvalidParameterError("tools", allowed="OpenAI tool dicts ({'type': 'function', 'function': "
                                        "{'name', 'description', 'parameters'}})", received=tool)
        if tool.get("type", "function") != "function":
            raise InvalidParameterError("tools", allowed="function tools (type 'function')",
                                        received=tool.get("type"))
        function = tool.get("function", tool)
        name = function.get("name") if isinstance(function, Mapping) else None
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidParameterError("tools", allowed="a tool name of 1-64 letters, digits, '_', '-' or '.'",
                                        received=name)
        parameters = function.get("parameters") or dict(_EMPTY_OBJECT)
        if not isinstance(parameters, Mapping) or parameters.get("type", "object") != "object":
            raise InvalidParameterError(f"tools[{name}].parameters", allowed="a JSON schema of type 'object'",
                                        received=parameters)
        return cls(name=name, description=str(function.get("description") or ""),
                   parameters={"type": "object", **dict(parameters)})

    def to_openai(self) -> dict[str, Any]:
        """OpenAI's wire format, as ``tools=`` of a chat completion and chat templates take it."""
        return {"type": "function",
                "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


class ToolCall(BaseModel):
    """A call the model made: an id, the tool's name and its parsed arguments."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments_json}}


class ToolCallDelta(BaseModel):
    """A streamed piece of tool call ``index``: the id and name arrive once, arguments as JSON text
    pieces that concatenate to the full arguments."""

    model_config = ConfigDict(frozen=True)

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ToolCallingChoice(Choice):
    """A candidate of a request made with tools: ``text`` is the content besides the calls."""

    tool_calls: tuple[ToolCall, ...] = ()


class ToolCallingChunk(GenerationChunk):
    """A streamed piece of a request made with tools."""

    tool_call_deltas: tuple[ToolCallDelta, ...] = ()


class ToolRequest(BaseModel):
    """The tools of one call and how the model must use them (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    tools: tuple[ToolSpec, ...]
    mode: ToolChoiceMode = "auto"
    forced_tool: str | None = None
    """The tool a ``named`` choice forces."""
    parallel_tool_calls: bool = False
    """With ``required``: whether the model may make several calls in one turn (sent to a server
    as ``parallel_tool_calls``)."""
    parser: str | None = None
    """vLLM tool parser for ``auto`` in process (e.g. ``hermes``); None: ``auto`` is plain text."""

    @classmethod
    def build(cls, tools: Sequence[Mapping[str, Any] | ToolSpec], tool_choice: Any = None, *,
              parallel_tool_calls: bool | None = None, parser: str | None = None) -> ToolRequest:
        """Validate ``tools`` and ``tool_choice`` (None = ``"auto"``) into a request."""
        if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
            raise InvalidParameterError("tools", allowed="a list of tools", received=tools)
        unique: dict[str, ToolSpec] = {}
        for spec in map(ToolSpec.from_openai, tools):
            # The same tool bound twice (a class and its JSON schema, which differ in titles only) is
            # one tool; two tools under one name would make every call ambiguous.
            first = unique.setdefault(spec.name, spec)
            if first is not spec and _validating(first.parameters) != _validating(spec.parameters):
                raise InvalidParameterError("tools", allowed="distinct tools with distinct names",
                                            received=f"two different tools named {spec.name!r}")
        specs = tuple(unique.values())
        names = list(unique)
        mode, forced = _choice(tool_choice, names)
        if mode != "none" and not specs:
            raise InvalidParameterError("tool_choice", allowed="'none' or no tool_choice when no tools are bound",
                                        received=tool_choice)
        return cls(tools=specs, mode=mode, forced_tool=forced,
                   parallel_tool_calls=bool(parallel_tool_calls),
                   parser=parser)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.tools)

    @property
    def guided(self) -> bool:
        """Whether calls are produced by guided decoding (``required`` or a named tool)."""
        return self.mode in ("required", "named")

    def tool(self, name: str) -> ToolSpec:
        for spec in self.tools:
            if spec.name == name:
                return spec
        raise ToolCallOutputError(allowed=f"a call of one of the bound tools {list(self.names)}", received=name)

    def guided_schema(self) -> dict[str, Any] | None:
        """The JSON schema guided decoding follows, or None when generation is not guided.

        Named tool: the tool's argument schema (the name is known). ``required``: a
        ``{"name": <one tool>, "arguments": <its schema>}`` object, one ``anyOf`` branch per tool;
        with ``parallel_tool_calls``, an array of at least one such object (``vllm serve``'s shape).
        """
        if self.mode == "named":
            return self.tool(str(self.forced_tool)).parameters
        if self.mode != "required":
            return None
        branches = [{"type": "object",
                     "properties": {"name": {"type": "string", "enum": [spec.name]}, "arguments": spec.parameters},
                     "required": ["name", "arguments"], "additionalProperties": False}
                    for spec in self.tools]
        call: dict[str, Any] = branches[0] if len(branches) == 1 else {"anyOf": branches}
        if not self.parallel_tool_calls:
            return call
        return {"type": "array", "minItems": 1, "items": call}

    def parse_guided(self, text: str) -> tuple[ToolCall, ...]:
        """The calls in a guided answer (see :meth:`guided_schema`), checked against the tools."""
        value = _json(text, self)
        if self.mode == "named":
            return (self.checked_call(str(self.forced_tool), value),)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ToolCallOutputError(allowed="a {name, arguments} object or a non-empty array of them",
                                      received=text)
        calls = []
        for item in value:
            if not isinstance(item, dict) or "name" not in item:
                raise ToolCallOutputError(allowed="{name, arguments} objects", received=item)
            calls.append(self.checked_call(item["name"], item.get("arguments", {})))
        return tuple(calls)

    def checked_call(self, name: Any, arguments: Any, call_id: str | None = None) -> ToolCall:
        """A call of a bound tool with JSON-object arguments (a JSON string is parsed)."""
        if not isinstance(name, str) or name not in self.names:
            raise ToolCallOutputError(allowed=f"a call of one of the bound tools {list(self.names)}", received=name)
        if isinstance(arguments, str):
            arguments = _json(arguments, self) if arguments.strip() else {}
        if not isinstance(arguments, dict):
            raise ToolCallOutputError(allowed=f"a JSON object of arguments for tool {name!r}", received=arguments)
        return ToolCall(id=call_id or new_tool_call_id(), name=name, arguments=arguments)

    def openai_tool_choice(self) -> str | dict[str, Any]:
        """``tool_choice`` in OpenAI's wire format."""
        if self.mode == "named":
            return {"type": "function", "function": {"name": self.forced_tool}}
        return self.mode

    def openai_tools(self) -> list[dict[str, Any]]:
        return [spec.to_openai() for spec in self.tools]


def _choice(tool_choice: Any, names: list[str]) -> tuple[ToolChoiceMode, str | None]:
    allowed = (f"'auto', 'required' (or 'any', True), 'none', False, a bound tool name {names} or "
               "{'type': 'function', 'function': {'name': ...}}")
    if tool_choice is None or tool_choice == "auto":
        return "auto", None
    if tool_choice is True or tool_choice in _REQUIRED_ALIASES:
        return "required", None
    if tool_choice is False or tool_choice == "none":
        return "none", None
    name: Any = tool_choice
    if isinstance(tool_choice, Mapping):
        function = tool_choice.get("function")
        name = function.get("name") if isinstance(function, Mapping) else tool_choice.get("name")
    if isinstance(name, str) and name in names:
        return "named", name
    if isinstance(name, str) and isinstance(tool_choice, (str, Mapping)):
        raise InvalidParameterError("tool_choice", allowed=f"the name of a bound tool {names}", received=name)
    raise InvalidParameterError("tool_choice", allowed=allowed, received=tool_choice)


_ANNOTATIONS = frozenset({"title", "description", "examples", "$comment"})


def _validating(schema: Any) -> Any:
    """A schema without its annotation keywords (they never change which values validate)."""
    if isinstance(schema, dict):
        return {k: _validating(v) for k, v in schema.items()
                if k not in _ANNOTATIONS or not isinstance(v, (str, list))}
    if isinstance(schema, list):
        return [_validating(v) for v in schema]
    return schema


def _json(text: str, request: ToolRequest) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ToolCallOutputError(allowed=f"valid JSON for a call of {list(request.names)} ({exc.msg})",
                                  received=text) from exc
