"""Tool calling inside the in-process engine: guided options, vLLM tool parsers, finished choices."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lean_backends.tool_calling import (
    ToolCall,
    ToolCallDelta,
    ToolCallingChoice,
    ToolCallingChunk,
    ToolCallOutputError,
    ToolRequest,
)
from lean_core.errors import InvalidParameterError
from lean_core.generation import Choice, GenerationChunk, SamplingOptions

__all__ = ["AutoToolParser", "guided_options", "tool_choice_of", "tool_stream", "unguidable_tools"]


def guided_options(options: SamplingOptions, request: ToolRequest) -> SamplingOptions:
    """``options`` with the request's guided schema (a forced tool call is JSON by construction)."""
    schema = request.guided_schema()
    if schema is None:
        return options
    if options.json_schema is not None:
        raise InvalidParameterError("json_schema", allowed="None when a tool call is forced (tool_choice "
                                    "'required' or a tool name guides the output already)",
                                    received=options.json_schema)
    return options.model_copy(update={"json_schema": schema})


class AutoToolParser:
    """One of vLLM's tool parsers (``vllm.tool_parsers``), for ``tool_choice="auto"``."""

    def __init__(self, name: str, tokenizer: Any, request: ToolRequest) -> None:
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.tool_parsers import ToolParserManager

        try:
            parser_class = ToolParserManager.get_tool_parser(name)
        except KeyError:
            known = sorted(set(ToolParserManager.tool_parsers) | set(ToolParserManager.lazy_parsers))
            raise InvalidParameterError("tool_parser", allowed=f"one of vLLM's tool parsers {known}",
                                        received=name) from None
        self._request = ChatCompletionRequest(model="lean-vllm", messages=[{"role": "user", "content": ""}],
                                              tools=request.openai_tools(), tool_choice="auto")
        tools: Any = self._request.tools
        self._parser = parser_class(tokenizer, tools)
        self._tools = request

    def parse(self, text: str) -> tuple[str, tuple[ToolCall, ...]]:
        info = self._parser.extract_tool_calls(text, self._request)
        if not info.tools_called:
            return text, ()
        calls = tuple(self._tools.checked_call(c.function.name, c.function.arguments, c.id or None)
                      for c in info.tool_calls)
        return info.content or "", calls


def tool_choice_of(choice: Choice, request: ToolRequest, parser: AutoToolParser | None) -> ToolCallingChoice:
    """A finished candidate with its calls parsed out and checked against the tools."""
    text, calls = choice.text, ()
    try:
        if request.guided:
            text, calls = "", request.parse_guided(choice.text)
        elif request.mode == "auto" and parser is not None:
            text, calls = parser.parse(choice.text)
    except ToolCallOutputError as exc:
        if choice.finish_reason == "length":  # guided JSON cut off by max_tokens
            raise ToolCallOutputError(allowed=f"a complete tool call; it was cut off at max_tokens "
                                      f"({choice.completion_tokens} tokens): raise max_tokens",
                                      received=choice.text) from exc
        raise
    return ToolCallingChoice(**{**choice.model_dump(), "text": text}, tool_calls=calls)


async def tool_stream(pieces: AsyncIterator[GenerationChunk], request: ToolRequest,
                      parser: AutoToolParser | None) -> AsyncIterator[GenerationChunk]:
    """Stream a tool request. Text that may hold calls (guided, or ``auto`` with a parser) is
    buffered and sent once complete: its text first, then each call whole (id, name, arguments)."""
    if not request.guided and (request.mode != "auto" or parser is None):
        async for piece in pieces:
            yield piece
        return
    text, finish, tokens = "", None, 0
    async for piece in pieces:
        if piece.usage is not None:
            tokens = piece.usage.output_tokens
            done = tool_choice_of(Choice(text=text, finish_reason=finish or "stop", completion_tokens=tokens),
                                  request, parser)
            deltas = tuple(ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments_json)
                           for i, c in enumerate(done.tool_calls))
            yield ToolCallingChunk(text=done.text, finish_reason=finish or "stop", tool_call_deltas=deltas)
            yield piece
            return
        text, finish = text + piece.text, piece.finish_reason or finish


@contextlib.contextmanager
def unguidable_tools(tools: ToolRequest) -> Iterator[None]:
    """vLLM rejects a schema its structured-output backend cannot compile (a ValueError, or
    ``VLLMValidationError`` in newer releases) when the request is added: name the tools as the cause."""
    try:
        yield
    except Exception as exc:
        from vllm.exceptions import VLLMClientError

        if (not tools.guided or isinstance(exc, InvalidParameterError)
                or not isinstance(exc, (ValueError, VLLMClientError))):
            raise
        raise InvalidParameterError("tools", allowed="argument schemas vLLM's structured outputs can guide on",
                                    received=str(exc)) from exc
