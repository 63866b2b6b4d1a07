"""LeanPromptCacheMiddleware: provider prompt-cache markers on every model call of a LangChain agent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

from lean_chain._prompt_cache_markers import prepare_request
from lean_chain.middleware._common import check_tenant_key, resolve_tenant
from lean_core.prompt_cache import CacheProvider, CacheTTL, PromptCachePlan, PromptCacheSettings

__all__ = ["LeanPromptCacheMiddleware"]


class LeanPromptCacheMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Mark each model call of an agent for its provider's prompt cache.

    ``create_agent(model, tools, middleware=[LeanPromptCacheMiddleware()])``:

    * **Anthropic** (``ChatAnthropic``, or any model named ``claude-*``): ``cache_control``
      breakpoints, at most 4: the last tool definition (the whole tool list is cached), the
      system prompt, and the last stable turn -- the message right before the newest user or
      tool input -- so step *n+1* of the agent loop reads what step *n* wrote. ``ttl`` ``"5m"``
      (writes at 1.25x) or ``"1h"`` (2x). Markers the caller set count toward the 4; more raise
      :class:`~lean_core.errors.InvalidParameterError`.
    * **OpenAI** (``ChatOpenAI`` with an OpenAI model): a ``prompt_cache_key`` in the model
      settings, a hash of ``namespace``, the tenant and the system prompt + tool schemas (the
      tenant name is never sent).
    * **Providers that cache on their own** (DeepSeek, Gemini, xAI, vLLM, Groq, Azure) and
      unknown ones: the request is passed through unchanged.

    Unlike ``langchain_anthropic``'s ``AnthropicPromptCachingMiddleware`` it serves every provider
    (no warning for non-Anthropic models), places the conversation breakpoint itself (on the
    stable turn, not on the newest input, which a stateless request would pay to write and never
    read) and checks the 4-breakpoint limit before the provider refuses the request.

    Put it last in ``middleware=[...]`` (innermost, next to the model): the markers are then
    added after every other middleware has shaped the request, and response-cache keys
    (``LeanCacheMiddleware``) stay free of them. The agent's state keeps unmarked messages.

    The tenant: :func:`lean_core.cache.tenant_scope`, the run's context or config metadata under
    ``tenant_key``, else ``tenant``. :attr:`last_plan` is the plan of the latest call (for tests
    and logging).
    """

    def __init__(self, *, provider: CacheProvider | str = "auto", ttl: CacheTTL = "5m", tenant: str | None = None,
                 namespace: str = "", cache_tools: bool = True, cache_system: bool = True,
                 turn_breakpoints: int = 1, min_messages: int = 0, tenant_key: str = "tenant") -> None:
        super().__init__()
        self.settings = PromptCacheSettings(provider=provider, ttl=ttl, tenant=tenant, namespace=namespace,
                                            cache_tools=cache_tools, cache_system=cache_system,
                                            turn_breakpoints=turn_breakpoints, min_messages=min_messages)
        self.tenant_key = check_tenant_key(tenant_key)
        self.last_plan: PromptCachePlan | None = None

    def _marked(self, request: ModelRequest[Any]) -> ModelRequest[Any]:
        tenant = resolve_tenant(request.runtime, tenant_key=self.tenant_key, default_tenant=self.settings.tenant)
        prepared = prepare_request(self.settings, model=request.model, system=request.system_message,
                                   messages=request.messages, tools=request.tools, tenant=tenant)
        self.last_plan = prepared.plan
        if prepared.plan.empty:
            return request
        overrides: dict[str, Any] = {"system_message": prepared.system, "messages": prepared.messages}
        if prepared.tools is not None:
            overrides["tools"] = prepared.tools
        if prepared.model_kwargs:
            overrides["model_settings"] = {**request.model_settings, **prepared.model_kwargs}
        return request.override(**overrides)

    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> Any:
        return handler(self._marked(request))

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]) -> Any:
        return await handler(self._marked(request))
