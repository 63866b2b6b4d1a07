"""A loopback HTTP server speaking the Anthropic Messages API wire format, for tests.

The real ``langchain_anthropic.ChatAnthropic`` (``anthropic_api_url=stub.base_url``) runs against
it offline, streaming included. It records every request body and answers from a script of
replies (text, or a tool call), reporting the usage the test decides, prompt-cache fields included.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lean_core.usage import TokenUsage


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
class AnthropicStub:
    usage: AnthropicStubUsage = field(default_factory=AnthropicStubUsage)
    model_reply: str = "claude-sonnet-4-5-20250929"
    script: list[str | ToolCallReply] = field(default_factory=list)
    """Replies in order; when it runs out, the stub echoes the last user text."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

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

    def __enter__(self) -> AnthropicStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = stub._next_reply(body)
                content = stub._content(reply, len(stub.requests))
                stop = "tool_use" if isinstance(reply, ToolCallReply) else "end_turn"
                message = {"id": f"msg_{len(stub.requests):04d}", "type": "message", "role": "assistant",
                           "model": stub.model_reply, "content": content, "stop_reason": stop,
                           "stop_sequence": None, "usage": stub.usage.payload()}
                if body.get("stream"):
                    self._stream(message)
                else:
                    data = json.dumps(message).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def _event(self, name: str, data: dict[str, Any]) -> None:
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())

            def _stream(self, message: dict[str, Any]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                usage = {**message["usage"], "output_tokens": 1}
                self._event("message_start", {"type": "message_start", "message": {
                    **message, "content": [], "stop_reason": None, "usage": usage}})
                for index, block in enumerate(message["content"]):
                    if block["type"] == "text":
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {"type": "text", "text": ""}})
                        for word in block["text"].split(" "):
                            self._event("content_block_delta", {"type": "content_block_delta", "index": index,
                                                                "delta": {"type": "text_delta", "text": word + " "}})
                    else:
                        self._event("content_block_start", {"type": "content_block_start", "index": index,
                                                            "content_block": {**block, "input": {}}})
                        self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                            "type": "input_json_delta", "partial_json": json.dumps(block["input"])}})
                    self._event("content_block_stop", {"type": "content_block_stop", "index": index})
                self._event("message_delta", {"type": "message_delta", "delta": {
                    "stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": message["usage"]})  # cumulative, as the API reports it now
                self._event("message_stop", {"type": "message_stop"})
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
