"""LeanBudget: an LCEL Runnable that gives any chat model a per-request output budget."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForChainRun, CallbackManagerForChainRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    convert_to_messages,
)
from langchain_core.messages.ai import UsageMetadata, add_usage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable, RunnableConfig, RunnableSerializable
from langchain_core.runnables.config import patch_config
from pydantic import model_validator

from lean_chain._budget_binding import bind_budget
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

__all__ = ["LeanBudget"]

_log = logging.getLogger(__name__)


class LeanBudget(BudgetOptions, RunnableSerializable[LanguageModelInput, BaseMessage]):
    """Wrap a chat model so that every call gets a predicted ``max_tokens`` (bound under the
    parameter the model class takes), an optional brevity instruction, stop sequences for short
    factual answers, early stopping on the local vLLM model, and a truncation policy.

    Input is whatever the chat model takes (a str, a PromptValue, a message list); output is the
    model's ``AIMessage`` with ``response_metadata["lean_budget"]`` (a ``BudgetOutcome`` dump).
    ``invoke``, ``batch``, ``stream`` and their async forms all work in LCEL; a truncated answer is
    continued once (``on_truncation="continue"``), also when streaming. With a ``ledger``, each
    call records an "output" savings event and one row of length history.

    Example::

        chain = prompt | LeanBudget(llm=ChatOpenAI(model="gpt-4o-mini"), brevity=True) | StrOutputParser()
    """

    llm: BaseChatModel
    """The chat model to budget."""
    parameter: str | None = None
    """Keyword that carries the budget; None picks it from the model class (``max_tokens`` for
    OpenAI/Anthropic/vLLM, ``max_output_tokens`` for Gemini, ``num_predict`` for Ollama, ...)."""
    strict: bool = False
    """Raise for a model class whose budget parameter is unknown, instead of binding the generic
    ``max_tokens`` and cutting the stream at the budget."""
    ledger: CostLedger | None = None
    """When given, each call records an "output" savings event and its length history."""

    @model_validator(mode="after")
    def _known_parameter(self) -> LeanBudget:
        if self.strict and self.parameter is None:
            budget_parameter(self.llm, strict=True)  # fail at construction, not on the first call
        return self

    # -- request building ---------------------------------------------------------------------
    def _param(self) -> tuple[str, bool]:
        if self.parameter:
            return self.parameter, True
        found = budget_parameter(self.llm, strict=self.strict)
        return found.name, found.known

    def _bound(self, request: BudgetRequest) -> Runnable[Any, Any]:
        return bind_budget(self.llm, max_tokens=request.max_tokens, stop=request.stop,
                           early_stop=request.early_stop, parameter=self.parameter, strict=self.strict)

    def _labels(self) -> tuple[str, str | None]:
        params = self.llm._get_ls_params()
        return str(params.get("ls_model_name") or self.llm._llm_type), params.get("ls_provider")

    def _start(self, value: Any) -> tuple[list[BaseMessage], BudgetSession]:
        messages = _to_messages(value)
        model, _ = self._labels()
        return messages, BudgetSession(_last_user_text(messages), self, model=model)

    # -- invoke -------------------------------------------------------------------------------
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, **kwargs: Any) -> BaseMessage:
        return self._call_with_config(self._run, input, config, **kwargs)

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> BaseMessage:
        return await self._acall_with_config(self._arun, input, config, **kwargs)

    def _run(self, value: Any, run_manager: CallbackManagerForChainRun, config: RunnableConfig) -> BaseMessage:
        messages, session = self._start(value)
        child = patch_config(config, callbacks=run_manager.get_child())
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            response = self._bound(request).invoke(_request_messages(messages, request), config=child)
            request = session.on_answer(self._answer(response, request))
        self._after(session, config)
        return self._final(session)

    async def _arun(self, value: Any, run_manager: AsyncCallbackManagerForChainRun,
                    config: RunnableConfig) -> BaseMessage:
        messages, session = self._start(value)
        child = patch_config(config, callbacks=run_manager.get_child())
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            response = await self._bound(request).ainvoke(_request_messages(messages, request), config=child)
            request = session.on_answer(self._answer(response, request))
        await self._aafter(session, config)
        return self._final(session)

    # -- stream -------------------------------------------------------------------------------
    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
               **kwargs: Any) -> Iterator[BaseMessage]:
        yield from self._transform_stream_with_config(iter([input]), self._transform, config, **kwargs)

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None,
                      **kwargs: Any) -> AsyncIterator[BaseMessage]:
        async def one() -> AsyncIterator[Any]:
            yield input

        async for chunk in self._atransform_stream_with_config(one(), self._atransform, config, **kwargs):
            yield chunk

    def _transform(self, inputs: Iterator[Any], run_manager: CallbackManagerForChainRun,
                   config: RunnableConfig) -> Iterator[BaseMessage]:
        messages, session = self._start(next(iter(inputs)))
        child = patch_config(config, callbacks=run_manager.get_child())
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            cut = _ChunkStream(self, request)
            stream = self._bound(request).stream(_request_messages(messages, request), config=child)
            try:
                for chunk in stream:
                    piece = cut.take(chunk)
                    if piece is not None:
                        yield piece
                    if cut.done:
                        break
            finally:
                # Closing ends the model's run now; LeanCostCallback records what a cut stream used.
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            request = session.on_answer(cut.answer())
            yield cut.last_chunk(None if request is not None else session.outcome.model_dump())
        self._after(session, config)

    async def _atransform(self, inputs: AsyncIterator[Any], run_manager: AsyncCallbackManagerForChainRun,
                          config: RunnableConfig) -> AsyncIterator[BaseMessage]:
        messages, session = self._start(await anext(aiter(inputs)))
        child = patch_config(config, callbacks=run_manager.get_child())
        request: BudgetRequest | None = session.first_request()
        while request is not None:
            cut = _ChunkStream(self, request)
            astream = self._bound(request).astream(_request_messages(messages, request), config=child)
            try:
                async for chunk in astream:
                    piece = cut.take(chunk)
                    if piece is not None:
                        yield piece
                    if cut.done:
                        break
            finally:
                aclose = getattr(astream, "aclose", None)
                if aclose is not None:
                    await aclose()
            request = session.on_answer(cut.answer())
            yield cut.last_chunk(None if request is not None else session.outcome.model_dump())
        await self._aafter(session, config)

    # -- results and ledger --------------------------------------------------------------------
    def _answer(self, response: BaseMessage, request: BudgetRequest) -> ModelAnswer:
        metadata = dict(getattr(response, "response_metadata", {}) or {})
        usage = getattr(response, "usage_metadata", None)
        tokens = int(usage["output_tokens"]) if usage else count_tokens(response.text, self._labels()[0]).tokens
        return ModelAnswer(text=response.text, finish_reason=finish_reason_of(metadata), output_tokens=tokens,
                           early_stop=metadata.get("early_stop"), raw=response)

    def _final(self, session: BudgetSession) -> BaseMessage:
        outcome = session.outcome
        if outcome.truncated and self.on_truncation == "report":
            _log.warning("LeanBudget: the answer was cut at its budget of %d tokens", outcome.max_tokens)
        last = session.answers[-1].raw
        metadata = {**(last.response_metadata or {}), "lean_budget": outcome.model_dump()}
        if len(session.answers) == 1:
            return last.model_copy(update={"response_metadata": metadata})
        usage: UsageMetadata | None = None
        for answer in session.answers:
            part = getattr(answer.raw, "usage_metadata", None)
            if part:
                usage = part if usage is None else add_usage(usage, part)
        return AIMessage(content=session.text, response_metadata=metadata, usage_metadata=usage,
                         id=getattr(last, "id", None))

    def _ledger_labels(self, config: RunnableConfig) -> dict[str, Any]:
        model, provider = self._labels()
        tenant = (config.get("metadata") or {}).get("tenant")
        return {"model": model, "provider": provider, "tenant": tenant if isinstance(tenant, str) else None}

    def _after(self, session: BudgetSession, config: RunnableConfig) -> None:
        session.record_in(self.ledger, **self._ledger_labels(config))

    async def _aafter(self, session: BudgetSession, config: RunnableConfig) -> None:
        await session.arecord_in(self.ledger, **self._ledger_labels(config))


class _ChunkStream:
    """LangChain chunks onto :class:`~lean_core.budget.StreamCut`: their text, metadata and usage
    (summed here, since LangChain splits usage over chunks)."""

    def __init__(self, owner: LeanBudget, request: BudgetRequest) -> None:
        self.cut = StreamCut(max_tokens=request.max_tokens, model=owner._labels()[0], enforce=not owner._param()[1])
        self.usage: UsageMetadata | None = None

    def take(self, chunk: Any) -> AIMessageChunk | None:
        metadata = getattr(chunk, "response_metadata", {}) or {}
        if getattr(chunk, "usage_metadata", None):
            self.usage = chunk.usage_metadata if self.usage is None else add_usage(self.usage, chunk.usage_metadata)
        shown = self.cut.take(chunk.text, finish_reason=finish_reason_of(metadata),
                              early_stop=metadata.get("early_stop"))
        return None if shown is None else AIMessageChunk(content=shown, id=getattr(chunk, "id", None))

    @property
    def done(self) -> bool:
        return self.cut.done

    def _reported(self) -> int | None:
        return int(self.usage["output_tokens"]) if self.usage else None

    def answer(self) -> ModelAnswer:
        return self.cut.answer(reported_tokens=self._reported())

    def last_chunk(self, outcome: dict[str, Any] | None) -> AIMessageChunk:
        """The request's closing chunk: its usage (counted when the stream was cut); the last
        request's also carries the finish reason and the budget outcome."""
        tokens = self.cut.output_tokens(self._reported())
        usage = self.usage if self.usage and not self.cut.cut else UsageMetadata(
            input_tokens=0, output_tokens=tokens, total_tokens=tokens)
        metadata: dict[str, Any] = {}
        if outcome is not None:
            metadata = {"finish_reason": outcome["finish_reason"], "lean_budget": outcome}
        return AIMessageChunk(content="", usage_metadata=usage, response_metadata=metadata)


def _to_messages(value: Any) -> list[BaseMessage]:
    if isinstance(value, str):
        return [HumanMessage(content=value)]
    if isinstance(value, PromptValue):
        return value.to_messages()
    if isinstance(value, list | tuple):
        return convert_to_messages(value)
    raise InvalidParameterError("input", allowed="str, PromptValue or a list of messages", received=type(value).__name__)


def _last_user_text(messages: list[BaseMessage]) -> str:
    for message in reversed(messages):
        if message.type == "human":
            return message.text
    raise InvalidParameterError("input", allowed="messages with at least one human message",
                                received=[m.type for m in messages])


def _request_messages(messages: list[BaseMessage], request: BudgetRequest) -> list[BaseMessage]:
    out = list(messages)
    if request.brevity_instruction:
        for i in range(len(out) - 1, -1, -1):
            if out[i].type == "human":
                out[i] = HumanMessage(content=with_brevity(out[i].text, request.brevity_instruction),
                                      id=out[i].id, name=getattr(out[i], "name", None))
                break
    if request.continue_from is not None:
        out += [AIMessage(content=request.continue_from), HumanMessage(content=request.continue_instruction)]
    return out
