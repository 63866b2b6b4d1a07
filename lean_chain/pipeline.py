"""``lean_pipeline``: the five layers as one LCEL Runnable in front of any LangChain chat model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from lean_chain._budget_binding import bind_budget
from lean_chain.prompt_cache import LeanPromptCache
from lean_core._usage_parsing import usage_from_payload
from lean_core.budget import finish_reason_of
from lean_core.cache.tenancy import current_prefix_salt
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.pipeline import (
    LeanPipeline,
    ModelCall,
    ModelReply,
    PipelineRequest,
    PipelineResult,
    PipelineSettings,
)
from lean_core.prompt_cache import PromptCacheSettings
from lean_core.tokens import count_tokens
from lean_core.usage import TokenUsage

__all__ = ["ChatModelPort", "lean_pipeline"]


class ChatModelPort:
    """Any LangChain chat model as the pipeline's model: the budget is bound under the parameter
    the model class takes (``max_tokens``, ``max_output_tokens``, ``num_predict``, ...), usage is
    the provider's ``usage_metadata`` (counted when the model reports none)."""

    def __init__(self, llm: BaseChatModel, *, prompt_cache: PromptCacheSettings | None = None) -> None:
        if not isinstance(llm, BaseChatModel):
            raise InvalidParameterError("llm", allowed="a LangChain BaseChatModel", received=type(llm).__name__)
        self.llm = llm
        self.prompt_cache = prompt_cache
        """Provider prompt-cache markers for every call (see :class:`~lean_chain.prompt_cache.LeanPromptCache`)."""
        params = llm._get_ls_params()
        self._name = str(params.get("ls_model_name") or llm._llm_type)

    @property
    def model_name(self) -> str:
        return self._name

    def _bound(self, call: ModelCall) -> tuple[Runnable[Any, BaseMessage], list[BaseMessage], dict[str, Any]]:
        messages = convert_to_messages([(m["role"], m["content"]) for m in call.messages])
        bound = bind_budget(self.llm, max_tokens=call.max_tokens, stop=call.stop, early_stop=call.early_stop)
        if self.prompt_cache is None:
            return bound, messages, {}
        # The key's tenant is the pipeline's prefix-cache salt: the tenant's name, or a salt of
        # this request alone when it has no tenant (its prefix is then shared with no one).
        marked, kwargs = LeanPromptCache(llm=bound, settings=self.prompt_cache).marked(
            messages, tenant=current_prefix_salt())
        return bound, marked, kwargs

    def _reply(self, message: BaseMessage) -> ModelReply:
        metadata = dict(getattr(message, "response_metadata", {}) or {})
        usage = getattr(message, "usage_metadata", None)
        text = message.text
        parsed = usage_from_payload(usage) if usage else None  # cache reads and writes included
        if parsed is None:
            parsed = TokenUsage(output_tokens=count_tokens(text, self._name).tokens, source="estimate")
        early = metadata.get("early_stop")
        return ModelReply(text=text, finish_reason=finish_reason_of(metadata), usage=parsed,
                          early_stop=None if early is None else str(early))

    def complete(self, call: ModelCall) -> ModelReply:
        bound, messages, kwargs = self._bound(call)
        return self._reply(bound.invoke(messages, **kwargs))

    async def acomplete(self, call: ModelCall) -> ModelReply:
        bound, messages, kwargs = self._bound(call)
        return self._reply(await bound.ainvoke(messages, **kwargs))


def _context_of(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Document):
        return (value.page_content,)
    if isinstance(value, Sequence):
        return tuple(v.page_content if isinstance(v, Document) else str(v) for v in value)
    raise InvalidParameterError("context", allowed="a str, a list of str or a list of Documents",
                                received=type(value).__name__)


