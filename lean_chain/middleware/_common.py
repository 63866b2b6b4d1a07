"""What the agent middleware share: the run's tenant, the question, the model's labels, and the
translation of LangChain messages onto lean_core's framework-free types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables.config import var_child_runnable_config

from lean_core.cache import tenancy
from lean_core.cache.agent_key import TOOL_CALLS_EXTRA, TOOL_ROLE
from lean_core.cache.conversation_key import USER_ROLE, ConversationTurn
from lean_core.cache.types import check_tenant
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from langchain.agents.middleware import ModelRequest, ModelResponse

__all__ = ["CACHE_METADATA_KEY", "check_tenant_key", "last_user_text", "model_labels", "request_messages", "resolve_tenant", "response_message",
           "role_of", "turns_of"]

CACHE_METADATA_KEY = "lean_cache"
"""``response_metadata`` key of an AIMessage served from the response cache: ``{"hit": "exact" |
"semantic", "similarity": float}``."""
_ROLES = {"human": USER_ROLE, "ai": "assistant", "system": "system", "tool": TOOL_ROLE, "function": TOOL_ROLE}


def check_tenant_key(tenant_key: object) -> str:
    if not isinstance(tenant_key, str) or not tenant_key:
        raise InvalidParameterError("tenant_key", allowed="a non-empty str", received=tenant_key)
    return tenant_key


def _tenant_in(source: object, key: str, where: str) -> str | None:
    value = source.get(key) if isinstance(source, Mapping) else getattr(source, key, None)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return check_tenant(value, parameter=f"{where}[{key!r}]")


def resolve_tenant(runtime: object, *, tenant_key: str, default_tenant: str | None = None) -> str | None:
    """The tenant of the agent run, first match wins: :func:`lean_core.cache.tenant_scope`, the
    run's context (``agent.invoke(..., context={"tenant": ...})``: a mapping or an object with
    that attribute), the run's config metadata (``config={"metadata": {"tenant": ...}}``), then
    ``default_tenant``. A present but invalid tenant raises (never a fallback to a shared one)."""
    scoped = tenancy.current_tenant()
    if scoped is not None:
        return scoped
    context = getattr(runtime, "context", None)
    tenant = None if context is None else _tenant_in(context, tenant_key, "context")
    if tenant is None:
        config = var_child_runnable_config.get() or {}
        tenant = _tenant_in(config.get("metadata") or {}, tenant_key, "config metadata")
    return default_tenant if tenant is None else tenant


def role_of(message: BaseMessage) -> str:
    """The role lean_core uses for ``message`` (``"user"``, ``"assistant"``, ``"tool"``, ...)."""
    if message.type == "chat":
        return str(getattr(message, "role", "chat"))
    return _ROLES.get(message.type, message.type)


def last_user_text(messages: Sequence[BaseMessage]) -> str | None:
    """The text of the last human message (the person's question), or None."""
    for message in reversed(messages):
        if message.type == "human":
            return message.text
    return None


def turns_of(system: BaseMessage | None, messages: Sequence[BaseMessage]) -> list[ConversationTurn]:
    """The request as cache turns. Message ids and tool-call ids are left out (LangGraph and the
    providers mint new ones on every run; calls and results are matched by position), and so is
    ``response_metadata`` (provider bookkeeping, never sent back)."""
    return [_turn(m) for m in ([system] if system is not None else []) + list(messages)]


def _turn(message: BaseMessage) -> ConversationTurn:
    content = message.content
    extras: dict[str, Any] = {}
    if not isinstance(content, str):
        extras["content"] = content
    if message.name:
        extras["name"] = message.name
    if isinstance(message, AIMessage):
        if message.tool_calls:
            extras[TOOL_CALLS_EXTRA] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        if message.invalid_tool_calls:
            extras["invalid_tool_calls"] = [{"name": c.get("name"), "args": c.get("args")}
                                            for c in message.invalid_tool_calls]
    if message.type == "tool":
        extras["status"] = getattr(message, "status", "success")
    return ConversationTurn(role_of(message), content if isinstance(content, str) else "", extras or None)


def model_labels(model: object) -> tuple[str, str | None]:
    """(model name, provider) of a LangChain chat model, as its tracing params name them."""
    params: Mapping[str, Any] = {}
    get = getattr(model, "_get_ls_params", None)
    if callable(get):
        params = get() or {}
    name = params.get("ls_model_name") or getattr(model, "model_name", None) or getattr(model, "model", None)
    provider = params.get("ls_provider")
    return str(name or getattr(model, "_llm_type", type(model).__name__)), provider if isinstance(provider, str) else None


def response_message(response: ModelResponse[Any]) -> AIMessage | None:
    """The AIMessage of a model step's response (the last one), or None."""
    for message in reversed(response.result):
        if isinstance(message, AIMessage):
            return message
    return None


def request_messages(request: ModelRequest[Any]) -> list[BaseMessage]:
    """What the model is sent: the system message, then the conversation."""
    system = request.system_message
    return ([system] if system is not None else []) + list(request.messages)
