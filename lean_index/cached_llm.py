"""LeanCachedLLM: any LlamaIndex LLM behind the response cache (exact and verified semantic hits)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    TextBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from pydantic import Field, PrivateAttr, SerializeAsAny

from lean_core.cache.error_budget import check_max_error_rate
from lean_core.cache.response_cache import CacheMode, ResponseCache, check_ttl
from lean_core.cache.tenancy import current_tenant
from lean_core.cache.types import CacheLookup, CacheNamespace, check_tenant
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_index import _cache_codec as codec
from lean_index._function_calling import (
    InvalidToolCall,
    WrappedFunctionCalling,
    bound_tool_names,
    check_tool_calls,
    mirrored_metadata,
)

__all__ = ["LeanCachedLLM"]

# Prompt-building settings taken from the wrapped LLM unless given, so that predict() and the
# query engines format prompts through the wrapper exactly as they would through the LLM itself.
_INHERITED = ("system_prompt", "messages_to_prompt", "completion_to_prompt", "output_parser",
              "pydantic_program_mode", "query_wrapper_prompt")


@dataclass(frozen=True)
class _Plan:
    """One call as the cache sees it; ``key`` is None when it goes straight to the wrapped LLM."""

    key: codec.CacheKey | None
    namespace: CacheNamespace | None
    """None with a key: no tenant resolved, so the call is neither served nor stored (counted)."""
    kwargs: dict[str, Any]
    """What is forwarded to the wrapped LLM (``tenant`` removed)."""
    model: str
    """The model name written on ledger savings events."""


class LeanCachedLLM(WrappedFunctionCalling, FunctionCallingLLM):
    """Serve repeated (and, in semantic mode, verified reworded) requests from the response cache.

    Wraps any LlamaIndex LLM. ``complete``/``chat`` and their async and streaming variants look
    the request up first; a hit is returned without calling the wrapped LLM and is marked
    ``additional_kwargs["lean_cache"] == "exact"`` or ``"semantic"``; a miss calls the wrapped
    LLM and stores its answer (a stream's once it has finished without error).

    Answers are shared only inside one namespace: the tenant, and the wrapped model's identity —
    its class, ``metadata``, every field that can shape an answer (temperature, max tokens,
    system prompt, ...; credentials and client plumbing are left out), the call kind
    (``complete`` or ``chat``), ``formatted`` and any extra call keyword arguments. Changing the
    model or a sampling parameter therefore never serves an old answer. A chat is keyed by
    :func:`lean_core.cache.conversation_key` (the rule ``LeanCache`` uses too): the earlier turns
    join the namespace, and the final turn's text is the prompt that is matched, so a semantic hit
    only rewords the last turn of an otherwise identical conversation; a conversation whose final
    turn is not plain user text (another role, non-text blocks, ``additional_kwargs``) or that
    holds a tool call or tool result anywhere is matched exactly only. Requests that cannot be
    keyed faithfully (image, audio, video or document blocks, non-JSON objects in the call
    arguments) bypass the cache, as do responses that would not come back identical.

    **Function calling**: when the wrapped LLM is a ``FunctionCallingLLM``, so is the wrapper
    (``metadata.is_function_calling_model`` is the wrapped model's), and a LlamaIndex
    ``FunctionAgent`` runs through it. The wrapped model prepares the tools and reads the tool
    calls; every step's chat goes through the cache. The bound tools (names, descriptions,
    schemas) and ``tool_choice`` are part of the key, so a step is never served for another tool
    set; an answer's tool calls are stored with their ids, names and arguments and come back as
    the same calls. An answer whose tool call names an unbound tool or carries arguments that are
    not a JSON object is not stored.

    **Tenant**, first match wins: ``tenant=`` on the call (not forwarded to the wrapped LLM);
    :func:`lean_core.cache.tenant_scope` active in the current context (it reaches LlamaIndex
    workflow steps, asyncio tasks and ``asyncio.to_thread``; threads you start yourself need
    ``contextvars.copy_context().run``); the ``tenant`` field. With none of them the call
    **fails closed**: the wrapped LLM answers it and nothing is served or stored (counted in
    ``cache.stats.no_tenant``). Set the field to share one namespace across such calls on purpose.

    The cache never breaks a call: a store, embedding or encoding failure is a miss on lookup and
    a skipped write on store (counted in ``cache.stats``, logged once per kind); the wrapped LLM's
    answer always reaches the caller. Constructing the wrapper does no I/O: the default cache opens
    its SQLite file on the first lookup.

    Example::

        from llama_index.llms.openai import OpenAI
        from lean_index import LeanCachedLLM
        llm = LeanCachedLLM(OpenAI(model="gpt-4o-mini"), tenant="acme", ttl_s=86400)
        index.as_query_engine(llm=llm).query("How do I reset my password?")
    """

    llm: SerializeAsAny[LLM]
    """The LLM that answers cache misses (any LlamaIndex LLM)."""
    tenant: str | None = None
    """Whose cache entries are read and written when neither the call (``tenant=``) nor a
    :func:`~lean_core.cache.tenant_scope` names one: a non-empty str of at most 256 characters.
    None (the default since issue 22; it was ``"default"``): such calls are not cached. Entries
    are never served across tenants."""
    mode: CacheMode = "semantic"
    """``"semantic"``: exact matches, then reworded prompts that the calibrated verifier accepts;
    ``"exact"``: only prompts equal after whitespace/Unicode normalisation. Taken from ``cache``
    when one is given."""
    ttl_s: float | None = None
    """Seconds (> 0) a new entry may be served; None uses the cache's default (no expiry for
    the default cache)."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """Where every lookup is recorded as a "cache" savings event (a hit saves the original
    call's tokens). Taken from ``cache`` when one is given."""
    max_error_rate: float | None = None
    """δ in (0, 0.5]: serve semantic hits under an error budget (only where explorations bound the
    share of wrong hits by δ; :mod:`lean_core.cache.error_budget`) instead of the static
    threshold; None (default): the static verifier. Taken from ``cache`` when one is given."""
    answer_equivalence: Any = Field(None, exclude=True)
    """With ``max_error_rate``: how a fresh answer is compared with a cached one (an
    ``AnswerEquivalence`` or a callable ``(cached, fresh) -> bool``; None: the default check).
    Only without ``cache``."""

    _cache: ResponseCache = PrivateAttr()

    def __init__(self, llm: LLM, *, cache: ResponseCache | None = None, **data: Any) -> None:
        """``llm``: the LLM to wrap. ``cache``: the response cache to use (default: a
        :class:`~lean_core.cache.ResponseCache` on the default SQLite file, built with this
        wrapper's ``mode``, ``ttl_s`` and ``ledger``; nothing is opened until the first call)."""
        if not isinstance(llm, LLM):
            raise InvalidParameterError("llm", allowed="a LlamaIndex LLM (llama_index.core.llms.LLM)",
                                        received=type(llm).__name__)
        _check_options(data)
        if cache is not None:
            data = _options_from_cache(cache, data)
        for name in _INHERITED:
            if name not in data:
                data[name] = getattr(llm, name, None)
        super().__init__(llm=llm, **data)
        self._cache = cache if cache is not None else ResponseCache(
            mode=self.mode, ttl_s=self.ttl_s, ledger=self.ledger, max_error_rate=self.max_error_rate,
            answer_equivalence=self.answer_equivalence)

    @classmethod
    def class_name(cls) -> str:
        return "LeanCachedLLM"

    @property
    def cache(self) -> ResponseCache:
        """The response cache: its ``stats``, ``invalidate()`` and store."""
        return self._cache

    @property
    def metadata(self) -> LLMMetadata:
        """The wrapped LLM's metadata. ``is_function_calling_model`` is the wrapped model's too,
        and only where the wrapped model is a ``FunctionCallingLLM`` (whose tool hooks the
        wrapper uses)."""
        return mirrored_metadata(self.llm)

    def to_payload(self) -> dict[str, Any]:
        """The wrapped LLM's payload, marked ``lean_cache`` (the mode): the wrapped LLM reports the
        real calls itself, so handlers such as ``LeanCostHandler`` skip this one's events."""
        return {**self.llm.to_payload(), "class_name": self.class_name(), "lean_cache": self._cache.mode,
                "wrapped_class_name": codec.class_name_of(self.llm)}

    # -- planning (no I/O) ---------------------------------------------------------------------
    def _tenant(self, kwargs: dict[str, Any]) -> str | None:
        tenant = kwargs.pop("tenant", None)
        if tenant is None:
            tenant = current_tenant()
        if tenant is None:
            tenant = self.tenant
        return None if tenant is None else check_tenant(tenant)

    def _plan_complete(self, prompt: str, formatted: bool, kwargs: dict[str, Any]) -> _Plan:
        if not isinstance(prompt, str):
            raise InvalidParameterError("prompt", allowed="a str", received=type(prompt).__name__)
        tenant = self._tenant(kwargs)
        identity = codec.llm_identity(self.llm)
        key = self._keyed(lambda: codec.completion_key(identity, prompt, formatted, kwargs))
        return _plan(key, tenant, kwargs, identity)

    def _plan_chat(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> _Plan:
        tenant = self._tenant(kwargs)
        identity = codec.llm_identity(self.llm)
        key = self._keyed(lambda: codec.chat_key(identity, messages, kwargs))
        return _plan(key, tenant, kwargs, identity)

    def _keyed(self, make: Callable[[], codec.CacheKey]) -> codec.CacheKey | None:
        """The request's key, or None: not keyable faithfully (by design), or keying failed
        (counted as a lookup error; the wrapped LLM answers)."""
        try:
            return make()
        except codec.Uncacheable:
            return None
        except Exception as exc:
            self._cache.report_failure("lookup", exc)
            return None

    # -- cache I/O, sync and async ---------------------------------------------------------------
    def _lookup(self, plan: _Plan) -> CacheLookup | None:
        if plan.key is None:
            return None
        return self._cache.lookup(plan.key.prompt, namespace=plan.namespace, model=plan.model,
                                  exact_only=plan.key.exact_only)

    async def _alookup(self, plan: _Plan) -> CacheLookup | None:
        if plan.key is None:
            return None
        return await self._cache.alookup(plan.key.prompt, namespace=plan.namespace, model=plan.model,
                                         exact_only=plan.key.exact_only)

    def _entry(self, plan: _Plan, response: object) -> tuple[str, int, int] | None:
        """(payload, input tokens, output tokens) to store, or None: nothing to store, or the
        response could not be serialised (counted as a store error; the caller still gets it)."""
        if plan.key is None or plan.namespace is None:
            return None
        try:
            if isinstance(response, CompletionResponse):
                return _completion_entry(plan, response)
            return _chat_entry(plan, response, self.llm) if isinstance(response, ChatResponse) else None
        except Exception as exc:
            self._cache.report_failure("store", exc)
            return None

    def _store(self, plan: _Plan, response: object) -> None:
        entry = self._entry(plan, response)
        if entry is None or plan.key is None or plan.namespace is None:
            return
        payload, tokens_in, tokens_out = entry
        self._cache.update(plan.key.prompt, payload, namespace=plan.namespace, ttl_s=self.ttl_s,
                           input_tokens=tokens_in, output_tokens=tokens_out, exact_only=plan.key.exact_only)

    async def _astore(self, plan: _Plan, response: object) -> None:
        entry = self._entry(plan, response)
        if entry is None or plan.key is None or plan.namespace is None:
            return
        payload, tokens_in, tokens_out = entry
        await self._cache.aupdate(plan.key.prompt, payload, namespace=plan.namespace, ttl_s=self.ttl_s,
                                  input_tokens=tokens_in, output_tokens=tokens_out, exact_only=plan.key.exact_only)

    # -- LlamaIndex endpoints --------------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        plan = self._plan_complete(prompt, formatted, kwargs)
        served = _served_completion(self._lookup(plan))
        if served is not None:
            return served
        response = self.llm.complete(prompt, formatted=formatted, **plan.kwargs)
        self._store(plan, response)
        return response

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        plan = self._plan_complete(prompt, formatted, kwargs)
        served = _served_completion(await self._alookup(plan))
        if served is not None:
            return served
        response = await self.llm.acomplete(prompt, formatted=formatted, **plan.kwargs)
        await self._astore(plan, response)
        return response

    # Chat messages are checked before LlamaIndex's callback wrapper sees them (it would fail on
    # them with its own validation error); the wrapped methods below do the work.
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(_checked(messages), **kwargs)

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._achat(_checked(messages), **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return self._stream_chat(_checked(messages), **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return await self._astream_chat(_checked(messages), **kwargs)

    @llm_chat_callback()
    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        plan = self._plan_chat(messages, kwargs)
        served = _served_chat(self._lookup(plan))
        if served is not None:
            return served
        response = self.llm.chat(messages, **plan.kwargs)
        self._store(plan, response)
        return response

    @llm_chat_callback()
    async def _achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        plan = self._plan_chat(messages, kwargs)
        served = _served_chat(await self._alookup(plan))
        if served is not None:
            return served
        response = await self.llm.achat(messages, **plan.kwargs)
        await self._astore(plan, response)
        return response

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        plan = self._plan_complete(prompt, formatted, kwargs)
        served = _served_completion(self._lookup(plan))
        if served is not None:
            served.delta = served.text
            return _replay(served)
        stream = self.llm.stream_complete(prompt, formatted=formatted, **plan.kwargs)
        return self._relay_completions(plan, stream)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        plan = self._plan_complete(prompt, formatted, kwargs)
        served = _served_completion(await self._alookup(plan))
        if served is not None:
            served.delta = served.text
            return _areplay(served)
        stream = await self.llm.astream_complete(prompt, formatted=formatted, **plan.kwargs)
        return self._arelay_completions(plan, stream)

    @llm_chat_callback()
    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        plan = self._plan_chat(messages, kwargs)
        served = _served_chat(self._lookup(plan))
        if served is not None:
            served.delta = served.message.content or ""
            return _replay(served)
        stream = self.llm.stream_chat(messages, **plan.kwargs)
        return self._relay_chats(plan, stream)

    @llm_chat_callback()
    async def _astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        plan = self._plan_chat(messages, kwargs)
        served = _served_chat(await self._alookup(plan))
        if served is not None:
            served.delta = served.message.content or ""
            return _areplay(served)
        stream = await self.llm.astream_chat(messages, **plan.kwargs)
        return self._arelay_chats(plan, stream)

    # -- streams on a miss: pass every chunk on, store the whole answer once the stream ends -----
    # A stream that raises or is closed early stores nothing (the code after the loop never runs).
    def _relay_completions(self, plan: _Plan, stream: Iterator[CompletionResponse]) -> CompletionResponseGen:
        assembled = _Assembled()
        for chunk in stream:
            assembled.add(chunk)
            yield chunk
        if assembled.final is not None:
            self._store(plan, assembled.final)

    async def _arelay_completions(self, plan: _Plan,
                                  stream: AsyncIterator[CompletionResponse]) -> CompletionResponseAsyncGen:
        assembled = _Assembled()
        async for chunk in stream:
            assembled.add(chunk)
            yield chunk
        if assembled.final is not None:
            await self._astore(plan, assembled.final)

    def _relay_chats(self, plan: _Plan, stream: Iterator[ChatResponse]) -> ChatResponseGen:
        assembled = _Assembled()
        for chunk in stream:
            assembled.add(chunk)
            yield chunk
        if assembled.final is not None:
            self._store(plan, assembled.final)

    async def _arelay_chats(self, plan: _Plan, stream: AsyncIterator[ChatResponse]) -> ChatResponseAsyncGen:
        assembled = _Assembled()
        async for chunk in stream:
            assembled.add(chunk)
            yield chunk
        if assembled.final is not None:
            await self._astore(plan, assembled.final)


class _Assembled:
    """A stream's chunks so far, to build the complete answer once it ends."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.chunk: Any = None

    def add(self, chunk: Any) -> None:
        self.chunk = chunk
        if chunk.delta:
            self.deltas.append(chunk.delta)

    @property
    def final(self) -> Any:
        """The last chunk, its text replaced by the joined deltas when those are longer (LlamaIndex
        streams carry the text so far in every chunk, but not every LLM does); None if no chunk."""
        chunk, joined = self.chunk, "".join(self.deltas)
        if chunk is None:
            return None
        if isinstance(chunk, CompletionResponse):
            if len(joined) > len(chunk.text or ""):
                return chunk.model_copy(update={"text": joined})
            return chunk
        message = chunk.message
        plain = len(message.blocks) <= 1 and all(isinstance(block, TextBlock) for block in message.blocks)
        if plain and len(joined) > len(message.content or ""):
            fixed = ChatMessage(role=message.role, content=joined, additional_kwargs=message.additional_kwargs)
            return chunk.model_copy(update={"message": fixed})
        return chunk


def _plan(key: codec.CacheKey | None, tenant: str | None, kwargs: dict[str, Any], identity: dict[str, Any]) -> _Plan:
    metadata = identity.get("metadata") or {}
    name = metadata.get("model_name") if isinstance(metadata, dict) else None
    model = str(name) if name and name != "unknown" else str(identity["class_name"])
    namespace = None if key is None or tenant is None else CacheNamespace(tenant=tenant, llm=key.llm)
    return _Plan(key=key, namespace=namespace, kwargs=kwargs, model=model)


def _served_completion(found: CacheLookup | None) -> CompletionResponse | None:
    if found is None or found.entry is None or found.kind is None:
        return None
    try:
        return codec.load_completion(found.entry.payload, found.kind)
    except (codec.Uncacheable, ValueError, KeyError, TypeError):  # unreadable entry: answer afresh
        return None


def _served_chat(found: CacheLookup | None) -> ChatResponse | None:
    if found is None or found.entry is None or found.kind is None:
        return None
    try:
        return codec.load_chat(found.entry.payload, found.kind)
    except (codec.Uncacheable, ValueError, KeyError, TypeError):
        return None


def _completion_entry(plan: _Plan, response: CompletionResponse) -> tuple[str, int, int] | None:
    if plan.key is None or not isinstance(response, CompletionResponse):
        return None
    try:
        payload = codec.dump_completion(response)
    except codec.Uncacheable:
        return None
    return (payload, *codec.usage_tokens(response))


def _chat_entry(plan: _Plan, response: ChatResponse, llm: LLM) -> tuple[str, int, int] | None:
    if plan.key is None or not isinstance(response, ChatResponse):
        return None
    try:
        # A failed tool step (a call of an unbound tool, arguments that are not a JSON object)
        # is the wrapped model's answer to this call only: it is never served again.
        check_tool_calls(response, bound_tool_names(plan.kwargs), llm)
        payload = codec.dump_chat(response)
    except (codec.Uncacheable, InvalidToolCall):
        return None
    return (payload, *codec.usage_tokens(response))


def _replay(response: Any) -> Generator[Any, None, None]:
    yield response


async def _areplay(response: Any) -> AsyncGenerator[Any, None]:
    yield response


def _checked(messages: object) -> list[ChatMessage]:
    if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
        raise InvalidParameterError("messages", allowed="a non-empty sequence of ChatMessage",
                                    received=type(messages).__name__)
    if not messages or not all(isinstance(m, ChatMessage) for m in messages):
        raise InvalidParameterError("messages", allowed="a non-empty sequence of ChatMessage",
                                    received=[type(m).__name__ for m in messages])
    return list(messages)


def _check_options(data: dict[str, Any]) -> None:
    if data.get("tenant") is not None:
        check_tenant(data["tenant"])
    if "mode" in data and data["mode"] not in ("exact", "semantic"):
        raise InvalidParameterError("mode", allowed="'exact' or 'semantic'", received=data["mode"])
    check_ttl(data.get("ttl_s"))
    ledger = data.get("ledger")
    if ledger is not None and not isinstance(ledger, CostLedger):
        raise InvalidParameterError("ledger", allowed="a CostLedger or None", received=type(ledger).__name__)
    check_max_error_rate(data.get("max_error_rate"))


def _options_from_cache(cache: ResponseCache, data: dict[str, Any]) -> dict[str, Any]:
    """``mode`` and ``ledger`` belong to the cache when one is given: they are read from it, and
    giving different ones as well is an error rather than a silent choice."""
    if not isinstance(cache, ResponseCache):
        raise InvalidParameterError("cache", allowed="a lean_core.cache.ResponseCache or None",
                                    received=type(cache).__name__)
    if "mode" in data and data["mode"] != cache.mode:
        raise InvalidParameterError("mode", allowed=f"the given cache's mode ({cache.mode!r}) or unset",
                                    received=data["mode"])
    if data.get("ledger") is not None and data["ledger"] is not cache.ledger:
        raise InvalidParameterError("ledger", allowed="the given cache's ledger or unset (give the ledger "
                                    "to the ResponseCache)", received=type(data["ledger"]).__name__)
    given = cache.error_budget.max_error_rate if cache.error_budget is not None else None
    if data.get("max_error_rate") is not None and data["max_error_rate"] != given:
        raise InvalidParameterError("max_error_rate", allowed=f"the given cache's ({given!r}) or unset",
                                    received=data["max_error_rate"])
    if data.get("answer_equivalence") is not None:
        raise InvalidParameterError("answer_equivalence", allowed="unset when `cache` is given (give it to the "
                                    "ResponseCache)", received=type(data["answer_equivalence"]).__name__)
    return {**data, "mode": cache.mode, "ledger": cache.ledger, "max_error_rate": given}
