"""A loopback HTTP server speaking the OpenAI chat-completions wire format, for tests.

It lets the real ``langchain_openai.ChatOpenAI`` and ``llama_index.llms.openai.OpenAI`` classes run
offline, streaming included, while the test decides exactly what usage the "provider" reports.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lean_core.usage import TokenUsage


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
class OpenAIStub:
    usage: StubUsage = field(default_factory=StubUsage)
    report_usage: bool = True
    model_reply: str = "gpt-4o-2024-08-06"
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Every request body, in arrival order (what the client really sent)."""
    script: list[str | StubToolCall] = field(default_factory=list)
    """Replies in order (text, or a tool call); when it runs out, the stub echoes the last message."""
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAIStub:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                last = body["messages"][-1]["content"] if "messages" in body else body.get("prompt", "")
                if isinstance(last, list):
                    last = " ".join(part.get("text", "") for part in last)
                reply = "echo: " + " ".join(str(last).split()[:6])
                n = int(body.get("n") or 1)
                scripted = stub.script.pop(0) if stub.script else None
                if isinstance(scripted, StubToolCall):
                    self._tool_call(scripted)
                    return
                reply = scripted if scripted is not None else reply
                if body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._json(body, reply, n)

            def _json(self, body: dict[str, Any], reply: str, n: int) -> None:
                payload: dict[str, Any] = {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": stub.model_reply,
                    "choices": [
                        {"index": i, "message": {"role": "assistant", "content": reply},
                         "finish_reason": "stop", "logprobs": None}
                        for i in range(n)
                    ],
                }
                if stub.report_usage:
                    payload["usage"] = stub.usage.payload()
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _tool_call(self, call: StubToolCall) -> None:
                message = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{len(stub.requests):04d}", "type": "function",
                     "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}]}
                payload: dict[str, Any] = {
                    "id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                    "model": stub.model_reply,
                    "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls", "logprobs": None}],
                }
                if stub.report_usage:
                    payload["usage"] = stub.usage.payload()
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, body: dict[str, Any], reply: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk",
                        "created": int(time.time()), "model": stub.model_reply}
                pieces = [{"role": "assistant", "content": ""}] + [
                    {"content": word + " "} for word in reply.split()
                ]
                for i, delta in enumerate(pieces):
                    finish = "stop" if i == len(pieces) - 1 else None
                    chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                if stub.report_usage and wants_usage:
                    chunk = {**base, "choices": [], "usage": stub.usage.payload()}
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
