"""LeanVLLM: a LlamaIndex LLM served by vLLM, in process or on a vLLM server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from pydantic import model_validator

from lean_backends.text_backend import PromptInput
from lean_backends.tool_calling import ToolCall, ToolCallingChoice, ToolCallingChunk, ToolRequest
from lean_backends.vllm_options import VLLMOptions
from lean_core.errors import InvalidParameterError
from lean_core.generation import Choice, GenerationChunk, GenerationResult, SamplingOptions
from lean_core.usage import TokenUsage
from lean_index._offline import ensure_offline_tokenizer

if TYPE_CHECKING:
    from llama_index.core.tools.types import BaseTool

__all__ = ["LeanVLLM"]

_TOOL_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls")
_CALL_OPTIONS = frozenset({"max_tokens", "temperature", "top_p", "seed", "stop", "tenant", "early_stop", "lora_adapter",
                           *_TOOL_OPTIONS})
_ROLES = frozenset({"system", "user", "assistant", "tool"})
# config.json keys holding the trained context length, most common first.
_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class LeanVLLM(VLLMOptions, FunctionCallingLLM):
    """LlamaIndex LLM on vLLM: the model's chat template, real streaming and async, and token
    usage with prefix-cache hits on every response (``raw["usage"]`` in OpenAI shape, which
    :class:`~lean_index.LeanCostHandler` records, streams included).

    With no arguments it serves the bundled SmolLM2-135M-Instruct in this process on whatever
    vLLM build is installed; ``model=`` takes a checkpoint directory (e.g. a pruned one),
    ``base_url=`` targets a running ``vllm serve``. Constructing it does no I/O: the engine starts
    on the first call and is shared by every instance with the same engine settings.

    ``complete(prompt)`` sends the prompt as one user turn through the chat template;
    ``complete(prompt, formatted=True)`` sends it as raw text. Per call, ``max_tokens``,
    ``temperature``, ``top_p``, ``seed``, ``stop``, ``early_stop`` (a
    ``lean_core.budget.EarlyStopRule``) and ``tenant`` (the prefix-cache salt; default the
    ``tenant`` field) may be passed as keyword arguments.

    It is a ``FunctionCallingLLM`` (``FunctionAgent`` drives it): ``chat_with_tools(tools,
    tool_required=..., tool_choice=...)`` and ``get_tool_calls_from_response``. ``tool_required=True``
    or ``tool_choice="required"`` / a tool name force calls by guided decoding (any model);
    ``"auto"`` (the default) needs ``tool_parser=`` (e.g. ``"hermes"``) and is plain text without
    one. Calls come back as ``ToolCallBlock`` blocks of the response message (and in OpenAI form in
    ``additional_kwargs["tool_calls"]``); tool results are ``role="tool"`` messages with
    ``additional_kwargs={"tool_call_id": ...}``, as ``FunctionAgent`` writes them.

    Example::

        from lean_index import LeanCostHandler, LeanVLLM
        LeanCostHandler().register()
        print(LeanVLLM(max_tokens=64).complete("What is the capital of France?").text)
    """

    @model_validator(mode="after")
    def _one_candidate(self) -> LeanVLLM:
        if self.n != 1:
            raise InvalidParameterError("n", allowed="1 (a LlamaIndex response has one candidate)",
                                        received=self.n)
        return self

    @classmethod
    def class_name(cls) -> str:
        # LlamaIndex's "<provider>_llm" convention, which LeanCostHandler reads the provider from.
        return "lean-vllm_llm"

    @property
    def metadata(self) -> LLMMetadata:
        """Context window from the checkpoint's config.json (no engine start), or the server's."""
        ensure_offline_tokenizer()  # LlamaIndex's prompt helper tokenizes right after reading this
        if self.base_url is not None:
            backend = self.backend()
            window = backend.context_window or DEFAULT_CONTEXT_WINDOW  # 0: the server did not say
            name = self.model or backend.model_name
        else:
            from lean_backends.vllm_engine import resolve_model

            model_dir = Path(resolve_model(self.model))
            if not model_dir.is_dir():  # a model-hub name: the engine knows its window
                return LLMMetadata(context_window=self.backend().context_window, num_output=self.max_tokens,
                                   is_chat_model=True, is_function_calling_model=True, model_name=model_dir.name)
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            trained = _trained_window(config)
            if trained is None:  # an unusual config: ask the engine itself
                window = self.backend().context_window
            else:
                window = min(trained, self.max_model_len) if self.max_model_len else trained
            name = model_dir.name  # the name the engine reports in its results
        return LLMMetadata(context_window=window, num_output=self.max_tokens, is_chat_model=True,
                           is_function_calling_model=True, model_name=name)

    def _call_options(self, kwargs: dict[str, Any]) -> tuple[SamplingOptions, str | None]:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise InvalidParameterError("call option", allowed=f"one of {sorted(_CALL_OPTIONS)}",
                                        received=sorted(unknown))
        overrides = {k: v for k, v in kwargs.items() if k not in ("stop", "tenant", *_TOOL_OPTIONS)}
        stop = kwargs.get("stop")
        options = self.sampling_options(stop=[stop] if isinstance(stop, str) else stop, **overrides)
        tenant = kwargs.get("tenant")
        if tenant is None:
            tenant = self.tenant
        return options, None if tenant is None else str(tenant)

    def _tool_request(self, kwargs: dict[str, Any]) -> ToolRequest | None:
        if kwargs.get("tools") is None:
            return None
        return ToolRequest.build(kwargs["tools"], kwargs.get("tool_choice"),
                                 parallel_tool_calls=kwargs.get("parallel_tool_calls"), parser=self.tool_parser)

    # -- FunctionCallingLLM ------------------------------------------------------------------
    def _prepare_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 tool_choice: str | dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """``chat`` arguments: the tools in OpenAI form; ``tool_choice`` wins over ``tool_required``."""
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str)
                            else user_msg)
        openai_tools = [tool.metadata.to_openai_tool(skip_length_check=True) for tool in tools]
        choice = tool_choice if tool_choice is not None else ("required" if tool_required else "auto")
        ToolRequest.build(openai_tools, choice)  # a bad choice fails here, before the call
        return {"messages": messages, "tools": openai_tools or None, "tool_choice": choice if openai_tools else None,
                "parallel_tool_calls": allow_parallel_tool_calls, **kwargs}

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        """The calls of a response (its ``ToolCallBlock`` blocks)."""
        calls = [ToolSelection(tool_id=block.tool_call_id or "", tool_name=block.tool_name,
                               tool_kwargs=_kwargs_of(block.tool_kwargs))
                 for block in response.message.blocks if isinstance(block, ToolCallBlock)]
        if not calls and error_on_no_tool_call:
            raise ValueError(f"expected at least one tool call in the response, got: {response.message.content!r}")
        return calls

    # -- LlamaIndex endpoints ----------------------------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        options, salt = self._call_options(kwargs)
        result = self.backend().generate(_prompt(prompt, formatted), options, cache_salt=salt)
        return _response(result.text, None, result.usage, result.model, result.finish_reason,
                         result.choices[0].early_stop)

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponse:
        options, salt = self._call_options(kwargs)
        result = await self.backend().agenerate(_prompt(prompt, formatted), options, cache_salt=salt)
        return _response(result.text, None, result.usage, result.model, result.finish_reason,
                         result.choices[0].early_stop)

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        chat, (options, salt), tools = _to_chat(messages), self._call_options(kwargs), self._tool_request(kwargs)
        result = self.backend().generate(chat, options, cache_salt=salt, tools=tools)
        return _chat_result(result)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        chat, (options, salt), tools = _to_chat(messages), self._call_options(kwargs), self._tool_request(kwargs)
        result = await self.backend().agenerate(chat, options, cache_salt=salt, tools=tools)
        return _chat_result(result)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False,
                        **kwargs: Any) -> CompletionResponseGen:
        options, salt = self._call_options(kwargs)
        return _completions(self.backend().stream(_prompt(prompt, formatted), options, cache_salt=salt))

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        options, salt = self._call_options(kwargs)
        return _acompletions(self.backend().astream(_prompt(prompt, formatted), options, cache_salt=salt))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        chat, (options, salt), tools = _to_chat(messages), self._call_options(kwargs), self._tool_request(kwargs)
        pieces = self.backend().stream(chat, options, cache_salt=salt, tools=tools)
        return _chats(pieces)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        chat, (options, salt), tools = _to_chat(messages), self._call_options(kwargs), self._tool_request(kwargs)
        pieces = self.backend().astream(chat, options, cache_salt=salt, tools=tools)
        return _achats(pieces)

    # -- batches: one engine call for many requests ----------------------------------------
    def complete_many(self, prompts: Sequence[str], formatted: bool = False,
                      **kwargs: Any) -> list[CompletionResponse]:
        """``complete`` for every prompt, all submitted to the engine at once (greedy results are
        the one-by-one results). With no LlamaIndex callback or instrumentation handler the batch
        is one engine call; otherwise every prompt goes through ``acomplete`` (events per prompt)."""
        if not self._direct_ok():
            return self.backend().run_on_loop(self.acomplete_many(prompts, formatted, **kwargs))
        options, salt = self._call_options(kwargs)
        results = self.backend().generate_many([_prompt(p, formatted) for p in prompts], options, cache_salt=salt)
        return [_completion_of(r) for r in results]

    async def acomplete_many(self, prompts: Sequence[str], formatted: bool = False,
                             **kwargs: Any) -> list[CompletionResponse]:
        """As :meth:`complete_many`, from async code."""
        if not self._direct_ok():
            return list(await asyncio.gather(*(self.acomplete(p, formatted, **kwargs) for p in prompts)))
        options, salt = self._call_options(kwargs)
        results = await self.backend().agenerate_many([_prompt(p, formatted) for p in prompts], options,
                                                      cache_salt=salt)
        return [_completion_of(r) for r in results]

    def chat_many(self, conversations: Sequence[Sequence[ChatMessage]], **kwargs: Any) -> list[ChatResponse]:
        """``chat`` for every conversation, all submitted at once (see :meth:`complete_many`);
        tools are not taken here (use ``chat``)."""
        if not self._direct_ok() or kwargs.get("tools") is not None:
            return self.backend().run_on_loop(self.achat_many(conversations, **kwargs))
        options, salt = self._call_options(kwargs)
        results = self.backend().generate_many([_to_chat(c) for c in conversations], options, cache_salt=salt)
        return [_chat_result(r) for r in results]

    async def achat_many(self, conversations: Sequence[Sequence[ChatMessage]],
                         **kwargs: Any) -> list[ChatResponse]:
        """As :meth:`chat_many`, from async code."""
        if not self._direct_ok() or kwargs.get("tools") is not None:
            return list(await asyncio.gather(*(self.achat(c, **kwargs) for c in conversations)))
        options, salt = self._call_options(kwargs)
        results = await self.backend().agenerate_many([_to_chat(c) for c in conversations], options,
                                                      cache_salt=salt)
        return [_chat_result(r) for r in results]

    def _direct_ok(self) -> bool:
        """Whether no LlamaIndex handler would see a call: no callback-manager handler and no
        instrumentation handler on the LLM callbacks' dispatcher or its ancestors."""
        if self.base_url is not None or self.callback_manager.handlers:
            return False
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import NullEventHandler
        from llama_index.core.instrumentation.span_handlers import NullSpanHandler

        dispatcher: Any = get_dispatcher("llama_index.core.llms.callbacks")
        while dispatcher is not None:
            if any(not isinstance(h, NullEventHandler) for h in dispatcher.event_handlers) or any(
                    not isinstance(h, NullSpanHandler) for h in dispatcher.span_handlers):
                return False
            dispatcher = dispatcher.parent if dispatcher.propagate and dispatcher.parent_name else None
        return True


