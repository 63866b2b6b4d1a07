"""LeanCostCallback: a LangChain callback handler that records every LLM call in the cost ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from lean_core.call_tracker import CallTracker
from lean_core.ledger import CostLedger

if TYPE_CHECKING:
    from lean_core.ledger_records import CallRecord
    from lean_core.tokens import TokenCounter

__all__ = ["LeanCostCallback"]


class LeanCostCallback(BaseCallbackHandler):
    """Records each chat model / LLM call (invoke, batch, async and streaming) in a CostLedger.

    Usage comes from ``AIMessage.usage_metadata`` (cache reads and reasoning tokens included) or
    the provider's ``llm_output["token_usage"]``; when a model reports none, tokens are counted
    with the model's tokenizer and marked as not provider-reported. For streaming, enable the
    model's usage reporting (e.g. ``ChatOpenAI(stream_usage=True)``): the final chunk's usage is
    what LangChain hands to ``on_llm_end``.

    The tenant of a call is ``config["metadata"][tenant_key]`` if present, else ``tenant``.

    Example::

        ledger = CostLedger()
        llm.invoke("hi", config={"callbacks": [LeanCostCallback(ledger)],
                                 "metadata": {"tenant": "acme"}})
    """

    raise_error = False
    run_inline = True  # a ledger write is a ~0.1 ms SQLite insert: no executor hop needed

    def __init__(
        self,
        ledger: CostLedger | None = None,
        *,
        tenant: str | None = None,
        tenant_key: str = "tenant",
        token_counter: TokenCounter | None = None,
        raise_error: bool = False,
    ) -> None:
        super().__init__()
        self.ledger = ledger if ledger is not None else CostLedger()
        self.tenant_key = tenant_key
        self.raise_error = raise_error
        self._tracker = CallTracker(self.ledger, token_counter=token_counter, default_tenant=tenant)
        self.records: list[CallRecord] = []
        """The records written by this handler instance, in completion order."""

    # -- starts ------------------------------------------------------------------------------
    def on_chat_model_start(
        self,
        serialized: dict[str, Any],
        messages: list[list[BaseMessage]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        texts = [f"{m.type}: {m.text}" for batch in messages for m in batch]
        self._start(run_id, serialized, texts, tags, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any],
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start(run_id, serialized, prompts, tags, metadata, kwargs)

    def _start(self, run_id: UUID, serialized: dict[str, Any] | None, texts: Sequence[str],
               tags: list[str] | None, metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> None:
        metadata = metadata or {}
        params = kwargs.get("invocation_params") or {}
        model = (metadata.get("ls_model_name") or params.get("model") or params.get("model_name")
                 or (serialized or {}).get("name"))
        provider = metadata.get("ls_provider") or params.get("_type")
        tenant = metadata.get(self.tenant_key)
        self._tracker.start(str(run_id), model=model, provider=provider, prompt_texts=texts,
                            tenant=None if tenant is None else str(tenant), tags=tags or ())

    # -- ends --------------------------------------------------------------------------------
    def on_llm_end(self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None,
                   **kwargs: Any) -> None:
        if _served_from_cache(response):
            # A cache hit is not a paid call; the cache (LeanCache) records it as layer "cache".
            self._tracker.discard(str(run_id))
            return
        usage: Any = None
        outputs: list[str] = []
        model: str | None = None
        for candidates in response.generations:
            # n > 1 candidates of one prompt share one usage record: take it once per prompt.
            prompt_usage = None
            for generation in candidates:
                outputs.append(generation.text)
                if isinstance(generation, ChatGeneration):
                    message = generation.message
                    meta = message.response_metadata or {}
                    model = model or meta.get("model_name") or meta.get("model")
                    if prompt_usage is None:
                        prompt_usage = getattr(message, "usage_metadata", None)
            if prompt_usage is not None:
                usage = prompt_usage if usage is None else _add_payloads(usage, prompt_usage)
        llm_output = response.llm_output or {}
        if usage is None:
            usage = llm_output.get("token_usage") or llm_output.get("usage")
        model = model or llm_output.get("model_name") or llm_output.get("model")
        record = self._tracker.finish(str(run_id), usage=usage, output_texts=outputs, model=model)
        if record is not None:
            self.records.append(record)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None,
                     **kwargs: Any) -> None:
        response = kwargs.get("response")
        if isinstance(error, GeneratorExit) and isinstance(response, LLMResult) and response.generations \
                and response.generations[0]:
            # The consumer closed a stream (LeanBudget cutting it at its budget): the tokens
            # generated so far were paid for. Counted from the text when no usage arrived.
            self.on_llm_end(LLMResult(generations=[response.generations[0]]), run_id=run_id,
                            parent_run_id=parent_run_id)
            return
        self._tracker.discard(str(run_id))


def _add_payloads(left: Any, right: Any) -> Any:
    from lean_core.call_tracker import usage_from_payload

    a, b = usage_from_payload(left), usage_from_payload(right)
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _served_from_cache(response: LLMResult) -> bool:
    """langchain-core marks chat generations served by an LLM cache with ``usage_metadata["total_cost"] == 0``
    (a key providers do not set)."""
    messages = [g.message for candidates in response.generations for g in candidates if isinstance(g, ChatGeneration)]
    usages = [getattr(m, "usage_metadata", None) for m in messages]
    return bool(usages) and all(isinstance(u, dict) and u.get("total_cost") == 0 for u in usages)
