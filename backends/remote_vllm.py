"""A running vLLM OpenAI-compatible server (``vllm serve``) as a backend.

This is how users scale past one machine: many GPUs behind one URL. Chats go to
``/v1/chat/completions`` (the server applies the model's chat template), raw prompts to
``/v1/completions``. Usage, streaming, stop strings, budgets and JSON-guided output behave as in
the in-process engine; cached prompt tokens are reported when the server runs with
``--enable-prompt-tokens-details``.

Tools go to the server in OpenAI's wire format (``tools``, ``tool_choice``), and the calls it
returns are checked against them. ``tool_choice="auto"`` needs a server started with
``--enable-auto-tool-choice --tool-call-parser <parser>`` (the server's parser applies, not
``tool_parser=``); forced choices (``required``, a tool name) work on any server. The server
renders tools, calls and results with the model's chat template: a template without tools (the
bundled SmolLM2's) shows the model no tool descriptions -- the in-process fallback of
:mod:`lean_backends.tool_prompt` does not apply here -- so serve such a model with a tool-aware
``--chat-template``. For a model without a native tool format, start a server that has a parser
with ``VLLM_ENFORCE_STRICT_TOOL_CALLING=0`` so forced calls are JSON-guided, not guided into the
parser's tags only.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from typing import Any

from lean_backends._loop_thread import LoopThread
from lean_backends._vllm_outputs import finish_reason
from lean_backends._vllm_tools import guided_options
from lean_backends.lora_adapter import lora_on_a_server
from lean_backends.text_backend import PromptInput, TextBackend
from lean_backends.tool_calling import (
    ToolCallDelta,
    ToolCallingChoice,
    ToolCallingChunk,
    ToolRequest,
)
from lean_backends.tool_prompt import has_tool_turns, template_messages
from lean_core._extras import require
from lean_core.errors import InvalidParameterError, LeanInferenceError
from lean_core.generation import (
    Choice,
    GenerationChunk,
    GenerationResult,
    SamplingOptions,
    normalise_messages,
)
from lean_core.usage import TokenUsage

__all__ = ["RemoteEngineError", "RemoteVLLMClient"]


class RemoteEngineError(LeanInferenceError, ConnectionError):
    """The vLLM server cannot be reached or refused the request."""


class RemoteVLLMClient(TextBackend):
    """Generation against ``base_url`` (e.g. ``http://gpu-pool:8000/v1``)."""

    def __init__(self, base_url: str, *, model: str | None = None, api_key: str | None = None,
                 timeout_s: float = 600.0, max_retries: int = 2) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidParameterError("base_url", allowed="an http(s) URL such as http://host:8000/v1",
                                        received=base_url)
        self.base_url = base_url.rstrip("/")
        self._requested_model = model
        self.model_name = model or ""
        self._api_key = api_key or "EMPTY"
        self._timeout_s = timeout_s
        self._max_retries = max_retries
        self._loop: LoopThread | None = None
        self._client: Any = None
        self._context_window: int | None = None
        self._lock = threading.Lock()

    def _loop_thread(self) -> LoopThread:
        with self._lock:
            if self._loop is None:
                openai = require("openai", extra="vllm-cpu", feature="Talking to a vLLM server")
                loop = LoopThread(name="lean-vllm-remote")

                async def connect() -> Any:
                    client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key,
                                                timeout=self._timeout_s, max_retries=self._max_retries)
                    try:
                        models = await client.models.list()
                    except openai.APIConnectionError as exc:
                        raise RemoteEngineError(f"cannot reach the vLLM server at {self.base_url}: {exc}") from exc
                    except openai.APIStatusError as exc:
                        raise RemoteEngineError(f"the server at {self.base_url} answered {exc.status_code}: "
                                                f"{exc.message}") from exc
                    return client, list(models.data)

                try:
                    client, models = loop.run(connect())
                except BaseException:
                    loop.stop()
                    raise
                served = {m.id: m for m in models}
                if self._requested_model is None:
                    if not served:
                        loop.stop()
                        raise RemoteEngineError(f"the server at {self.base_url} serves no model")
                    self.model_name = next(iter(served))
                elif self._requested_model not in served:
                    loop.stop()
                    raise InvalidParameterError("model", allowed=f"a model the server serves: {sorted(served)}",
                                                received=self._requested_model)
                self._context_window = getattr(served[self.model_name], "max_model_len", None)
                self._client, self._loop = client, loop
            return self._loop

    @property
    def context_window(self) -> int:
        self._loop_thread()
        return int(self._context_window or 0)

    def count_prompt_tokens(self, prompt: PromptInput) -> int | None:
        return None  # only the server's tokenizer knows; its usage reports the exact figure

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                client, loop = self._client, self._loop
                self._loop = self._client = None
                try:
                    loop.run(client.close(), timeout=10)
                finally:
                    loop.stop()

    def _request(self, prompt: PromptInput, options: SamplingOptions, cache_salt: str | None,
                 *, stream: bool, tools: ToolRequest | None = None) -> tuple[Any, dict[str, Any]]:
        if options.early_stop is not None:
            # It needs per-token alternatives and a way to stop mid-request: in-process only.
            raise InvalidParameterError("early_stop", allowed="None with base_url (a vLLM server); "
                                        "early stopping runs with the in-process engine",
                                        received=options.early_stop)
        if options.lora_adapter is not None:
            raise lora_on_a_server(options.lora_adapter)
        body: dict[str, Any] = {
            "model": self.model_name, "max_tokens": options.max_tokens, "temperature": options.temperature,
            "top_p": options.top_p, "n": options.n,
        }
        if options.seed is not None:
            body["seed"] = options.seed
        if options.stop:
            body["stop"] = list(options.stop)
        extra: dict[str, Any] = {}
        if cache_salt:
            extra["cache_salt"] = cache_salt
        if options.json_schema is not None:
            extra["structured_outputs"] = {"json": options.json_schema}
        if options.ignore_eos:
            extra["ignore_eos"] = True  # a vLLM server extension, not OpenAI's API
        if extra:
            body["extra_body"] = extra
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if tools is not None:
            if isinstance(prompt, str):
                raise InvalidParameterError("prompt", allowed="a chat (a list of messages) when tools are given",
                                            received="a raw text prompt")
            guided_options(options, tools)  # the same conflict check as in process
            body["tools"] = tools.openai_tools()
            body["tool_choice"] = tools.openai_tool_choice()
            if not tools.parallel_tool_calls:
                body["parallel_tool_calls"] = False
        if isinstance(prompt, str):
            if options.logprobs is not None:
                body["logprobs"] = max(options.logprobs, 1)
            return self._client.completions, {**body, "prompt": prompt}
        if options.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = options.logprobs
        if tools is not None or has_tool_turns(prompt):
            return self._client.chat.completions, {**body, "messages": _wire_messages(prompt)}
        return self._client.chat.completions, {**body, "messages": normalise_messages(prompt)}  # type: ignore[arg-type]

    async def _generate(self, prompt: PromptInput, options: SamplingOptions,
                        cache_salt: str | None, tools: ToolRequest | None = None) -> GenerationResult:
        endpoint, body = self._request(prompt, options, cache_salt, stream=False, tools=tools)
        response = await self._call(endpoint.create(**body))
        choices: list[Choice] = []
        for c in sorted(response.choices, key=lambda c: c.index):
            text = c.text if isinstance(prompt, str) else (c.message.content or "")
            choice = Choice(text=text, finish_reason=finish_reason(c.finish_reason),
                            completion_tokens=0, token_logprobs=_logprobs(c, isinstance(prompt, str)))
            if tools is not None:
                calls = tuple(tools.checked_call(t.function.name, t.function.arguments, t.id or None)
                              for t in (c.message.tool_calls or []))
                choice = ToolCallingChoice(**choice.model_dump(), tool_calls=calls)
            choices.append(choice)
        usage = _usage(response.usage)
        if len(choices) == 1:  # per-candidate counts are only reported in total
            choices[0] = choices[0].model_copy(update={"completion_tokens": usage.output_tokens})
        return GenerationResult(model=response.model, choices=tuple(choices), usage=usage,
                                request_id=response.id)

    async def _stream(self, prompt: PromptInput, options: SamplingOptions,
                      cache_salt: str | None, tools: ToolRequest | None = None) -> AsyncIterator[GenerationChunk]:
        endpoint, body = self._request(prompt, options, cache_salt, stream=True, tools=tools)
        stream = await self._call(endpoint.create(**body))
        model = self.model_name
        usage: TokenUsage | None = None
        streamed: dict[int, list[str]] = {}  # per call: id, name, arguments so far
        async for event in stream:
            model = event.model or model
            if event.usage is not None:
                usage = _usage(event.usage)
            for c in event.choices:
                text = c.text if isinstance(prompt, str) else (c.delta.content or "")
                deltas = _call_deltas(c, streamed) if tools is not None else ()
                finish = finish_reason(c.finish_reason) if c.finish_reason else None
                if deltas:
                    yield ToolCallingChunk(text=text, index=c.index, finish_reason=finish, tool_call_deltas=deltas)
                elif text or c.finish_reason:
                    yield GenerationChunk(text=text, index=c.index, finish_reason=finish)
        if tools is not None:  # a streamed call is checked like a whole one: nothing unchecked slips by
            for call_id, name, arguments in streamed.values():
                tools.checked_call(name, arguments, call_id or None)
        yield GenerationChunk(text="", model=model, usage=usage)

    async def _call(self, request: Any) -> Any:
        import openai

        try:
            return await request
        except openai.APIConnectionError as exc:
            raise RemoteEngineError(f"cannot reach the vLLM server at {self.base_url}: {exc}") from exc
        except openai.BadRequestError as exc:
            raise InvalidParameterError("request", allowed="what the vLLM server accepts",
                                        received=exc.message) from exc
        except openai.APIStatusError as exc:
            raise RemoteEngineError(f"the server at {self.base_url} answered {exc.status_code}: "
                                    f"{exc.message}") from exc


