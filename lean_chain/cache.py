"""LeanCache: LangChain's LLM cache (``set_llm_cache``) over the lean-inference response cache.

Exact and verified semantic hits (:class:`~lean_core.cache.ResponseCache`), partitioned by tenant
and by LangChain's ``llm_string`` (model identity plus generation parameters), with TTL, LRU
eviction and hits recorded as savings in the cost ledger.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.language_models.llms import (
    aget_prompts,
    aupdate_cache,
    get_prompts,
    update_cache,
)
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, GenerationChunk
from langchain_core.runnables.config import var_child_runnable_config

from lean_chain._payload import PayloadCodec
from lean_core.cache import tenancy
from lean_core.cache.conversation_key import USER_ROLE, ConversationTurn, conversation_key
from lean_core.cache.response_cache import CacheMode, ResponseCache, check_ttl
from lean_core.cache.types import CacheLookup, CacheNamespace, CacheStats, check_tenant
from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType

    from lean_core.cache.answer_equivalence import AnswerEquivalence
    from lean_core.ledger import CostLedger

__all__ = ["LeanCache"]

_log = logging.getLogger(__name__)

# What a cached payload may revive into: generations and message classes only.
_CODEC = PayloadCodec(field="generations", expected=Generation, owner="LeanCache", allowed=[
    Generation, GenerationChunk, ChatGeneration, ChatGenerationChunk, AIMessage, AIMessageChunk, ChatMessage,
    HumanMessage, SystemMessage, ToolMessage])
_MODEL_KEYS = ("model_name", "model", "model_id", "deployment_name", "repo_id")
_MODEL_REPR = re.compile(r"\('(?:model_name|model|model_id|deployment_name|repo_id)', '([^'\\]+)'\)")


def _code(function: object) -> object:
    return getattr(function, "__code__", None)


# The frames in which langchain-core consults the cache, and where each keeps the run's metadata.
_CHAT_FRAMES = frozenset({_code(BaseChatModel._generate_with_cache), _code(BaseChatModel._agenerate_with_cache)})
_LLM_LOOKUP_FRAMES = frozenset({_code(get_prompts), _code(aget_prompts)})
_LLM_UPDATE_FRAMES = frozenset({_code(update_cache), _code(aupdate_cache)})
_FRAME_DEPTH = 24


class LeanCache(BaseCache):
    """A LangChain LLM cache with exact and verified semantic hits, isolated per tenant.

    Use it globally (``set_llm_cache(LeanCache())``) or per model (``ChatOpenAI(cache=LeanCache())``).
    Chat models and completion LLMs, sync and async, invoke, batch and LCEL chains are all served
    (langchain-core itself skips caches when a chat model streams through its own ``_stream``).

    **Namespaces.** An entry is served only within its (tenant, ``llm_string``) namespace: another
    model, another temperature or stop list, or another tenant never sees it, whatever the
    similarity. For a chat conversation of several messages, everything before the last human
    message joins the namespace too, so only the final question may be paraphrased; a conversation
    that ends in anything but a plain-text human message (tool results, images, names) is matched
    exactly, never semantically.

    **Tenant resolution**, first match wins:

    1. :meth:`LeanCache.tenant_scope` (the same scope as :func:`lean_core.cache.tenant_scope`)
       active in the current context.
    2. ``metadata[tenant_key]`` of the model run consulting the cache: the metadata LangChain hands
       the run's callbacks, merged from ``config={"metadata": ...}``, ``with_config``, enclosing
       chains and the model's own ``metadata`` field. Read from the run manager (chat models) or
       the callback managers (LLMs) of the langchain-core frame that calls the cache, because
       ``BaseCache.lookup`` receives no config.
    3. ``metadata[tenant_key]`` of the current runnable config (``var_child_runnable_config``),
       for lookups made from inside a Runnable but outside a model run.
    4. ``default_tenant``, only when the application set one: an explicit opt-in to one namespace
       shared by every caller whose tenant is not resolved.

    **Fails closed.** With no tenant resolved and no ``default_tenant`` (the default since issue
    22; it used to be ``"default"``), the call is neither served from nor stored into the cache:
    the model answers it, and it is counted as a "no tenant" miss (``stats.no_tenant``, and a
    ledger miss without a tenant). A tenant must be a non-empty str (an int is converted) of at
    most 256 characters; any other value raises :class:`~lean_core.errors.InvalidParameterError`
    rather than falling back to a shared namespace.

    **Where the tenant travels.** The scope is a context variable: ``batch``/``abatch``, asyncio
    tasks created inside it, ``asyncio.to_thread``, LangGraph nodes and LangChain's own executors
    all copy it. A thread your code starts does not (``threading.Thread``, a plain
    ``concurrent.futures.ThreadPoolExecutor``): submit the work through
    ``contextvars.copy_context().run`` (or :func:`lean_core.cache.in_current_context`), or put the
    tenant in the run's metadata (``config={"metadata": {"tenant": ...}}``). Forgetting both is safe:
    those calls are simply not cached.

    **The cache never breaks a call.** A store, embedding or encoding failure during a lookup is a
    miss, during a write a skipped write (NUL, lone surrogates and million-character prompts
    included); failures are counted in ``stats.lookup_errors`` / ``stats.store_errors`` and logged
    once per kind, and the model's answer always reaches the caller.

    Example::

        set_llm_cache(LeanCache(ttl_s=3600, ledger=CostLedger()))
        llm.invoke("How do I reset my password?", config={"metadata": {"tenant": "acme"}})
        with LeanCache.tenant_scope("globex"):
            llm.invoke("How can I reset my password?")   # globex never sees acme's answer

    Args:
        cache: the response cache; default a new :class:`~lean_core.cache.ResponseCache` over the
            default SQLite file (``$LEAN_INFERENCE_CACHE`` or
            ``~/.cache/lean-inference/responses.sqlite3``), opened on first use.
        mode: ``"semantic"`` (exact, then verified near-duplicates) or ``"exact"``. Default
            ``"semantic"``; with ``cache`` given, that cache's mode (passing another is an error).
        ttl_s: seconds an entry may be served after it is written (> 0); None: the cache's default.
        default_tenant: the tenant of calls whose tenant is not resolved — an explicit opt-in to a
            namespace they all share (e.g. ``"public"``; ``"default"`` restores the behaviour before
            issue 22). None (the default): such calls are not cached.
        tenant_key: the metadata key naming the tenant.
        ledger: where hits (with the tokens they saved) and misses are recorded as layer "cache".
            Only without ``cache``; give a ``ResponseCache`` its own ledger instead.
        max_error_rate: δ in (0, 0.5]: serve semantic hits under an error budget
            (:mod:`lean_core.cache.error_budget`) instead of the static threshold; None (default):
            the static verifier. Only without ``cache`` (give the ``ResponseCache`` the option).
        answer_equivalence: with ``max_error_rate``, how explorations compare a fresh answer with
            the cached one (see ``ResponseCache``); only without ``cache``.
    """

    def __init__(self, *, cache: ResponseCache | None = None, mode: CacheMode | None = None,
                 ttl_s: float | None = None, default_tenant: str | None = None, tenant_key: str = "tenant",
                 ledger: CostLedger | None = None, max_error_rate: float | None = None,
                 answer_equivalence: AnswerEquivalence | Callable[[str, str], bool] | None = None) -> None:
        if mode is not None and mode not in ("exact", "semantic"):
            raise InvalidParameterError("mode", allowed="'exact' or 'semantic'", received=mode)
        check_ttl(ttl_s)
        if default_tenant is not None:
            check_tenant(default_tenant, parameter="default_tenant")
        if not isinstance(tenant_key, str) or not tenant_key:
            raise InvalidParameterError("tenant_key", allowed="a non-empty str", received=tenant_key)
        if cache is None:
            cache = ResponseCache(mode=mode or "semantic", ttl_s=ttl_s, ledger=ledger, max_error_rate=max_error_rate,
                                  answer_equivalence=answer_equivalence)
        elif not isinstance(cache, ResponseCache):
            raise InvalidParameterError("cache", allowed="a lean_core.cache.ResponseCache or None",
                                        received=type(cache).__name__)
        else:
            if mode is not None and mode != cache.mode:
                raise InvalidParameterError("mode", allowed=f"None or the given cache's mode {cache.mode!r}",
                                            received=mode)
            if ledger is not None and ledger is not cache.ledger:
                raise InvalidParameterError("ledger", allowed="None when `cache` is given (give the "
                                            "ResponseCache the ledger)", received=ledger)
            for name, value in (("max_error_rate", max_error_rate), ("answer_equivalence", answer_equivalence)):
                if value is not None:
                    raise InvalidParameterError(name, allowed="None when `cache` is given (give the ResponseCache "
                                                "the option)", received=value)
        self.cache: ResponseCache = cache
        """The response cache holding the entries (its ``stats`` count this instance's lookups)."""
        self.ttl_s: float | None = ttl_s
        """Seconds an entry written through this instance may be served; None: the cache's default."""
        self.default_tenant: str | None = default_tenant
        """The shared namespace of calls whose tenant is not resolved; None: such calls are not cached."""
        self.tenant_key: str = tenant_key
        """The metadata key that names the tenant."""

    # -- tenant ---------------------------------------------------------------------------------
    @staticmethod
    @contextlib.contextmanager
    def tenant_scope(tenant: str) -> Iterator[None]:
        """Serve and store every cache call in this context as ``tenant`` (overrides metadata).

        :func:`lean_core.cache.tenant_scope` under the LangChain adapter's name: nested scopes
        restore the outer tenant on exit; asyncio tasks, ``batch`` executors and LangGraph nodes
        inherit it; threads you start yourself need ``contextvars.copy_context().run``.
        """
        with tenancy.tenant_scope(tenant):
            yield

    def resolve_tenant(self) -> str | None:
        """The tenant a cache call made here and now would use (see the class docstring), or None."""
        scoped = tenancy.current_tenant()
        if scoped is not None:
            return scoped
        tenant = self._tenant_in(_run_metadata(), "metadata")
        if tenant is None:
            config = var_child_runnable_config.get()
            tenant = self._tenant_in((config or {}).get("metadata"), "config metadata")
        return self.default_tenant if tenant is None else tenant

    def _tenant_in(self, metadata: Mapping[str, Any] | None, where: str) -> str | None:
        if not isinstance(metadata, Mapping):
            return None
        value = metadata.get(self.tenant_key)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        return check_tenant(value, parameter=f"{where}[{self.tenant_key!r}]")

    # -- BaseCache ------------------------------------------------------------------------------
    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """The cached generations for ``prompt`` under ``llm_string`` in the caller's tenant, or None
        (also when no tenant is resolved, or the cache fails: then the model answers)."""
        key = self._lookup_key(prompt, llm_string)
        if key is None:
            return None
        return _revive(self.cache.lookup(key.prompt, namespace=key.namespace, model=key.model,
                                         exact_only=key.exact_only))

    async def alookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        """Async :meth:`lookup` (store I/O awaited; embedding runs in a worker thread)."""
        key = self._lookup_key(prompt, llm_string)
        if key is None:
            return None
        return _revive(await self.cache.alookup(key.prompt, namespace=key.namespace, model=key.model,
                                                exact_only=key.exact_only))

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Store ``return_val`` for ``prompt`` under ``llm_string`` in the caller's tenant (nothing
        when no tenant is resolved; a failing store is counted and logged, never raised)."""
        planned = self._write_plan(prompt, llm_string, return_val)
        if planned is None:
            return
        key, (payload, input_tokens, output_tokens) = planned
        self.cache.update(key.prompt, payload, namespace=key.namespace, ttl_s=self.ttl_s,
                          input_tokens=input_tokens, output_tokens=output_tokens, exact_only=key.exact_only)

    async def aupdate(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        """Async :meth:`update`."""
        planned = self._write_plan(prompt, llm_string, return_val)
        if planned is None:
            return
        key, (payload, input_tokens, output_tokens) = planned
        await self.cache.aupdate(key.prompt, payload, namespace=key.namespace, ttl_s=self.ttl_s,
                                 input_tokens=input_tokens, output_tokens=output_tokens, exact_only=key.exact_only)

    def _lookup_key(self, prompt: object, llm_string: object) -> _CacheKey | None:
        """The key to look up; a key without namespace when no tenant is resolved (the cache counts
        that miss); None when keying itself failed (counted as a lookup error: the model answers)."""
        try:
            return self._key(prompt, llm_string)
        except InvalidParameterError:
            raise  # misuse, or a tenant that is present but invalid: never fall back to sharing
        except Exception as exc:
            self.cache.report_failure("lookup", exc)
            return None

    def _write_plan(self, prompt: object, llm_string: object,
                    return_val: object) -> tuple[_CacheKey, tuple[str, int, int]] | None:
        """(key, serialised answer) to store, or None: no tenant, nothing serialisable, or keying or
        serialising failed (counted as a store error)."""
        try:
            payload, input_tokens, output_tokens = _serialise(return_val)
            key = self._key(prompt, llm_string)
        except InvalidParameterError:
            raise
        except Exception as exc:
            self.cache.report_failure("store", exc)
            return None
        if key is None or key.namespace is None or payload is None:
            return None
        return key, (payload, input_tokens, output_tokens)

    def clear(self, *, tenant: str | None = None, **kwargs: Any) -> None:
        """Delete every entry of the store (all tenants, all models), or only ``tenant``'s."""
        _no_kwargs(kwargs)
        self.cache.invalidate(tenant=None if tenant is None else check_tenant(tenant))

    async def aclear(self, *, tenant: str | None = None, **kwargs: Any) -> None:
        """Async :meth:`clear`."""
        _no_kwargs(kwargs)
        await self.cache.ainvalidate(tenant=None if tenant is None else check_tenant(tenant))

    # -- extras ---------------------------------------------------------------------------------
    @property
    def stats(self) -> CacheStats:
        """Lookups, hits, verifier rejections, misses and writes counted by :attr:`cache` since it
        was created."""
        return self.cache.stats

    def close(self) -> None:
        """Release the store's connections (the default SQLite store reopens on next use)."""
        self.cache.close()

    # -- keys -----------------------------------------------------------------------------------
    def _key(self, prompt: object, llm_string: object) -> _CacheKey:
        if not isinstance(prompt, str):
            raise InvalidParameterError("prompt", allowed="a str", received=type(prompt).__name__)
        if not isinstance(llm_string, str) or not llm_string:
            raise InvalidParameterError("llm_string", allowed="a non-empty str", received=llm_string)
        tenant = self.resolve_tenant()
        model = _model_name(llm_string)
        if tenant is None:
            return _CacheKey(prompt, None, model, True)
        messages = _chat_messages(prompt)
        # A completion prompt is keyed as a lone user turn: its text, in the llm_string's namespace.
        turns = [ConversationTurn(USER_ROLE, prompt)] if messages is None else [_turn(m) for m in messages]
        key = conversation_key(turns)
        return _CacheKey(key.prompt, key.namespace(tenant, llm_string), model, not key.semantic)


