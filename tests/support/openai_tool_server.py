"""A loopback HTTP server speaking the OpenAI chat-completions wire format with tool calls.

It answers like a function-calling model that follows a script: a request whose last message is
a user turn and that binds tools gets a ``tool_calls`` answer (the named ``tool_choice``, else the
first bound tool the script has arguments for); a request whose last message is a tool result
gets a text answer quoting that result. Every call id is new (``call_<request number>``), so a
test can tell a served step from a fresh one. Streaming sends the arguments in two pieces, as
OpenAI does. ``requests`` keeps every request body.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import LoopbackServer, Reply, openai_chunk_base, openai_completion, sse

USAGE = {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
_MODEL = "gpt-4o-mini"


@dataclass
class ToolCallServer(LoopbackServer):
    arguments: dict[str, dict[str, Any]]
    """Per tool name, the arguments the scripted model calls it with."""
    raw_arguments: str | None = None
    """When set, sent as every call's arguments instead (e.g. text that is not JSON)."""
    tool_name: str | None = None
    """When set, the name every call uses instead (e.g. a tool that was not bound)."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tool_requests(self) -> list[dict[str, Any]]:
        """The requests answered with tool calls."""
        return [body for body in self.requests if body["messages"][-1]["role"] != "tool" and body.get("tools")]

    def reply(self, body: dict[str, Any], number: int) -> dict[str, Any]:
        """The assistant message for one request (OpenAI's ``message`` shape)."""
        last = body["messages"][-1]
        if last["role"] == "tool":
            return {"role": "assistant", "content": f"The tool said: {last['content']}"}
        tools = [tool["function"]["name"] for tool in body.get("tools") or []]
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            tools = [choice["function"]["name"]]
        known = [name for name in tools if name in self.arguments]
        if not known:
            return {"role": "assistant", "content": "I have no tool for that."}
        name = self.tool_name or known[0]
        arguments = self.raw_arguments if self.raw_arguments is not None else json.dumps(self.arguments[known[0]])
        return {"role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{number}", "type": "function",
                                "function": {"name": name, "arguments": arguments}}]}

    def respond(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            number = len(self.requests)
        message = self.reply(body, number)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if not body.get("stream"):
            return Reply(openai_completion(message, finish=finish, model=_MODEL, usage=USAGE,
                                           completion_id="chatcmpl-tools"))
        base = openai_chunk_base(_MODEL, "chatcmpl-tools")
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        for call in message.get("tool_calls") or []:
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            deltas.append({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                           "function": {"name": call["function"]["name"], "arguments": arguments[:half]}}]})
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]})
        words = (message.get("content") or "").split(" ")
        deltas += [{"content": (" " if i else "") + word} for i, word in enumerate(words) if word]
        frames = [sse({**base, "choices": [{"index": 0, "delta": delta,
                                            "finish_reason": finish if i == len(deltas) - 1 else None}]})
                  for i, delta in enumerate(deltas)]
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(sse({**base, "choices": [], "usage": USAGE}))
        return Reply(events=[*frames, sse("[DONE]")])
