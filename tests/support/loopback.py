"""The common part of the loopback provider stubs: a threaded HTTP server on 127.0.0.1 that hands
each POST's JSON body to the stub's ``respond`` and writes back JSON or server-sent events.

Each stub (OpenAI, Anthropic, the agent's scripted model, the tool-calling model) only decides
what to answer; serving, streaming and shutdown live here once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

__all__ = ["LoopbackServer", "Reply", "openai_chunk_base", "openai_completion", "sse"]


@dataclass(frozen=True)
class Reply:
    """What a stub answers one request with: a JSON payload, or a stream of SSE frames."""

    payload: dict[str, Any] | None = None
    status: int = 200
    events: Sequence[str] | None = None
    """Server-sent-event frames (see :func:`sse`), written in order, for a streaming request."""


def sse(data: Any, *, event: str | None = None) -> str:
    """One server-sent-event frame; ``data`` is JSON-encoded unless it is already a str."""
    body = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "") + f"data: {body}\n\n"


def openai_completion(message: dict[str, Any], *, finish: str, model: str, usage: dict[str, Any] | None,
                      completion_id: str = "chatcmpl-stub", n: int = 1) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` object with ``n`` copies of ``message``."""
    payload: dict[str, Any] = {
        "id": completion_id, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": message, "finish_reason": finish, "logprobs": None} for i in range(n)],
    }
    if usage is not None:
        payload["usage"] = usage
    return payload


def openai_chunk_base(model: str, completion_id: str = "chatcmpl-stub") -> dict[str, Any]:
    """The fields every ``chat.completion.chunk`` of one stream repeats."""
    return {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}


class LoopbackServer:
    """Base class of the stubs: ``with Stub(...) as stub:`` serves until the block ends."""

    url_suffix: ClassVar[str] = "/v1"
    """What follows ``http://127.0.0.1:PORT`` in ``base_url`` (the client's API root)."""

    def respond(self, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        server: ThreadingHTTPServer | None = getattr(self, "_server", None)
        assert server is not None, "use the stub as a context manager"
        return f"http://127.0.0.1:{server.server_address[1]}{self.url_suffix}"

    def __enter__(self) -> Any:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                reply = stub.respond(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(reply.status)
                if reply.events is not None:
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for frame in reply.events:
                        self.wfile.write(frame.encode())
                    self.wfile.flush()
                    return
                data = json.dumps(reply.payload).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        server: ThreadingHTTPServer | None = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
