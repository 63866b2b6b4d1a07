"""Applying a :class:`~lean_core.prompt_cache.PromptCachePlan` to LangChain messages and tools.

Shared by ``LeanPromptCache`` (LCEL) and ``LeanPromptCacheMiddleware`` (create_agent): both
describe the request to the framework-free planner and apply its markers here, the same way.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableBinding, ensure_config
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from lean_core.prompt_cache import (
    PROVIDER_CACHING,
    CacheProvider,
    MessageRole,
    PromptCachePlan,
    PromptCacheSettings,
    RequestShape,
    detect_cache_provider,
    plan_prompt_cache,
    prefix_identity,
)

__all__ = ["CachedRequest", "chat_model_of", "prepare_request", "provider_of", "run_tenant"]

# Anthropic block types that accept ``cache_control`` and that langchain-anthropic passes through.
_MARKABLE_BLOCKS = frozenset({"text", "tool_result", "image", "document", "file"})


@dataclass
class CachedRequest:
    """A request with its cache markers applied."""

    plan: PromptCachePlan
    system: SystemMessage | None
    messages: list[BaseMessage]
    tools: list[Any] | None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    """Request fields for the model call (``prompt_cache_key``)."""


def chat_model_of(runnable: Runnable[Any, Any]) -> tuple[BaseChatModel | None, list[Any] | None]:
    """The chat model under ``runnable`` (through ``bind``/``bind_tools`` bindings) and the tools
    bound on the way (the innermost binding's, as the model would receive them)."""
    tools: list[Any] | None = None
    current: Any = runnable
    while isinstance(current, RunnableBinding):
        if tools is None and isinstance(current.kwargs.get("tools"), list):
            tools = current.kwargs["tools"]
        current = current.bound
    return (current if isinstance(current, BaseChatModel) else None), tools


def provider_of(model: BaseChatModel | None, settings: PromptCacheSettings) -> CacheProvider:
    """``settings.provider``, or detected from the model's class, provider tag and model name."""
    if settings.provider != "auto":
        return settings.provider
    if model is None:
        return "unknown"
    try:
        params = model._get_ls_params()
    except Exception:  # a third-party model with a broken hook still gets a class-name guess
        params = {}
    name = params.get("ls_model_name") or getattr(model, "model", None) or getattr(model, "model_name", None)
    return detect_cache_provider(class_name=type(model).__name__, model_name=name if isinstance(name, str) else None,
                                 ls_provider=params.get("ls_provider"))


def run_tenant(settings: PromptCacheSettings, config: Mapping[str, Any] | None = None) -> str | None:
    """The tenant of the run (``config["metadata"]["tenant"]``; without ``config`` the config of
    the run in progress), else the settings'."""
    run_config: Mapping[str, Any] = config if config is not None else ensure_config()
    tenant = (run_config.get("metadata") or {}).get("tenant")
    return tenant if isinstance(tenant, str) and tenant else settings.tenant


def prepare_request(settings: PromptCacheSettings, *, model: BaseChatModel | None, system: SystemMessage | None,
                    messages: Sequence[BaseMessage], tools: Sequence[Any] | None,
                    tenant: str | None) -> CachedRequest:
    """Plan and apply the cache markers of one request. Nothing is mutated: marked messages and
    tools are copies."""
    provider = provider_of(model, settings)
    tool_list = list(tools) if tools else None
    shape = RequestShape(
        roles=[_role(m) for m in messages],
        markable=[_last_markable(m) is not None for m in messages],
        has_system=system is not None and bool(_blocks(system)),
        tool_count=len(tool_list or ()),
        existing_breakpoints=_existing_breakpoints(system, messages, tool_list),
        # Only a cache key needs the prefix's identity (hashing tool schemas is not free).
        prefix=_prefix(system, tool_list) if PROVIDER_CACHING[provider].style == "cache_key" else "",
    )
    plan = plan_prompt_cache(settings, shape, provider=provider, tenant=tenant)
    request = CachedRequest(plan=plan, system=system, messages=list(messages), tools=tool_list)
    if plan.prompt_cache_key is not None:
        request.model_kwargs["prompt_cache_key"] = plan.prompt_cache_key
    control = dict(plan.cache_control or {})
    if plan.mark_system and system is not None:
        request.system = _marked_system(system, control)
    for index in plan.message_indices:
        request.messages[index] = _marked_message(request.messages[index], control)
    if plan.tool_index is not None and tool_list is not None:
        tool_list[plan.tool_index] = _marked_tool(tool_list[plan.tool_index], control)
    return request


# -- describing ------------------------------------------------------------------------------
def _role(message: BaseMessage) -> MessageRole:
    kind = message.type
    if kind == "ai":
        return "assistant"
    if kind == "tool":
        return "tool"
    if kind == "system":
        return "system"
    return "user"


def _blocks(message: BaseMessage) -> list[Any]:
    content = message.content
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    return list(content)


def _last_markable(message: BaseMessage) -> int | None:
    """Index of the content block that can carry the marker, or None.

    An AI message's tool calls become ``tool_use`` blocks after its content, and langchain-anthropic
    rebuilds those from ``tool_calls`` without extra keys: the marker goes on its last text block
    (the tool_use blocks after it are then outside the cached prefix), and a message of tool
    calls only cannot be marked (the planner moves the breakpoint to the message before)."""
    blocks = _blocks(message)
    for index in range(len(blocks) - 1, -1, -1):
        block = blocks[index]
        if isinstance(block, str) and block.strip():
            return index
        if isinstance(block, dict) and block.get("type") in _MARKABLE_BLOCKS:
            if block.get("type") == "text" and not str(block.get("text", "")).strip():
                continue  # langchain-anthropic drops empty text blocks, marker and all
            return index
        if isinstance(message, AIMessage) and isinstance(block, dict) and block.get("type") == "tool_use":
            continue
        if not isinstance(message, AIMessage):
            return None  # the last block is of a kind that cannot carry a marker
    return None


def _has_marker(item: Any) -> bool:
    if isinstance(item, BaseTool):
        return "cache_control" in (item.extras or {})
    return isinstance(item, Mapping) and "cache_control" in item


def _existing_breakpoints(system: SystemMessage | None, messages: Sequence[BaseMessage],
                          tools: Sequence[Any] | None) -> int:
    count = sum(_has_marker(t) for t in tools or ())
    for message in [*([system] if system is not None else []), *messages]:
        if not isinstance(message.content, str):
            count += sum(_has_marker(b) for b in message.content)
    return count


def _prefix(system: SystemMessage | None, tools: Sequence[Any] | None) -> str:
    """The stable prefix's identity: the system text and the tool schemas."""
    parts = [system.text if system is not None else ""]
    for tool in tools or ():
        try:
            parts.append(json.dumps(convert_to_openai_tool(tool), sort_keys=True, default=str))
        except Exception:  # a provider-native tool dict (web search, ...) is its own identity
            parts.append(json.dumps(tool, sort_keys=True, default=str) if isinstance(tool, Mapping) else repr(tool))
    return prefix_identity(parts)


# -- marking ---------------------------------------------------------------------------------
def _with_control(block: Any, control: dict[str, str]) -> dict[str, Any]:
    if isinstance(block, str):
        return {"type": "text", "text": block, "cache_control": control}
    return {**block, "cache_control": control}


def _marked_system(system: SystemMessage, control: dict[str, str]) -> SystemMessage:
    blocks = _blocks(system)
    blocks[-1] = _with_control(blocks[-1], control)
    return system.model_copy(update={"content": blocks})


def _marked_message(message: BaseMessage, control: dict[str, str]) -> BaseMessage:
    index = _last_markable(message)
    if index is None:
        return message
    blocks = _blocks(message)
    blocks[index] = _with_control(blocks[index], control)
    # A ToolMessage's marked text block is fine too: langchain-anthropic hoists its
    # cache_control onto the tool_result block, where Anthropic accepts it.
    return message.model_copy(update={"content": blocks})


def _marked_tool(tool: Any, control: dict[str, str]) -> Any:
    if isinstance(tool, BaseTool):
        # langchain-anthropic copies a tool's extras into its Anthropic definition.
        return tool.model_copy(update={"extras": {**(tool.extras or {}), "cache_control": control}})
    if isinstance(tool, Mapping) and ("input_schema" in tool or tool.get("type") not in (None, "function")):
        return {**tool, "cache_control": control}  # already an Anthropic tool (or a server tool)
    convert = importlib.import_module("langchain_anthropic.chat_models").convert_to_anthropic_tool
    return {**convert(tool), "cache_control": control}
