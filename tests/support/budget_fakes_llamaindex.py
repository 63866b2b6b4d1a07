"""A LlamaIndex LLM that honours ``max_tokens`` the way providers do, one word per token."""

from __future__ import annotations

from collections.abc import Sequence
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
)
from llama_index.core.llms.llm import LLM
from pydantic import Field

from tests.support.budget_fakes import _reply


class WordBudgetLLM(LLM):
    answer: str = "Paris is the capital of France."
    max_tokens: int | None = None
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=self.max_tokens or 256, is_chat_model=True,
                           model_name="word-budget")

    def _respond(self, messages: Sequence[ChatMessage], kwargs: dict[str, Any]) -> tuple[str, str, int]:
        self.calls.append({"messages": list(messages), "max_tokens": self.max_tokens, **kwargs})
        return _reply(self.answer, list(messages), self.max_tokens)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        text, finish, n = self._respond(messages, kwargs)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text),
                            raw={"finish_reason": finish, "usage": {"completion_tokens": n}})

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        text, finish, n = self._respond(messages, kwargs)
        words = [w + " " for w in text.split(" ") if w]

        def gen() -> ChatResponseGen:
            so_far = ""
            for i, word in enumerate(words):
                so_far += word
                raw = {"finish_reason": finish, "usage": {"completion_tokens": n}} if i == len(words) - 1 else None
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=so_far), delta=word,
                                   raw=raw)

        return gen()

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        responses = list(self.stream_chat(messages, **kwargs))

        async def gen() -> ChatResponseAsyncGen:
            for r in responses:
                yield r

        return gen()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        r = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=r.message.content or "", raw=r.raw)

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self.complete(prompt, formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError

    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        raise NotImplementedError
