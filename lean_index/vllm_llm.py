"""LeanVLLM: a LlamaIndex LLM served by vLLM, in process or on a vLLM server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Sequence
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
    MessageRole,
    TextBlock,
)
from llama_index.core.constants import DEFAULT_CONTEXT_WINDOW
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.llm import LLM
from pydantic import model_validator

from lean_backends.text_backend import PromptInput
from lean_backends.vllm_options import VLLMOptions
from lean_core.errors import InvalidParameterError
from lean_core.generation import ChatMessageDict, GenerationChunk, SamplingOptions
from lean_core.usage import TokenUsage
from lean_index._offline import ensure_offline_tokenizer

__all__ = ["LeanVLLM"]

_CALL_OPTIONS = frozenset({"max_tokens", "temperature", "top_p", "seed", "stop", "tenant", "early_stop"})
_ROLES = frozenset({"system", "user", "assistant"})
# config.json keys holding the trained context length, most common first.
_WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


class LeanVLLM(VLLMOptions, LLM):
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
            from lean_backends.vllm_engine import resolve_model_dir

            model_dir = resolve_model_dir(self.model)
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            trained = _trained_window(config)
            if trained is None:  # an unusual config: ask the engine itself
                window = self.backend().context_window
            else:
                window = min(trained, self.max_model_len) if self.max_model_len else trained
            name = model_dir.name  # the name the engine reports in its results
        return LLMMetadata(context_window=window, num_output=self.max_tokens, is_chat_model=True,
                           model_name=name)

    def _call_options(self, kwargs: dict[str, Any]) -> tuple[SamplingOptions, str | None]:
        unknown = set(kwargs) - _CALL_OPTIONS
        if unknown:
            raise InvalidParameterError("call option", allowed=f"one of {sorted(_CALL_OPTIONS)}",
                                        received=sorted(unknown))
        overrides = {k: v for k, v in kwargs.items() if k not in ("stop", "tenant")}
        stop = kwargs.get("stop")
        options = self.sampling_options(stop=[stop] if isinstance(stop, str) else stop, **overrides)
        tenant = kwargs.get("tenant")
        if tenant is None:
            tenant = self.tenant
        return options, None if tenant is None else str(tenant)

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
        chat, (options, salt) = _to_chat(messages), self._call_options(kwargs)
        result = self.backend().generate(chat, options, cache_salt=salt)
        return _as_chat(_response(result.text, None, result.usage, result.model, result.finish_reason,
                         result.choices[0].early_stop))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        chat, (options, salt) = _to_chat(messages), self._call_options(kwargs)
        result = await self.backend().agenerate(chat, options, cache_salt=salt)
        return _as_chat(_response(result.text, None, result.usage, result.model, result.finish_reason,
                         result.choices[0].early_stop))

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
        chat, (options, salt) = _to_chat(messages), self._call_options(kwargs)
        pieces = self.backend().stream(chat, options, cache_salt=salt)
        return (_as_chat(response) for response in _completions(pieces))

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage],
                           **kwargs: Any) -> ChatResponseAsyncGen:
        chat, (options, salt) = _to_chat(messages), self._call_options(kwargs)
        pieces = self.backend().astream(chat, options, cache_salt=salt)
        return (_as_chat(response) async for response in _acompletions(pieces))


def _trained_window(config: dict[str, Any]) -> int | None:
    for section in (config, config.get("text_config") or {}):
        for key in _WINDOW_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _prompt(prompt: str, formatted: bool) -> PromptInput:
    return prompt if formatted else [{"role": "user", "content": prompt}]


def _to_chat(messages: Sequence[ChatMessage]) -> list[ChatMessageDict]:
    chat: list[ChatMessageDict] = []
    for message in messages:
        role = message.role.value
        if role not in _ROLES:
            raise InvalidParameterError("messages", allowed="system, user or assistant messages",
                                        received=role)
        if any(not isinstance(block, TextBlock) for block in message.blocks):
            raise InvalidParameterError("messages", allowed="text content only",
                                        received=[type(block).__name__ for block in message.blocks])
        chat.append({"role": role, "content": message.content or ""})
    return chat


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