def _wire_messages(prompt: Any) -> list[dict[str, Any]]:
    """A tool chat in OpenAI's wire format (call arguments as JSON text)."""
    messages = template_messages(prompt)
    for message in messages:
        for call in message.get("tool_calls", []):
            call["function"]["arguments"] = json.dumps(call["function"]["arguments"], ensure_ascii=False)
    return messages


def _call_deltas(choice: Any, streamed: dict[int, list[str]]) -> tuple[ToolCallDelta, ...]:
    deltas = []
    for call in getattr(choice.delta, "tool_calls", None) or []:
        name = call.function.name if call.function is not None else None
        arguments = (call.function.arguments if call.function is not None else None) or ""
        seen = streamed.setdefault(call.index, ["", "", ""])
        seen[0], seen[1], seen[2] = seen[0] or call.id or "", seen[1] or name or "", seen[2] + arguments
        deltas.append(ToolCallDelta(index=call.index, id=call.id or None, name=name or None, arguments=arguments))
    return tuple(deltas)


def _usage(usage: Any) -> TokenUsage:
    if usage is None:
        return TokenUsage(source="estimate")
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    prompt = int(usage.prompt_tokens or 0)
    return TokenUsage(input_tokens=prompt, cached_input_tokens=min(cached, prompt),
                      output_tokens=int(usage.completion_tokens or 0))


def _logprobs(choice: Any, completion_api: bool) -> tuple[float, ...] | None:
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return None
    if completion_api:
        return tuple(float(x) for x in (lp.token_logprobs or []) if x is not None)
    return tuple(float(t.logprob) for t in (lp.content or []))