@dataclass(frozen=True)
class _CacheKey:
    """Where one LangChain (prompt, llm_string) lives in the response cache: keyed by
    :func:`~lean_core.cache.conversation_key`, with the model name for the ledger."""

    prompt: str
    namespace: CacheNamespace | None
    """None: no tenant resolved, so the call is neither served nor stored."""
    model: str | None
    exact_only: bool


# -- helpers ----------------------------------------------------------------------------------------
def _no_kwargs(kwargs: Mapping[str, Any]) -> None:
    if kwargs:
        raise InvalidParameterError("clear", allowed="no keyword but tenant=", received=sorted(kwargs))


def _run_metadata() -> Mapping[str, Any] | None:
    """The metadata of the langchain-core model run that is consulting the cache, if any.

    ``BaseChatModel._(a)generate_with_cache`` holds the run manager (``run_manager.metadata``);
    for LLMs, ``get_prompts``/``update_cache`` (and async twins) hold the prompt's index into the
    callback managers that ``BaseLLM.(a)generate`` configured before consulting the cache.
    """
    frame: FrameType | None = sys._getframe(1)
    try:
        for _ in range(_FRAME_DEPTH):
            if frame is None:
                return None
            code = frame.f_code
            if code in _CHAT_FRAMES:
                metadata = getattr(frame.f_locals.get("run_manager"), "metadata", None)
                return metadata if isinstance(metadata, Mapping) else None
            if code in _LLM_LOOKUP_FRAMES or code in _LLM_UPDATE_FRAMES:
                return _llm_metadata(frame, update=code in _LLM_UPDATE_FRAMES)
            frame = frame.f_back
        return None
    finally:
        del frame


