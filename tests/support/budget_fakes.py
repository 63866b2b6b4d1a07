"""Chat models that honour an output budget the way providers do, one word per token.

They answer a fixed text; a budget smaller than the answer cuts it and reports
``finish_reason="length"``; asked to continue (an assistant turn then a user turn), they answer
the rest. Every call's keyword arguments are kept, so tests can check what was bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


def _reply(answer: str, messages: list[Any], budget: int | None) -> tuple[str, str, int]:
    words = answer.split()
    if len(messages) >= 3 and _role(messages[-2]) in ("ai", "assistant"):
        done = len(str(_content(messages[-2])).split())
        words = words[done:]
    finish = "stop"
    if budget is not None and len(words) > budget:
        words, finish = words[:budget], "length"
    return " ".join(words) + (" " if finish == "length" else ""), finish, len(words)


def _role(message: Any) -> str:
    return str(getattr(message, "type", None) or getattr(getattr(message, "role", None), "value", ""))


def _content(message: Any) -> Any:
    return getattr(message, "content", "")


class WordBudgetChat(BaseChatModel):
    """Answers ``answer``; ``max_tokens`` (field or call keyword) cuts it, one word per token."""

    answer: str = "Paris is the capital of France."
    max_tokens: int | None = None
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "word-budget"

    def _budget(self, kwargs: dict[str, Any]) -> int | None:
        return kwargs.get("max_tokens", self.max_tokens)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        self.calls.append({"stop": stop, "messages": messages, **kwargs})
        text, finish, n = _reply(self.answer, messages, self._budget(kwargs))
        message = AIMessage(content=text, response_metadata={"finish_reason": finish},
                            usage_metadata={"input_tokens": 5, "output_tokens": n, "total_tokens": 5 + n})
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        self.calls.append({"stop": stop, "messages": messages, **kwargs})
        text, finish, n = _reply(self.answer, messages, self._budget(kwargs))
        for word in text.split(" "):
            if word:
                yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", response_metadata={"finish_reason": finish},
            usage_metadata={"input_tokens": 5, "output_tokens": n, "total_tokens": 5 + n}))


class ChatOllama(WordBudgetChat):
    """Named like langchain-ollama's class: its budget keyword is ``num_predict``."""

    num_predict: int | None = None

    def _budget(self, kwargs: dict[str, Any]) -> int | None:
        return kwargs.get("num_predict", self.num_predict)


class UnknownBudgetChat(WordBudgetChat):
    """A class the mapping does not know, which ignores every budget keyword."""

    def _budget(self, kwargs: dict[str, Any]) -> int | None:
        return None
