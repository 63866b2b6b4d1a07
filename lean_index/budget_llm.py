"""LeanBudgetLLM: any LlamaIndex LLM with a per-request output budget."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM
from pydantic import Field, SerializeAsAny

from lean_core.budget import (
    BudgetOptions,
    BudgetRequest,
    BudgetSession,
    ModelAnswer,
    StreamCut,
    budget_parameter,
    finish_reason_of,
    with_brevity,
)
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.tokens import count_tokens
from lean_core.usage import TokenUsage
from lean_index._function_calling import WrappedFunctionCalling, has_tool_calls, mirrored_metadata

__all__ = ["LeanBudgetLLM"]

_log = logging.getLogger(__name__)
_STOP_PROVIDERS = frozenset({"openai", "vllm"})


class LeanBudgetLLM(BudgetOptions, WrappedFunctionCalling, FunctionCallingLLM):
    """Give every call of a LlamaIndex LLM a predicted output budget.

    The budget goes where the wrapped class takes it: its own field when it has one
    (``max_tokens`` on OpenAI, Anthropic, vLLM, ``LeanVLLM``; ``max_new_tokens`` on
    HuggingFaceLLM), set on a per-request copy, otherwise as a call keyword. The brevity
    instruction is appended to the last user message; short factual questions get a blank-line
    stop sequence where the LLM takes ``stop`` (OpenAI-compatible and vLLM); ``LeanVLLM`` also
    stops early when the answer is complete. A cut answer is continued once, reported, or raised
    (``on_truncation``), streaming included; streams of classes whose budget parameter is unknown
    are cut at the budget by counting tokens (with a ``ledger``, such a cut call is recorded there with
    its counted usage, since the wrapped LLM never reports it). Every response carries
    ``additional_kwargs["lean_budget"]`` (a ``BudgetOutcome`` dump); with a ``ledger``, each call
    records an "output" savings event and a row of length history.

    **Function calling**: when the wrapped LLM is a ``FunctionCallingLLM``, so is this wrapper
    (``metadata.is_function_calling_model`` is the wrapped model's), and a LlamaIndex
    ``FunctionAgent`` runs through it: the wrapped model prepares the tools and reads the tool
    calls, and every step gets its own budget. An answer that calls tools comes back with its
    tool calls and is never continued (a continuation cannot repair a cut tool call).

    Example::

        from lean_index import LeanBudgetLLM, LeanVLLM
        llm = LeanBudgetLLM(LeanVLLM(), brevity=True)
        index.as_query_engine(llm=llm).query("Who wrote Emma?")
    """

    llm: SerializeAsAny[LLM]
    """The LLM to budget (any LlamaIndex LLM)."""
    parameter: str | None = None
    """Field or keyword that carries the budget; None picks it from the LLM class."""
    strict: bool = False
    """Raise for an LLM class whose budget parameter is unknown instead of using ``max_tokens``."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """When given, each call records an "output" savings event and its length history."""

    def __init__(self, llm: LLM, **data: Any) -> None:
        if not isinstance(llm, LLM):
            raise InvalidParameterError("llm", allowed="a LlamaIndex LLM (llama_index.core.llms.LLM)",
                                        received=type(llm).__name__)
        super().__init__(llm=llm, **data)
        if self.strict and self.parameter is None:
            budget_parameter(llm, strict=True)  # fail at construction, not on the first call

    @classmethod
    def class_name(cls) -> str:
        return "LeanBudgetLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return mirrored_metadata(self.llm)

    def to_payload(self) -> dict[str, Any]:
        """The wrapped LLM's payload, marked: the wrapped LLM reports the real calls itself."""
        return {**self.llm.to_payload(), "class_name": self.class_name(), "lean_budget": True}

    # -- planning ------------------------------------------------------------------------------
    def _model(self) -> str:
        return str(self.llm.metadata.model_name or self.llm.class_name())

    def _session(self, query: str) -> BudgetSession:
        window = self.llm.metadata.context_window
        return BudgetSession(query, self, model=self._model(), context_window=window if window > 0 else None)

    def _target(self, request: BudgetRequest) -> tuple[LLM, dict[str, Any]]:
        return budgeted_llm(self.llm, max_tokens=request.max_tokens, stop=request.stop,
                            early_stop=request.early_stop, parameter=self.parameter, strict=self.strict)

    def _enforce_cut(self) -> bool:
        return self.parameter is None and not budget_parameter(self.llm).known

    # -- chat ------------------------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        session = self._session(_last_user_text(messages))
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            target, extra = self._target(request)
            response = target.chat(_request_messages(messages, request), **extra, **kwargs)
            request = _next_request(session, self._answer(response))
        self._after(session)
        return self._final(session)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        session = self._session(_last_user_text(messages))
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            target, extra = self._target(request)
            response = await target.achat(_request_messages(messages, request), **extra, **kwargs)
            request = _next_request(session, self._answer(response))
        await self._aafter(session)
        return self._final(session)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        def gen() -> ChatResponseGen:
            session = self._session(_last_user_text(messages))
            request: BudgetRequest | None = session.first_request()
            text = ""
            while request is not None:
                target, extra = self._target(request)
                cut = _ResponseStream(self, request)
                sent = _request_messages(messages, request)
                for response in target.stream_chat(sent, **extra, **kwargs):
                    delta = cut.take(response)
                    if cut.done:
                        break
                    text += delta
                    yield ChatResponse(message=_streamed_message(response, text), delta=delta, raw=response.raw)
                request = _next_request(session, cut.answer())
                if cut.done and self.ledger is not None:
                    self.ledger.record_call(**cut.call_record(sent))
            self._after(session)
            yield self._final(session, delta="")

        return gen()

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        async def gen() -> ChatResponseAsyncGen:
            session = self._session(_last_user_text(messages))
            request: BudgetRequest | None = session.first_request()
            text = ""
            while request is not None:
                target, extra = self._target(request)
                cut = _ResponseStream(self, request)
                sent = _request_messages(messages, request)
                async for response in await target.astream_chat(sent, **extra, **kwargs):
                    delta = cut.take(response)
                    if cut.done:
                        break
                    text += delta
                    yield ChatResponse(message=_streamed_message(response, text), delta=delta, raw=response.raw)
                request = _next_request(session, cut.answer())
                if cut.done and self.ledger is not None:
                    await self.ledger.arecord_call(**cut.call_record(sent))
            await self._aafter(session)
            yield self._final(session, delta="")

        return gen()

    # -- complete: a one-turn chat, so brevity and continuation work alike (``formatted`` is not
    # forwarded: the wrapped LLM formats the turn itself) -------------------------------------------
    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _as_completion(self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return _as_completion(await self.achat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs))

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        responses = self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return (_as_completion(r) for r in responses)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        responses = await self.astream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return (_as_completion(r) async for r in responses)

    # -- results and ledger ----------------------------------------------------------------------
    def _answer(self, response: ChatResponse) -> ModelAnswer:
        raw = _raw_dict(response.raw)
        return ModelAnswer(text=response.message.content or "", finish_reason=_finish(raw),
                           output_tokens=_output_tokens(response, raw, self._model()),
                           early_stop=raw.get("early_stop"), raw=response)

    def _final(self, session: BudgetSession, *, delta: str | None = None) -> ChatResponse:
        outcome = session.outcome
        if outcome.truncated and self.on_truncation == "report":
            _log.warning("LeanBudgetLLM: the answer was cut at its budget of %d tokens", outcome.max_tokens)
        last = session.answers[-1].raw
        extra = {**(getattr(last, "additional_kwargs", None) or {}), "lean_budget": outcome.model_dump()}
        message = getattr(last, "message", None)
        if not (isinstance(message, ChatMessage) and has_tool_calls(message)):
            message = ChatMessage(role=MessageRole.ASSISTANT, content=session.text)
        return ChatResponse(message=message, delta=delta, raw=getattr(last, "raw", None), additional_kwargs=extra)

    def _after(self, session: BudgetSession) -> None:
        session.record_in(self.ledger, model=self._model(), provider=self.llm.class_name())

    async def _aafter(self, session: BudgetSession) -> None:
        await session.arecord_in(self.ledger, model=self._model(), provider=self.llm.class_name())


class _ResponseStream:
    """LlamaIndex stream responses onto :class:`~lean_core.budget.StreamCut`; a cut stream's call
    is recorded here, since the wrapped LLM never reaches its end event."""

    def __init__(self, owner: LeanBudgetLLM, request: BudgetRequest) -> None:
        self.owner = owner
        self.cut = StreamCut(max_tokens=request.max_tokens, model=owner._model(), enforce=owner._enforce_cut())
        self.raw: dict[str, Any] = {}
        self.last: ChatResponse | None = None

    @property
    def done(self) -> bool:
        """The stream was cut at the budget: stop reading it."""
        return self.cut.done

    def take(self, response: ChatResponse) -> str:
        self.last = response
        raw = _raw_dict(response.raw)
        if raw:
            self.raw = raw
        return self.cut.take(response.delta or "", finish_reason=_finish(raw) if raw else None,
                             early_stop=raw.get("early_stop")) or ""

    def call_record(self, sent: Sequence[ChatMessage]) -> dict[str, Any]:
        """A cut stream never reaches the wrapped LLM's end event, so its cost handler misses it:
        the call's usage, counted (an estimate), for ``ledger.record_call``."""
        model = self.owner._model()
        prompt = count_tokens("\n".join(m.content or "" for m in sent), model).tokens
        usage = TokenUsage(input_tokens=prompt, output_tokens=self.cut.output_tokens(), source="estimate")
        return {"model": model, "usage": usage, "provider": self.owner.llm.class_name()}

    def answer(self) -> ModelAnswer:
        reported = None
        if self.last is not None and not self.cut.cut:
            reported = _output_tokens(self.last, self.raw, self.owner._model(), text=self.cut.text)
        return self.cut.answer(reported_tokens=reported, raw=self.last)


def budgeted_llm(llm: LLM, *, max_tokens: int, stop: Sequence[str] = (), early_stop: Any = None,
                 parameter: str | None = None, strict: bool = False) -> tuple[LLM, dict[str, Any]]:
    """``llm`` (or a copy) and the call keywords that make it answer within ``max_tokens``: a
    model field is set on a copy (LlamaIndex LLMs read most options from fields), else passed as
    a keyword; stops and early stopping only where the provider honours them."""
    found = budget_parameter(llm, strict=strict) if parameter is None else None
    name = parameter or (found.name if found else "max_tokens")
    kwargs: dict[str, Any] = {}
    target = llm
    if name in type(llm).model_fields:
        target = llm.model_copy(update={name: max_tokens})
    else:
        kwargs[name] = max_tokens
    provider = found.provider if found else None
    if stop and provider in _STOP_PROVIDERS:
        kwargs["stop"] = list(stop)
    if early_stop is not None and type(llm).__name__ == "LeanVLLM":
        kwargs["early_stop"] = early_stop
    return target, kwargs


def _next_request(session: BudgetSession, answer: ModelAnswer) -> BudgetRequest | None:
    """The session's next request, except after a tool call: the answer is the call, whole or not."""
    request = session.on_answer(answer)
    message = getattr(answer.raw, "message", None)
    return None if isinstance(message, ChatMessage) and has_tool_calls(message) else request


def _streamed_message(response: ChatResponse, text: str) -> ChatMessage:
    """A stream chunk's message: the text so far, or the wrapped model's own message when it holds
    tool calls (agents read the calls from every chunk)."""
    if has_tool_calls(response.message):
        return response.message
    return ChatMessage(role=MessageRole.ASSISTANT, content=text)


def _raw_dict(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    dump = getattr(raw, "model_dump", None)
    return dump() if callable(dump) else {}


def _finish(raw: dict[str, Any]) -> str | None:
    found = finish_reason_of(raw)
    if found:
        return found
    choices = raw.get("choices") or []
    if choices and isinstance(choices[0], dict):
        return finish_reason_of(choices[0])
    return None


def _output_tokens(response: ChatResponse, raw: dict[str, Any], model: str, *, text: str | None = None) -> int:
    usage = raw.get("usage") or {}
    for key in ("completion_tokens", "output_tokens"):
        if isinstance(usage, dict) and isinstance(usage.get(key), int):
            return int(usage[key])
    counted = (response.additional_kwargs or {}).get("completion_tokens")
    if isinstance(counted, int):
        return counted
    return count_tokens(text if text is not None else (response.message.content or ""), model).tokens


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == MessageRole.USER:
            return message.content or ""
    raise InvalidParameterError("messages", allowed="at least one user message",
                                received=[m.role.value for m in messages])


def _request_messages(messages: Sequence[ChatMessage], request: BudgetRequest) -> list[ChatMessage]:
    out = list(messages)
    if request.brevity_instruction:
        for i in range(len(out) - 1, -1, -1):
            if out[i].role == MessageRole.USER:
                out[i] = ChatMessage(role=MessageRole.USER,
                                     content=with_brevity(out[i].content or "", request.brevity_instruction))
                break
    if request.continue_from is not None:
        out += [ChatMessage(role=MessageRole.ASSISTANT, content=request.continue_from),
                ChatMessage(role=MessageRole.USER, content=request.continue_instruction)]
    return out


def _as_completion(response: ChatResponse) -> CompletionResponse:
    return CompletionResponse(text=response.message.content or "", delta=response.delta, raw=response.raw,
                              additional_kwargs=response.additional_kwargs)
