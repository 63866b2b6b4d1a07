"""The interface every generation backend offers, and the sync/async plumbing they share.

A backend implements two coroutines, ``_generate`` and ``_stream``, that run on its private event
loop; this base class turns them into sync, async, streaming and batch entry points, so the local
engine and the remote-server client share every line that is not I/O.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from lean_backends._loop_thread import LoopThread
from lean_backends.tool_calling import ToolRequest
from lean_backends.tool_prompt import ToolChatMessage
from lean_core.generation import ChatMessageDict, GenerationChunk, GenerationResult, SamplingOptions

__all__ = ["PromptInput", "TextBackend"]

PromptInput = str | Sequence[ChatMessageDict] | Sequence[ToolChatMessage]
"""A raw, already formatted prompt, or a chat rendered with the model's chat template (with
``tools``, messages may carry tool calls and tool results, see :mod:`lean_backends.tool_prompt`)."""

T = TypeVar("T")


class TextBackend(ABC):
    """Sync, async, streaming and batch generation over two backend coroutines."""

    model_name: str

    @abstractmethod
    def _loop_thread(self) -> LoopThread:
        """The started backend's event loop (starting the backend if needed)."""

    @abstractmethod
    async def _generate(self, prompt: PromptInput, options: SamplingOptions,
                        cache_salt: str | None, tools: ToolRequest | None = None) -> GenerationResult:
        """With ``tools``, the result's choices are :class:`~lean_backends.tool_calling.ToolCallingChoice`."""

    @abstractmethod
    def _stream(self, prompt: PromptInput, options: SamplingOptions,
                cache_salt: str | None, tools: ToolRequest | None = None) -> AsyncIterator[GenerationChunk]:
        """With ``tools``, calls arrive in :class:`~lean_backends.tool_calling.ToolCallingChunk` pieces."""

    @property
    @abstractmethod
    def context_window(self) -> int:
        """Most prompt + output tokens one request may use."""

    @abstractmethod
    def count_prompt_tokens(self, prompt: PromptInput) -> int | None:
        """Prompt tokens as the model will see them, or None when only the server knows."""

    async def _generate_many(self, prompts: Sequence[PromptInput], options: SamplingOptions,
                             cache_salt: str | None) -> list[GenerationResult]:
        return list(await asyncio.gather(*(self._generate(p, options, cache_salt) for p in prompts)))

    def generate(self, prompt: PromptInput, options: SamplingOptions, *,
                 cache_salt: str | None = None, tools: ToolRequest | None = None) -> GenerationResult:
        """One request; ``tools`` (a chat prompt only) lets the model call tools."""
        return self._loop_thread().run(self._generate(prompt, options, cache_salt, tools))

    def _running_loop(self) -> LoopThread | None:
        """The loop if the backend is already started (no thread hop needed), else None."""
        return None

    async def _started_loop(self) -> LoopThread:
        # Starting an engine takes tens of seconds: never block the caller's event loop on it.
        # Once started, no hop through a worker thread (it cost every request of a batch one).
        running = self._running_loop()
        return running if running is not None else await asyncio.to_thread(self._loop_thread)

    async def agenerate(self, prompt: PromptInput, options: SamplingOptions, *,
                        cache_salt: str | None = None, tools: ToolRequest | None = None) -> GenerationResult:
        return await (await self._started_loop()).arun(self._generate(prompt, options, cache_salt, tools))

    def generate_many(self, prompts: Sequence[PromptInput], options: SamplingOptions, *,
                      cache_salt: str | None = None) -> list[GenerationResult]:
        """All prompts submitted at once, so the engine batches them continuously."""
        return self._loop_thread().run(self._generate_many(prompts, options, cache_salt))

    async def agenerate_many(self, prompts: Sequence[PromptInput], options: SamplingOptions, *,
                             cache_salt: str | None = None) -> list[GenerationResult]:
        return await (await self._started_loop()).arun(self._generate_many(prompts, options, cache_salt))

    def stream(self, prompt: PromptInput, options: SamplingOptions, *,
               cache_salt: str | None = None, tools: ToolRequest | None = None) -> Iterator[GenerationChunk]:
        """Chunks as they are generated; the last one carries the request's usage."""
        return self._loop_thread().iterate(lambda: self._stream(prompt, options, cache_salt, tools))

    async def astream(self, prompt: PromptInput, options: SamplingOptions, *,
                      cache_salt: str | None = None, tools: ToolRequest | None = None) -> AsyncIterator[GenerationChunk]:
        loop = await self._started_loop()
        async for chunk in loop.aiterate(lambda: self._stream(prompt, options, cache_salt, tools)):
            yield chunk

    def run_on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a whole coroutine on the backend's loop (frameworks' batch calls go there, so
        every request of the batch reaches the engine at once)."""
        return self._loop_thread().run(coro)
