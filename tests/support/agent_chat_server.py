"""A loopback OpenAI chat-completions server that plays an agent's model: it answers with scripted
tool calls, then a final answer, in the real wire format, so the real ``ChatOpenAI`` drives
``create_agent`` offline.

- The step is the number of assistant messages after the last user message in the request:
  step 0 gets ``script[0]``, and so on (the last entry repeats).
- Tool-call ids are new on every response (``call_<hex>``), as a provider mints them.
- ``{last_tool}`` in a scripted answer is replaced by the last tool message's content (so a test
  sees what reached the model).
- Usage is reported like OpenAI's, with a prefix cache: ``cached_tokens`` is the longest prefix
  this request's messages share with any earlier request's (as canonical JSON, ~4 characters a
  token, in blocks of 16 tokens), so a byte-stable prefix shows up as cached tokens.
- ``fail_requests``: answer the next N requests with HTTP 500 (a failed step).
- Every request body is kept in ``requests``.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.support.loopback import LoopbackServer, Reply, openai_completion

__all__ = ["AgentChatServer", "ScriptedStep"]

_BLOCK = 16


@dataclass(frozen=True)
class ScriptedStep:
    """One model response: tool calls (name, args) and/or text."""

    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()
    content: str = ""
    finish_reason: str | None = None
    """Default: "tool_calls" when there are tool calls, else "stop"."""


@dataclass
class AgentChatServer(LoopbackServer):
    script: list[ScriptedStep]
    model_reply: str = "gpt-4o-mini-2024-07-18"
    fail_requests: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _seen: list[str] = field(default_factory=list)

    @staticmethod
    def step_of(body: dict[str, Any]) -> int:
        step = 0
        for message in reversed(body["messages"]):
            if message["role"] == "user":
                break
            step += message["role"] == "assistant"
        return step

    def _reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(body)
            if self.fail_requests > 0:
                self.fail_requests -= 1
                return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
            canonical = json.dumps(body["messages"], sort_keys=True, separators=(",", ":"))
            shared = max((_common_prefix(canonical, seen) for seen in self._seen), default=0)
            self._seen.append(canonical)
        step = self.script[min(self.step_of(body), len(self.script) - 1)]
        tools = [m for m in body["messages"] if m["role"] == "tool"]
        message: dict[str, Any] = {"role": "assistant",
                                   "content": step.content.replace("{last_tool}", str(tools[-1]["content"]) if tools
                                                                   else "") or None}
        if step.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{uuid.uuid4().hex[:12]}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for name, args in step.tool_calls]
        prompt_tokens = len(canonical) // 4 + 1
        cached = min(prompt_tokens, (shared // 4) // _BLOCK * _BLOCK)
        completion = max(1, len(json.dumps(message)) // 4)
        finish = step.finish_reason or ("tool_calls" if step.tool_calls else "stop")
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                 "total_tokens": prompt_tokens + completion, "prompt_tokens_details": {"cached_tokens": cached},
                 "completion_tokens_details": {"reasoning_tokens": 0}}
        return 200, openai_completion(message, finish=finish, model=self.model_reply, usage=usage,
                                      completion_id=f"chatcmpl-{uuid.uuid4().hex[:12]}")

    def respond(self, body: dict[str, Any]) -> Reply:
        status, payload = self._reply(body)
        return Reply(payload, status=status)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
