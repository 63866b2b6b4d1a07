"""LeanBudgetMiddleware: a predicted output budget (max_tokens) on every model call of a LangChain agent."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.ai import UsageMetadata, add_usage

from lean_chain.middleware._common import (
    CACHE_METADATA_KEY,
    check_tenant_key,
    last_user_text,
    model_labels,
    resolve_tenant,
    response_message,
)
from lean_core.budget import (
    BudgetOptions,
    BudgetRequest,
    BudgetSession,
    ModelAnswer,
    budget_parameter,
    finish_reason_of,
    with_brevity,
)
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.tokens import count_tokens

__all__ = ["BUDGET_METADATA_KEY", "LeanBudgetMiddleware"]

_log = logging.getLogger(__name__)
BUDGET_METADATA_KEY = "lean_budget"
"""``response_metadata`` key of each budgeted AIMessage: a ``BudgetOutcome`` dump (as ``LeanBudget``)."""


class LeanBudgetMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Give every model call of an agent a predicted output budget, and never hide a cut answer.

    Before each model call the budget core (:class:`~lean_core.budget.BudgetSession`, the same as
    :class:`~lean_chain.LeanBudget`) predicts the answer's length for the person's question (the
    last human message) and the call is sent with that ``max_tokens`` (under the keyword the model
    class takes: ``max_tokens``, ``max_output_tokens``, ``num_predict``, ...), set through
    ``ModelRequest.model_settings``. The step's AIMessage carries
    ``response_metadata["lean_budget"]`` (a ``BudgetOutcome``: budget, prediction, tokens used,
    ``truncated``). A cut answer is handled by ``on_truncation``: ``"continue"`` asks once more for
    the rest of a text answer (an answer cut inside a tool call cannot be continued: it is
    reported), ``"report"`` marks it and logs a warning, ``"raise"`` raises
    :class:`~lean_core.budget.OutputTruncatedError`.

    **Tool steps.** The length predictor models answers to questions, not tool-call arguments:
    while the step may call a tool (tools bound and ``tool_choice`` not ``"none"``), the budget is
    at least ``min_tokens_with_tools``, and neither stop sequences nor early stopping are used
    (they could cut a tool call's JSON); early stopping (``ChatLeanVLLM`` only) needs no tools bound. The ledger's
    "output" event and length history are recorded for steps that end in a text answer only (a
    tool-call step's length says nothing about answers).

    Args:
        options: the budget options (``brevity``, ``on_truncation``, ``min_tokens``, ``max_tokens``,
            ``predictor``, ...), or give them as keywords, exactly those of
            :class:`~lean_core.budget.BudgetOptions`.
        parameter: the keyword that carries the budget; None picks it from the model class.
        strict: raise for a model class whose budget keyword is unknown (instead of ``max_tokens``).
        min_tokens_with_tools: the smallest budget sent while tools are bound (an int >= 1).
        ledger: when given, text-answer steps record an "output" savings event and their length.
        tenant_key: the context / metadata key naming the tenant of the ledger's records.
    """

    def __init__(self, options: BudgetOptions | None = None, *, parameter: str | None = None, strict: bool = False,
                 min_tokens_with_tools: int = 256, ledger: CostLedger | None = None, tenant_key: str = "tenant",
                 **budget_options: Any) -> None:
        super().__init__()
        if options is not None and budget_options:
            raise InvalidParameterError("options", allowed="either a BudgetOptions or its keywords, not both",
                                        received=sorted(budget_options))
        if options is not None and not isinstance(options, BudgetOptions):
            raise InvalidParameterError("options", allowed="a lean_core.budget.BudgetOptions or None",
                                        received=type(options).__name__)
        unknown = sorted(set(budget_options) - set(BudgetOptions.model_fields))
        if unknown:
            raise InvalidParameterError(unknown[0], allowed=f"an option of BudgetOptions: {', '.join(BudgetOptions.model_fields)}",
                                        received=budget_options[unknown[0]])
        if parameter is not None and (not isinstance(parameter, str) or not parameter):
            raise InvalidParameterError("parameter", allowed="a keyword name (non-empty str) or None", received=parameter)
        if isinstance(min_tokens_with_tools, bool) or not isinstance(min_tokens_with_tools, int) \
                or min_tokens_with_tools < 1:
            raise InvalidParameterError("min_tokens_with_tools", allowed="an int >= 1", received=min_tokens_with_tools)
        if ledger is not None and not isinstance(ledger, CostLedger):
            raise InvalidParameterError("ledger", allowed="a lean_core.CostLedger or None", received=type(ledger).__name__)
        self.options: BudgetOptions = options if options is not None else BudgetOptions(**budget_options)
        self.parameter = parameter
        self.strict = strict
        self.min_tokens_with_tools = min_tokens_with_tools
        self.ledger = ledger
        self.tenant_key = check_tenant_key(tenant_key)

    # -- the hooks ------------------------------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest[Any],
                        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]) -> ModelResponse[Any]:
        session = self._session(request)
        if session is None:
            return handler(request)
        budget: BudgetRequest | None = session.first_request()
        while budget is not None:
            response = handler(self._budgeted(request, budget))
            budget = self._on_response(session, response, request)
        done = self._final(session)
        if _is_text_answer(done):
            session.record_in(self.ledger, **self._labels(request))
        return done

    async def awrap_model_call(self, request: ModelRequest[Any],
                               handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]]
                               ) -> ModelResponse[Any]:
        session = self._session(request)
        if session is None:
            return await handler(request)
        budget: BudgetRequest | None = session.first_request()
        while budget is not None:
            response = await handler(self._budgeted(request, budget))
            budget = self._on_response(session, response, request)
        done = self._final(session)
        if _is_text_answer(done):
            await session.arecord_in(self.ledger, **self._labels(request))
        return done

    # -- the shared steps -----------------------------------------------------------------------
    def _session(self, request: ModelRequest[Any]) -> BudgetSession | None:
        """The budget session of this call; None (no budget) when there is no human message."""
        query = last_user_text(request.messages)
        if query is None:
            return None
        return BudgetSession(query, self.options, model=model_labels(request.model)[0])

    def _budgeted(self, request: ModelRequest[Any], budget: BudgetRequest) -> ModelRequest[Any]:
        # A step that cannot call a tool (none bound, or tool_choice "none") is a text answer.
        tools = bool(request.tools) and request.tool_choice not in ("none", False)
        name = self.parameter or budget_parameter(request.model, strict=self.strict).name
        settings: dict[str, Any] = {**request.model_settings,
                                    name: max(budget.max_tokens, self.min_tokens_with_tools) if tools
                                    else budget.max_tokens}
        if not tools and budget.stop:
            settings["stop"] = list(budget.stop)
        # ChatLeanVLLM refuses early stopping while tools are bound, even under tool_choice "none".
        if not request.tools and budget.early_stop is not None and type(request.model).__name__ == "ChatLeanVLLM":
            settings["early_stop"] = budget.early_stop
        return request.override(model_settings=settings, messages=_budget_messages(request.messages, budget))

    def _on_response(self, session: BudgetSession, response: ModelResponse[Any],
                     request: ModelRequest[Any]) -> BudgetRequest | None:
        message = response_message(response)
        if message is None:  # nothing to measure (an inner middleware answered otherwise)
            session.answers.append(ModelAnswer(text="", finish_reason=None, output_tokens=0, raw=response))
            return None
        metadata = message.response_metadata or {}
        usage = message.usage_metadata
        tokens = int(usage["output_tokens"]) if usage else count_tokens(message.text, model_labels(request.model)[0]).tokens
        answer = ModelAnswer(text=message.text, finish_reason=finish_reason_of(metadata), output_tokens=tokens,
                             early_stop=metadata.get("early_stop"), raw=response)
        follow = session.on_answer(answer)  # raises OutputTruncatedError under on_truncation="raise"
        return None if message.tool_calls or message.invalid_tool_calls else follow

    def _final(self, session: BudgetSession) -> ModelResponse[Any]:
        outcome = session.outcome
        if outcome.truncated and self.options.on_truncation != "raise":
            _log.warning("LeanBudgetMiddleware: the answer was cut at its budget of %d tokens", outcome.max_tokens)
        last: ModelResponse[Any] = session.answers[-1].raw
        message = response_message(last)
        if message is None:
            return last
        metadata = {**(message.response_metadata or {}), BUDGET_METADATA_KEY: outcome.model_dump()}
        if len(session.answers) == 1:
            merged = message.model_copy(update={"response_metadata": metadata})
        else:
            usage: UsageMetadata | None = None
            for answer in session.answers:
                part = response_message(answer.raw)
                if part is not None and part.usage_metadata:
                    usage = part.usage_metadata if usage is None else add_usage(usage, part.usage_metadata)
            merged = AIMessage(content=session.text, response_metadata=metadata, usage_metadata=usage, id=message.id)
        return ModelResponse(result=[merged if m is message else m for m in last.result],
                             structured_response=last.structured_response)

    def _labels(self, request: ModelRequest[Any]) -> dict[str, Any]:
        model, provider = model_labels(request.model)
        return {"model": model, "provider": provider,
                "tenant": resolve_tenant(request.runtime, tenant_key=self.tenant_key)}

    def __repr__(self) -> str:
        return f"LeanBudgetMiddleware(on_truncation={self.options.on_truncation!r}, brevity={self.options.brevity})"


def _is_text_answer(response: ModelResponse[Any]) -> bool:
    """Whether the step ended in a text answer the model generated now (not a tool call, not a
    cache hit: the cache layer records what a hit saved)."""
    message = response_message(response)
    return (message is not None and not message.tool_calls and not message.invalid_tool_calls
            and CACHE_METADATA_KEY not in (message.response_metadata or {}))


def _budget_messages(messages: list[Any], budget: BudgetRequest) -> list[Any]:
    """The conversation with the brevity instruction at the end of the last human message (the
    same text at every step, so the prefix stays stable) and, for a continuation, the partial
    answer and the instruction to go on."""
    out: list[BaseMessage] = list(messages)
    if budget.brevity_instruction:
        for i in range(len(out) - 1, -1, -1):
            if out[i].type == "human":
                out[i] = HumanMessage(content=with_brevity(out[i].text, budget.brevity_instruction),
                                      id=out[i].id, name=getattr(out[i], "name", None))
                break
    if budget.continue_from is not None:
        out += [AIMessage(content=budget.continue_from), HumanMessage(content=budget.continue_instruction)]
    return out
