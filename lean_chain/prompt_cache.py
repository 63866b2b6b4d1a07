"""LeanPromptCache: a chat model wrapped so every request carries its provider's prompt-cache markers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import (
    BaseMessage,
    BaseMessageChunk,
    HumanMessage,
    SystemMessage,
    convert_to_messages,
)
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from pydantic import ConfigDict

from lean_chain._prompt_cache_markers import (
    CachedRequest,
    chat_model_of,
    prepare_request,
    run_tenant,
)
from lean_core.errors import InvalidParameterError
from lean_core.prompt_cache import CacheProvider, CacheTTL, PromptCacheSettings

__all__ = ["LeanPromptCache"]


class LeanPromptCache(RunnableSerializable[LanguageModelInput, BaseMessage]):
    """A chat model (or ``llm.bind_tools(...)``) whose requests carry prompt-cache markers:
    Anthropic ``cache_control`` breakpoints on the last tool, the system prompt and the last
    stable turn; an OpenAI ``prompt_cache_key`` hashed from tenant and prefix; nothing for
    providers that cache on their own (see ``lean_core.prompt_cache.PROVIDER_CACHING``).

    It wraps the model rather than sitting between prompt and model (``prompt | X | llm``)
    because the markers depend on the model: its class decides the provider, its bound tools
    get the first breakpoint, and OpenAI's key is a request field, which a step before the
    model cannot set. Use it wherever the model went::

        llm = LeanPromptCache.wrap(ChatAnthropic(model="claude-sonnet-4-5").bind_tools(tools), ttl="1h")
        chain = prompt | llm

    The tenant of the key is the run's ``config["metadata"]["tenant"]``, else ``tenant=``.
    For ``create_agent`` use :class:`lean_chain.middleware.prompt_cache.LeanPromptCacheMiddleware`.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    llm: Runnable[LanguageModelInput, BaseMessage]
    """The chat model, possibly bound (``bind``, ``bind_tools``)."""
    settings: PromptCacheSettings = PromptCacheSettings()
    """Provider, TTL, tenant, breakpoints: see :class:`~lean_core.prompt_cache.PromptCacheSettings`."""

    @classmethod
    def wrap(cls, llm: Runnable[LanguageModelInput, BaseMessage], *, provider: CacheProvider | str = "auto",
             ttl: CacheTTL = "5m", tenant: str | None = None, namespace: str = "", cache_tools: bool = True,
             cache_system: bool = True, turn_breakpoints: int = 1, min_messages: int = 0) -> LeanPromptCache:
        """``llm`` with prompt-cache markers; the options are :class:`PromptCacheSettings`'."""
        if not isinstance(llm, Runnable):
            raise InvalidParameterError("llm", allowed="a LangChain chat model or a binding of one",
                                        received=type(llm).__name__)
        settings = PromptCacheSettings(provider=provider, ttl=ttl, tenant=tenant, namespace=namespace,
                                       cache_tools=cache_tools, cache_system=cache_system,
                                       turn_breakpoints=turn_breakpoints, min_messages=min_messages)
        return cls(llm=llm, settings=settings)

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return False

    @property
    def InputType(self) -> Any:
        return self.llm.InputType

    @property
    def OutputType(self) -> Any:
        return self.llm.OutputType

    def prepare(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                tenant: str | None = None) -> CachedRequest:
        """The request ``invoke`` would send: marked messages, tools and request fields, the plan.
        ``tenant`` overrides the run's tenant."""
        messages = _messages(input)
        model, tools = chat_model_of(self.llm)
        system = messages[0] if messages and isinstance(messages[0], SystemMessage) else None
        tenant = tenant if tenant is not None else run_tenant(self.settings, config)
        return prepare_request(self.settings, model=model, system=system,
                               messages=messages[1:] if system is not None else messages, tools=tools,
                               tenant=tenant)

    def marked(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               tenant: str | None = None, **kwargs: Any) -> tuple[list[BaseMessage], dict[str, Any]]:
        """The messages and call keywords to send to :attr:`llm` (``kwargs`` are the caller's
        own call keywords, kept): what ``invoke`` does before calling the model."""
        request = self.prepare(input, config, tenant=tenant)
        messages = ([request.system] if request.system is not None else []) + request.messages
        call_kwargs = {**kwargs, **request.model_kwargs}
        if request.tools is not None and request.plan.tool_index is not None:
            call_kwargs["tools"] = request.tools  # overrides the binding's unmarked tools
        return messages, call_kwargs

    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> BaseMessage:
        messages, call_kwargs = self.marked(input, config, **kwargs)
        return self.llm.invoke(messages, config, **call_kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> BaseMessage:
        messages, call_kwargs = self.marked(input, config, **kwargs)
        return await self.llm.ainvoke(messages, config, **call_kwargs)

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[BaseMessageChunk]:  # type: ignore[override]
        messages, call_kwargs = self.marked(input, config, **kwargs)
        yield from self.llm.stream(messages, config, **call_kwargs)  # type: ignore[misc]

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[BaseMessageChunk]:  # type: ignore[override]
        messages, call_kwargs = self.marked(input, config, **kwargs)
        async for chunk in self.llm.astream(messages, config, **call_kwargs):
            yield chunk  # type: ignore[misc]


def _messages(value: LanguageModelInput) -> list[BaseMessage]:
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    try:
        return convert_to_messages(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise InvalidParameterError("input", allowed="a str, a PromptValue or a list of messages",
                                    received=type(value).__name__) from exc