def _trained_window(config: dict[str, Any]) -> int | None:
    for section in (config, config.get("text_config") or {}):
        for key in _WINDOW_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _completion_of(result: GenerationResult) -> CompletionResponse:
    return _response(result.text, None, result.usage, result.model, result.finish_reason,
                     result.choices[0].early_stop)


def _prompt(prompt: str, formatted: bool) -> PromptInput:
    return prompt if formatted else [{"role": "user", "content": prompt}]


def _to_chat(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    chat: list[dict[str, Any]] = []
    for message in messages:
        role = message.role.value
        if role not in _ROLES:
            raise InvalidParameterError("messages", allowed="system, user, assistant or tool messages",
                                        received=role)
        if any(not isinstance(block, (TextBlock, ToolCallBlock)) for block in message.blocks):
            raise InvalidParameterError("messages", allowed="text content (and tool calls of assistant messages)",
                                        received=[type(block).__name__ for block in message.blocks])
        item: dict[str, Any] = {"role": role, "content": message.content or ""}
        calls = [{"id": b.tool_call_id, "name": b.tool_name, "arguments": b.tool_kwargs}
                 for b in message.blocks if isinstance(b, ToolCallBlock)]
        if calls or message.additional_kwargs.get("tool_calls"):
            item["tool_calls"] = calls or list(message.additional_kwargs["tool_calls"])
        if role == "tool":
            item.update(tool_call_id=message.additional_kwargs.get("tool_call_id"),
                        name=message.additional_kwargs.get("name"))
        chat.append(item)
    return chat


def _kwargs_of(arguments: dict[str, Any] | str) -> dict[str, Any]:
    """Arguments as a dict; a streamed call's unfinished JSON text counts as no arguments yet."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _with_calls(response: ChatResponse, calls: Sequence[ToolCall | tuple[str, str, str]]) -> ChatResponse:
    """``response`` with its calls as ToolCallBlocks (and in OpenAI form in additional_kwargs)."""
    if not calls:
        return response
    blocks: list[Any] = [ToolCallBlock(tool_call_id=c.id, tool_name=c.name, tool_kwargs=c.arguments)
                         if isinstance(c, ToolCall) else
                         ToolCallBlock(tool_call_id=c[0], tool_name=c[1], tool_kwargs=c[2]) for c in calls]
    wire = [c.to_openai() if isinstance(c, ToolCall) else
            {"id": c[0], "type": "function", "function": {"name": c[1], "arguments": c[2]}} for c in calls]
    message = response.message
    text_blocks = [TextBlock(text=message.content)] if message.content else []
    response.message = ChatMessage(role=message.role, blocks=text_blocks + blocks,
                                   additional_kwargs={**message.additional_kwargs, "tool_calls": wire})
    return response


def _chat_result(result: GenerationResult) -> ChatResponse:
    choice: Choice = result.choices[0]
    response = _as_chat(_response(result.text, None, result.usage, result.model, result.finish_reason,
                                  choice.early_stop))
    return _with_calls(response, choice.tool_calls if isinstance(choice, ToolCallingChoice) else ())


class _StreamedCalls:
    """Tool-call pieces of a stream, put together per call index."""

    def __init__(self) -> None:
        self.calls: dict[int, list[str]] = {}

    def add(self, piece: GenerationChunk) -> list[tuple[str, str, str]]:
        if isinstance(piece, ToolCallingChunk):
            for delta in piece.tool_call_deltas:
                call = self.calls.setdefault(delta.index, ["", "", ""])
                call[0], call[1] = call[0] or delta.id or "", call[1] or delta.name or ""
                call[2] += delta.arguments
        return [(c[0], c[1], c[2]) for _, c in sorted(self.calls.items())]


def _chats(pieces: Iterator[GenerationChunk]) -> ChatResponseGen:
    calls = _StreamedCalls()
    text, finish = "", None
    for piece in pieces:
        text, finish = text + piece.text, piece.finish_reason or finish
        so_far = calls.add(piece)
        yield _with_calls(_as_chat(_response(text, piece.text, piece.usage, piece.model, finish)), so_far)


async def _achats(pieces: AsyncIterator[GenerationChunk]) -> ChatResponseAsyncGen:
    calls = _StreamedCalls()
    text, finish = "", None
    async for piece in pieces:
        text, finish = text + piece.text, piece.finish_reason or finish
        so_far = calls.add(piece)
        yield _with_calls(_as_chat(_response(text, piece.text, piece.usage, piece.model, finish)), so_far)


def _response(text: str, delta: str | None, usage: TokenUsage | None, model: str | None,
              finish: str | None, early_stop: str | None = None) -> CompletionResponse:
    """A response; a finished request's (``model`` set) carries the usage, cached tokens included."""
    if model is None:  # a chunk in the middle of a stream
        return CompletionResponse(text=text, delta=delta)
    raw: dict[str, Any] = {"model": model, "finish_reason": finish}
    if early_stop is not None:
        raw["early_stop"] = early_stop
    counts: dict[str, int] = {}
    if usage is not None and not usage.estimated:  # a server that reported nothing stays unreported
        raw["usage"] = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                        "total_tokens": usage.total_tokens,
                        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens}}
        counts = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                  "cached_tokens": usage.cached_input_tokens, "total_tokens": usage.total_tokens}
    return CompletionResponse(text=text, delta=delta, raw=raw, additional_kwargs=counts)


def _as_chat(response: CompletionResponse) -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=response.text),
                        delta=response.delta, raw=response.raw,
                        additional_kwargs=response.additional_kwargs)


def _completions(pieces: Iterator[GenerationChunk]) -> CompletionResponseGen:
    text, finish = "", None
    for piece in pieces:
        text, finish = text + piece.text, piece.finish_reason or finish
        yield _response(text, piece.text, piece.usage, piece.model, finish)


async def _acompletions(pieces: AsyncIterator[GenerationChunk]) -> CompletionResponseAsyncGen:
    text, finish = "", None
    async for piece in pieces:
        text, finish = text + piece.text, piece.finish_reason or finish
        yield _response(text, piece.text, piece.usage, piece.model, finish)