def _request(value: Any, tenant: str | None) -> PipelineRequest:
    if isinstance(value, PipelineRequest):
        return value
    if isinstance(value, str):
        return PipelineRequest(question=value, tenant=tenant)
    if isinstance(value, Mapping):
        question = value.get("question") or value.get("input") or value.get("query")
        if not isinstance(question, str):
            raise InvalidParameterError("input", allowed='a str, or a dict with "question" (and "context")',
                                        received=sorted(value))
        return PipelineRequest(question=question, context=_context_of(value.get("context")),
                               tenant=value.get("tenant") or tenant)
    raise InvalidParameterError("input", allowed='a str, or a dict with "question" (and "context")',
                                received=type(value).__name__)


def _metadata_tenant(config: RunnableConfig | None) -> str | None:
    """The tenant of the run's metadata (``config={"metadata": {"tenant": ...}}``), as LeanCache reads it."""
    tenant = ((config or {}).get("metadata") or {}).get("tenant")
    return tenant if isinstance(tenant, str) and tenant else None


def _message(result: PipelineResult) -> AIMessage:
    usage = result.usage
    return AIMessage(
        content=result.answer,
        usage_metadata={"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                        "total_tokens": usage.input_tokens + usage.output_tokens,
                        # langchain-anthropic's convention: 1-hour writes apart from the others
                        "input_token_details": {
                            "cache_read": usage.cached_input_tokens,
                            "cache_creation": usage.cache_write_tokens - usage.cache_write_1h_tokens,
                            "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens}},
        response_metadata={"finish_reason": result.finish_reason, "lean_pipeline": result.model_dump(
            exclude={"messages"})})


def lean_pipeline(llm: BaseChatModel, *, settings: PipelineSettings | None = None, ledger: CostLedger | None = None,
                  retriever: BaseRetriever | None = None, cache: Any | None = None,
                  tenant: str | None = None) -> Runnable[Any, AIMessage]:
    """The five layers in front of ``llm`` as one Runnable.

    Input: a question str, or a dict ``{"question": ..., "context": str | [str] | [Document],
    "tenant": ...}``. The tenant comes from the input dict, else the run's metadata
    (``config={"metadata": {"tenant": ...}}``), else ``tenant=``, else the current tenant scope;
    with none of them the cache is not used for the request (nothing is shared); with a ``retriever`` the context is retrieved for the question. Output: an
    ``AIMessage`` whose ``response_metadata["lean_pipeline"]`` says what each layer did (cache hit,
    tokens before/after per layer). ``invoke``/``ainvoke``/``batch``/``abatch``/``stream`` work (a
    stream yields the whole answer once; the budget and cache decide before the first token).
    ``settings.prompt_cache`` (e.g. ``PipelineSettings(prompt_cache={"ttl": "1h"})``) marks each
    model call for the provider's prompt cache, as :class:`~lean_chain.prompt_cache.LeanPromptCache` does.

    Example::

        chain = lean_pipeline(ChatLeanVLLM(), retriever=store.as_retriever(), ledger=CostLedger()) | StrOutputParser()
    """
    port = ChatModelPort(llm, prompt_cache=settings.prompt_cache if settings is not None else None)
    pipeline = LeanPipeline(port, settings=settings, ledger=ledger, cache=cache)

    def run(value: Any, config: RunnableConfig) -> AIMessage:
        request = _request(value, _metadata_tenant(config) or tenant)
        if retriever is not None and not request.context:
            request = request.model_copy(update={"context": _context_of(retriever.invoke(request.question))})
        return _message(pipeline.invoke(request))

    async def arun(value: Any, config: RunnableConfig) -> AIMessage:
        request = _request(value, _metadata_tenant(config) or tenant)
        if retriever is not None and not request.context:
            docs = await retriever.ainvoke(request.question)
            request = request.model_copy(update={"context": _context_of(docs)})
        return _message(await pipeline.ainvoke(request))

    runnable: Runnable[Any, AIMessage] = RunnableLambda(run, afunc=arun, name="LeanPipeline")
    return runnable


