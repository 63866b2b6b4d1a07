"""Scripted tool choice: force a named tool for the first K model calls and no tool for the last.

A 135M model cannot be trusted to choose tools, so the benchmark decides for it: the model still
writes every tool call's arguments and the final answer, but *whether* and *which* tool it calls is
fixed. With greedy decoding on the server that makes a run deterministic, and every configuration
sees the same number of steps. vLLM's OpenAI server honours a named ``tool_choice`` with guided
decoding (the arguments always parse against the tool's schema) and ``"none"`` by answering in text.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware import AgentMiddleware

from lean_core.errors import InvalidParameterError

if TYPE_CHECKING:
    from langchain.agents.middleware import ModelRequest, ModelResponse

__all__ = ["ScriptedToolChoiceMiddleware"]


class ScriptedToolChoiceMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """``tool_choice`` = ``tool`` for the first ``tool_steps`` model calls, then ``"none"``.

    One instance serves one agent run (it counts that run's model calls). Place it last in the
    middleware list, innermost, so that nothing after it changes the choice.
    """

    def __init__(self, tool: str, *, tool_steps: int) -> None:
        super().__init__()
        if not tool:
            raise InvalidParameterError("tool", allowed="a tool name", received=tool)
        if isinstance(tool_steps, bool) or not isinstance(tool_steps, int) or tool_steps < 0:
            raise InvalidParameterError("tool_steps", allowed="a whole number >= 0", received=tool_steps)
        self.tool = tool
        self.tool_steps = tool_steps
        self.choices: list[str] = []
        """The tool choice forced at each model call so far, in order."""

    @property
    def name(self) -> str:
        return "ScriptedToolChoice"

    def next_choice(self) -> str:
        """The choice for the next model call (and count it)."""
        choice = self.tool if len(self.choices) < self.tool_steps else "none"
        self.choices.append(choice)
        return choice

    def wrap_model_call(self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]) -> Any:
        return handler(request.override(tool_choice=self.next_choice()))

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[ModelResponse]]) -> Any:
        return await handler(request.override(tool_choice=self.next_choice()))
