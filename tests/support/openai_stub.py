"""A loopback HTTP server speaking the OpenAI chat-completions wire format, for tests.

It lets the real ``langchain_openai.ChatOpenAI`` and ``llama_index.llms.openai.OpenAI`` classes run
offline, streaming included, while the test decides exactly what usage the "provider" reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lean_core.usage import TokenUsage
from tests.support.loopback import LoopbackServer, Reply, openai_chunk_base, openai_completion, sse


@dataclass
class StubUsage:
    prompt_tokens: int = 120
    cached_tokens: int = 64
    completion_tokens: int = 15
    reasoning_tokens: int = 5

    def as_token_usage(self) -> TokenUsage:
        return TokenUsage(input_tokens=self.prompt_tokens, cached_input_tokens=self.cached_tokens,
                          output_tokens=self.completion_tokens, reasoning_tokens=self.reasoning_tokens)

    def payload(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass
class StubToolCall:
    """A scripted reply that calls one tool (non-streaming responses only)."""

    name: str
    arguments: dict[str, Any]


@dataclass
class OpenAIStub(LoopbackServer):
    usage: StubUsage = field(default_factory=StubUsage)
    report_usage: bool = True
    model_reply: str = "gpt-4o-2024-08-06"
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request body, in arrival order (what the client really sent)."""
    script: list[str | StubToolCall] = field(default_factory=list)
    """Replies in order (text, or a tool call); when it runs out, the stub echoes the last message."""

    def respond(self, body: dict[str, Any]) -> Reply:
        self.requests.append(body)
        usage = self.usage.payload() if self.report_usage else None
        scripted = self.script.pop(0) if self.script else None
        if isinstance(scripted, StubToolCall):
            message = {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"call_{len(self.requests):04d}", "type": "function",
                 "function": {"name": scripted.name, "arguments": json.dumps(scripted.arguments)}}]}
            return Reply(openai_completion(message, finish="tool_calls", model=self.model_reply, usage=usage))
        if scripted is None:
            last = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
            if isinstance(last, list):
                last = " ".join(part.get("text", "") for part in last)
            scripted = "echo: " + " ".join(str(last).split()[:6])
        if body.get("stream"):
            return Reply(events=self._stream(body, scripted))
        message = {"role": "assistant", "content": scripted}
        return Reply(openai_completion(message, finish="stop", model=self.model_reply, usage=usage,
                                       n=int(body.get("n") or 1)))

    def _stream(self, body: dict[str, Any], reply: str) -> list[str]:
        base = openai_chunk_base(self.model_reply)
        pieces = [{"role": "assistant", "content": ""}] + [{"content": word + " "} for word in reply.split()]
        frames = [sse({**base, "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": "stop" if i == len(pieces) - 1 else None}]})
                  for i, delta in enumerate(pieces)]
        if self.report_usage and (body.get("stream_options") or {}).get("include_usage"):
            frames.append(sse({**base, "choices": [], "usage": self.usage.payload()}))
        return [*frames, sse("[DONE]")]