def _llm_metadata(frame: FrameType, *, update: bool) -> Mapping[str, Any] | None:
    local = frame.f_locals
    index = local.get("i")
    if update:
        missing = local.get("missing_prompt_idxs")
        index = missing[index] if isinstance(missing, list) and isinstance(index, int) else None
    caller = frame.f_back
    managers = caller.f_locals.get("callback_managers") if caller is not None else None
    if not isinstance(index, int) or not isinstance(managers, list) or not 0 <= index < len(managers):
        return None
    metadata = getattr(managers[index], "metadata", None)
    return metadata if isinstance(metadata, Mapping) else None


def _chat_messages(prompt: str) -> list[dict[str, Any]] | None:
    """The serialised messages if ``prompt`` is a chat model's cache prompt (``dumps(messages)``)."""
    if not prompt.startswith('[{"lc"'):
        return None
    try:
        data = json.loads(prompt)
    except ValueError:
        return None
    if not isinstance(data, list) or not data:
        return None
    for item in data:
        if not (isinstance(item, dict) and item.get("lc") == 1 and item.get("type") == "constructor"
                and isinstance(item.get("id"), list) and isinstance(item.get("kwargs"), dict)):
            return None
    return data


def _turn(message: Mapping[str, Any]) -> ConversationTurn:
    """One serialised LangChain message as a turn: ``content`` (when a str) is its text, every
    other constructor keyword (name, tool_call_id, tool_calls, list content...) its extras."""
    kwargs = message["kwargs"]
    kind = kwargs.get("type") or message["id"][-1]
    content = kwargs.get("content")
    text = content if isinstance(content, str) else ""
    rest = {k: v for k, v in kwargs.items() if k != "type" and not (k == "content" and isinstance(v, str))}
    return ConversationTurn(USER_ROLE if kind == "human" else str(kind), text, rest or None)


