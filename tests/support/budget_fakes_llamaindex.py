"""LlamaIndex LLMs that honour ``max_tokens`` the way providers do, one word per token; one of
them calls tools (a function-calling model whose tool call is cut like any answer)."""

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
    ToolCallBlock,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection
from llama_index.core.tools.types import BaseTool
from pydantic import Field

from tests.support.budget_fakes import _reply


class WordBudgetLLM(LLM):
    answer: str = "Paris is the capital of France."
    max_tokens: int | None = None
    calls: list[dict[str, Any]] = Field(default_factory=list, exclude=True)
    """Every request (excluded: a record of calls, not a setting that shapes an answer)."""

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


class ToolWordBudgetLLM(WordBudgetLLM, FunctionCallingLLM):
    """A function-calling WordBudgetLLM: with tools bound it calls the first one with ``arguments``
    (the JSON text counts one token per word, so a small budget cuts it: finish ``"length"``)."""

    arguments: str = '{"city": "Paris"}'

    @property
    def metadata(self) -> LLMMetadata:
        return super().metadata.model_copy(update={"is_function_calling_model": True})

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        tools = kwargs.get("tools")
        if not tools:
            return super().chat(messages, **kwargs)
        self.calls.append({"messages": list(messages), "max_tokens": self.max_tokens, **kwargs})
        words = self.arguments.split(" ")
        cut = self.max_tokens is not None and len(words) > self.max_tokens
        arguments = " ".join(words[: self.max_tokens] if cut else words)
        call = ToolCallBlock(tool_call_id=f"call_{len(self.calls)}", tool_name=tools[0]["name"],
                             tool_kwargs=arguments)
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, blocks=[call]),
                            raw={"finish_reason": "length" if cut else "tool_calls",
                                 "usage": {"completion_tokens": min(len(words), self.max_tokens or len(words))}})

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        if not kwargs.get("tools"):
            return super().stream_chat(messages, **kwargs)
        response = self.chat(messages, **kwargs)

        def gen() -> ChatResponseGen:
            yield response.model_copy(update={"delta": ""})

        return gen()

    def _prepare_chat_with_tools(self, tools: Sequence[BaseTool], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 **kwargs: Any) -> dict[str, Any]:
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg) if isinstance(user_msg, str)
                            else user_msg)
        specs = [{"name": t.metadata.get_name(), "parameters": t.metadata.get_parameters_dict()} for t in tools]
        return {"messages": messages, "tools": specs, "tool_required": tool_required, **kwargs}

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        import json

        blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if not blocks and error_on_no_tool_call:
            raise ValueError("no tool call")
        return [ToolSelection(tool_id=b.tool_call_id or "", tool_name=b.tool_name,
                              tool_kwargs=json.loads(b.tool_kwargs) if isinstance(b.tool_kwargs, str)
                              else b.tool_kwargs) for b in blocks]
