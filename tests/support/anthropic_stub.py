"""A loopback HTTP server speaking the Anthropic Messages API wire format, for tests.

The real ``langchain_anthropic.ChatAnthropic`` (``anthropic_api_url=stub.base_url``) runs against
it offline, streaming included. It records every request body and answers from a script of
replies (text, or a tool call), reporting the usage the test decides, prompt-cache fields included.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from lean_core.usage import TokenUsage
from tests.support.loopback import LoopbackServer, Reply, sse


@dataclass
class AnthropicStubUsage:
    """Anthropic's usage object: ``input_tokens`` excludes cache reads and writes."""

    input_tokens: int = 40
    cache_read_input_tokens: int = 2048
    cache_write_5m_tokens: int = 1024
    cache_write_1h_tokens: int = 0
    output_tokens: int = 12

    def as_token_usage(self) -> TokenUsage:
        written = self.cache_write_5m_tokens + self.cache_write_1h_tokens
        return TokenUsage(input_tokens=self.input_tokens + self.cache_read_input_tokens + written,
                          cached_input_tokens=self.cache_read_input_tokens, cache_write_tokens=written,
                          cache_write_1h_tokens=self.cache_write_1h_tokens, output_tokens=self.output_tokens)

    def payload(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_write_5m_tokens + self.cache_write_1h_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": self.cache_write_5m_tokens,
                               "ephemeral_1h_input_tokens": self.cache_write_1h_tokens},
            "output_tokens": self.output_tokens,
        }


@dataclass
class ToolCallReply:
    """A scripted reply that calls one tool."""

    name: str
    arguments: dict[str, Any]
    text: str = ""


@dataclass
class AnthropicStub(LoopbackServer):
    url_suffix = ""
    usage: AnthropicStubUsage = field(default_factory=AnthropicStubUsage)
    model_reply: str = "claude-sonnet-4-5-20250929"
    script: list[str | ToolCallReply] = field(default_factory=list)
    """Replies in order; when it runs out, the stub echoes the last user text."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _next_reply(self, body: dict[str, Any]) -> str | ToolCallReply:
        with self._lock:
            self.requests.append(body)
            if self.script:
                return self.script.pop(0)
        content = body["messages"][-1]["content"]
        if isinstance(content, list):
            content = " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
        return "echo: " + " ".join(str(content).split()[:6])

    def _content(self, reply: str | ToolCallReply, index: int) -> list[dict[str, Any]]:
        if isinstance(reply, str):
            return [{"type": "text", "text": reply}]
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks.append({"type": "tool_use", "id": f"toolu_{index:04d}", "name": reply.name, "input": reply.arguments})
        return blocks

    def respond(self, body: dict[str, Any]) -> Reply:
        reply = self._next_reply(body)
        content = self._content(reply, len(self.requests))
        stop = "tool_use" if isinstance(reply, ToolCallReply) else "end_turn"
        message = {"id": f"msg_{len(self.requests):04d}", "type": "message", "role": "assistant",
                   "model": self.model_reply, "content": content, "stop_reason": stop,
                   "stop_sequence": None, "usage": self.usage.payload()}
        return Reply(events=_stream(message)) if body.get("stream") else Reply(message)


def _event(name: str, data: dict[str, Any]) -> str:
    return sse({"type": name, **data}, event=name)


def _stream(message: dict[str, Any]) -> list[str]:
    """The Messages API's event stream for one finished message."""
    usage = {**message["usage"], "output_tokens": 1}
    frames = [_event("message_start", {"message": {**message, "content": [], "stop_reason": None, "usage": usage}})]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            frames.append(_event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}))
            frames += [_event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": word + " "}})
                       for word in block["text"].split(" ")]
        else:
            frames.append(_event("content_block_start", {"index": index, "content_block": {**block, "input": {}}}))
            frames.append(_event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
        frames.append(_event("content_block_stop", {"index": index}))
    # the usage is cumulative, as the API reports it now
    frames.append(_event("message_delta", {"delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                                           "usage": message["usage"]}))
    return [*frames, _event("message_stop", {})]