def _model_name(llm_string: str) -> str | None:
    """The model named in a LangChain ``llm_string`` (serialised kwargs or sorted params), if any."""
    head = llm_string.partition("---")[0]
    if head.startswith("{"):
        with contextlib.suppress(ValueError):
            kwargs = json.loads(head).get("kwargs")
            if isinstance(kwargs, dict):
                for name in _MODEL_KEYS:
                    if isinstance(kwargs.get(name), str) and kwargs[name]:
                        return cast(str, kwargs[name])
    found = _MODEL_REPR.search(llm_string)
    return found.group(1) if found else None


def _serialise(return_val: object) -> tuple[str | None, int, int]:
    """(payload JSON or None when unrevivable, input tokens, output tokens) of the generations."""
    if isinstance(return_val, str | bytes) or not isinstance(return_val, Sequence) or not return_val:
        raise InvalidParameterError("return_val", allowed="a non-empty sequence of Generation",
                                    received=type(return_val).__name__)
    for generation in return_val:
        if not isinstance(generation, Generation):
            raise InvalidParameterError("return_val", allowed="a non-empty sequence of Generation",
                                        received=f"an item of type {type(generation).__name__}")
    payload = _CODEC.encode(return_val)
    if payload is None:
        return None, 0, 0
    input_tokens = output_tokens = 0
    for generation in return_val:  # n candidates of one prompt share one usage record: take it once
        usage = getattr(getattr(generation, "message", None), "usage_metadata", None)
        if usage:
            input_tokens, output_tokens = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
            break
    return payload, input_tokens, output_tokens


def _revive(result: CacheLookup) -> list[Generation] | None:
    return None if result.entry is None else _CODEC.decode(result.entry.payload)
