"""Function calling through the LlamaIndex wrappers (``LeanCachedLLM``, ``LeanBudgetLLM``).

A wrapper is a :class:`~llama_index.core.llms.function_calling.FunctionCallingLLM` whose tool
work belongs to the model it wraps: the wrapped model turns tools into call arguments, validates
the answer and reads the tool calls out of it. Only the chat itself runs through the wrapper
(``chat_with_tools`` and its variants call the wrapper's ``chat``), so a tool step is cached or
budgeted like any other chat.

This module also holds the checks the cache needs: which tools a call binds, whether a message
carries tool traffic, and whether an answer's tool calls are valid for the bound tools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    LLMMetadata,
    MessageRole,
    ToolCallBlock,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["InvalidToolCall", "WrappedFunctionCalling", "bound_tool_names", "check_tool_calls",
           "function_calling_inner", "has_tool_calls", "has_tool_traffic", "mirrored_metadata",
           "tool_description"]

# additional_kwargs keys that mark a message as part of a tool exchange (OpenAI-style providers).
_TOOL_KWARGS = ("tool_calls", "tool_call_id", "function_call")


class InvalidToolCall(ValueError):
    """An answer's tool call names an unbound tool or carries arguments that are not a JSON object."""


def function_calling_inner(llm: LLM) -> FunctionCallingLLM:
    """``llm`` when it is a function-calling LLM; otherwise the wrapper offers no tool calling."""
    if not isinstance(llm, FunctionCallingLLM):
        raise InvalidParameterError("llm", allowed="a FunctionCallingLLM to use tools through this wrapper",
                                    received=type(llm).__name__)
    return llm


def mirrored_metadata(llm: LLM) -> LLMMetadata:
    """A wrapper's metadata: the wrapped model's, function calling included, but only where the
    wrapped model is a ``FunctionCallingLLM`` (whose tool hooks the wrapper uses)."""
    metadata = llm.metadata
    if metadata.is_function_calling_model and not isinstance(llm, FunctionCallingLLM):
        return metadata.model_copy(update={"is_function_calling_model": False})
    return metadata


class WrappedFunctionCalling:
    """The tool hooks of a wrapper with an ``llm`` field: each is the wrapped model's own.

    ``chat_with_tools`` / ``achat_with_tools`` / ``stream_chat_with_tools`` /
    ``astream_chat_with_tools`` come from :class:`FunctionCallingLLM`: they prepare the call here
    (the wrapped model's way) and then call the wrapper's ``chat`` family, so the cache or the
    budget sees every tool step.
    """

    llm: LLM

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[BaseTool],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        inner = function_calling_inner(self.llm)
        return inner._prepare_chat_with_tools_compat(
            tools, user_msg=user_msg, chat_history=chat_history, verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls, tool_required=tool_required, **kwargs)

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[BaseTool],
                                           allow_parallel_tool_calls: bool = False,
                                           **kwargs: Any) -> ChatResponse:
        return function_calling_inner(self.llm)._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs)

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        return function_calling_inner(self.llm).get_tool_calls_from_response(
            response, error_on_no_tool_call=error_on_no_tool_call, **kwargs)


# -- what a call binds and what a message carries -------------------------------------------------
def tool_description(tool: BaseTool) -> dict[str, Any]:
    """What a model is told about ``tool``: its name, description and parameter schema (the
    function behind it never reaches the model, so it is not part of a cache key)."""
    metadata = tool.metadata
    return {"tool": metadata.get_name(), "description": metadata.description,
            "parameters": metadata.get_parameters_dict()}


def bound_tool_names(kwargs: Mapping[str, Any]) -> frozenset[str] | None:
    """The tool names a chat call binds (its ``tools`` keyword as the wrapped model prepared it:
    OpenAI-style ``{"function": {"name": ...}}`` dicts, ``{"name": ...}`` dicts or tool objects);
    an empty set when it binds none; None when a tool's name cannot be read."""
    tools = kwargs.get("tools")
    if tools is None:
        return frozenset()
    if isinstance(tools, str | bytes) or not isinstance(tools, Sequence):
        return None
    names: set[str] = set()
    for tool in tools:
        name = _tool_name(tool)
        if not name:
            return None
        names.add(name)
    return frozenset(names)


def _tool_name(tool: Any) -> str | None:
    if isinstance(tool, Mapping):
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return str(function["name"])
        return str(tool["name"]) if isinstance(tool.get("name"), str) else None
    metadata = getattr(tool, "metadata", None)
    name = getattr(metadata, "name", None)
    return name if isinstance(name, str) else None


def has_tool_calls(message: ChatMessage) -> bool:
    """Whether ``message`` asks for tool calls (tool-call blocks or provider ``tool_calls``)."""
    return (any(isinstance(block, ToolCallBlock) for block in message.blocks)
            or bool(message.additional_kwargs.get("tool_calls") or message.additional_kwargs.get("function_call")))


def has_tool_traffic(messages: Sequence[ChatMessage]) -> bool:
    """Whether a conversation holds a tool call or a tool result anywhere."""
    for message in messages:
        if message.role in (MessageRole.TOOL, MessageRole.FUNCTION) or has_tool_calls(message):
            return True
        if any(message.additional_kwargs.get(key) for key in _TOOL_KWARGS):
            return True
    return False


def check_tool_calls(response: ChatResponse, names: frozenset[str] | None, llm: LLM) -> None:
    """Raise :class:`InvalidToolCall` unless every tool call in ``response`` names one of the
    bound tools ``names`` and carries a JSON object of arguments, and the wrapped model itself
    reads them back without error (None ``names``: the bound tools are unknown, so no call can
    be shown valid). An answer without tool calls passes."""
    message = response.message
    if not has_tool_calls(message):
        return
    if not names:
        raise InvalidToolCall("the answer calls tools but the bound tools are unknown")
    calls = [(block.tool_name, block.tool_kwargs) for block in message.blocks if isinstance(block, ToolCallBlock)]
    if not calls:
        calls = [_provider_call(call) for call in message.additional_kwargs.get("tool_calls") or []]
        function_call = message.additional_kwargs.get("function_call")
        if function_call:
            calls.append(_provider_function(function_call))
    for name, arguments in calls:
        if name not in names:
            raise InvalidToolCall(f"a call of the unbound tool {name!r}")
        if not isinstance(_arguments(arguments), dict):
            raise InvalidToolCall(f"the arguments of {name!r} are not a JSON object")
    if isinstance(llm, FunctionCallingLLM):
        try:
            selections = llm.get_tool_calls_from_response(response, error_on_no_tool_call=False)
        except Exception as exc:
            raise InvalidToolCall(f"the wrapped model cannot read the tool calls: {exc}") from exc
        if len(selections) != len(calls) or any(s.tool_name not in names for s in selections):
            raise InvalidToolCall("the wrapped model reads other tool calls than the answer holds")


def _provider_call(call: Any) -> tuple[Any, Any]:
    function = call.get("function") if isinstance(call, Mapping) else getattr(call, "function", None)
    return _provider_function(function)


def _provider_function(function: Any) -> tuple[Any, Any]:
    if isinstance(function, Mapping):
        return function.get("name"), function.get("arguments")
    return getattr(function, "name", None), getattr(function, "arguments", None)


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return json.loads(arguments)
        except ValueError:
            return None
    return arguments
