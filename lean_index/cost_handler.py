"""LeanCostHandler: a LlamaIndex instrumentation event handler feeding the cost ledger."""

from __future__ import annotations

from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from pydantic import PrivateAttr

from lean_core.call_tracker import CallTracker
from lean_core.ledger import CostLedger
from lean_core.ledger_records import CallRecord
from lean_core.tokens import TokenCounter

__all__ = ["LeanCostHandler"]


class LeanCostHandler(BaseEventHandler):
    """Records every LlamaIndex LLM call (complete/chat, sync/async/streaming) in a CostLedger.

    Usage is read from the response's ``raw`` payload (OpenAI- or Anthropic-shaped ``usage``) or
    its ``additional_kwargs`` (``prompt_tokens``/``completion_tokens``); without either, tokens
    are counted with the model's tokenizer and marked as not provider-reported.

    Example::

        handler = LeanCostHandler(ledger=CostLedger(), tenant="acme").register()
        index.as_query_engine(llm=llm).query("...")
    """

    tenant: str | None = None
    """Tenant written on every record of this handler."""
    _ledger: CostLedger = PrivateAttr()
    _tracker: CallTracker = PrivateAttr()
    _records: list[CallRecord] = PrivateAttr(default_factory=list)

    def __init__(self, ledger: CostLedger | None = None, *, tenant: str | None = None,
                 token_counter: TokenCounter | None = None, **data: Any) -> None:
        super().__init__(tenant=tenant, **data)
        self._ledger = ledger if ledger is not None else CostLedger()
        self._tracker = CallTracker(self._ledger, token_counter=token_counter, default_tenant=tenant)

    @classmethod
    def class_name(cls) -> str:
        return "LeanCostHandler"

    @property
    def ledger(self) -> CostLedger:
        return self._ledger

    @property
    def records(self) -> list[CallRecord]:
        """Records written by this handler instance, in completion order."""
        return self._records

    def register(self, dispatcher_name: str = "root") -> LeanCostHandler:
        """Attach to a LlamaIndex dispatcher (the root one by default) and return self."""
        get_dispatcher(dispatcher_name).add_event_handler(self)
        return self

    def unregister(self, dispatcher_name: str = "root") -> None:
        dispatcher = get_dispatcher(dispatcher_name)
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not self]

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        key = event.span_id or ""
        if isinstance(event, LLMChatStartEvent):
            texts = [f"{m.role.value}: {m.content or ''}" for m in event.messages]
            self._start(key, event.model_dict, texts)
        elif isinstance(event, LLMCompletionStartEvent):
            self._start(key, event.model_dict, [event.prompt])
        elif isinstance(event, LLMChatEndEvent):
            response = event.response
            text = "" if response is None else (response.message.content or "")
            self._finish(key, response, text)
        elif isinstance(event, LLMCompletionEndEvent):
            self._finish(key, event.response, event.response.text or "")

    def _start(self, key: str, model_dict: dict[str, Any], texts: list[str]) -> None:
        if model_dict.get("lean_cache") or model_dict.get("lean_budget"):
            # A wrapper (LeanCachedLLM, LeanBudgetLLM): the LLM it wraps reports the real calls
            # (its own events); a cache hit costs nothing and is recorded by the cache as savings.
            # The wrapper's end event finds no pending call and records nothing.
            return
        model = model_dict.get("model") or model_dict.get("model_name") or model_dict.get("class_name")
        class_name = str(model_dict.get("class_name") or "")
        # LlamaIndex names LLM classes "<provider>_llm" (e.g. "openai_llm", "lean-vllm_llm").
        provider = class_name.lower().removesuffix("_llm") or None
        self._tracker.start(key, model=model, provider=provider, prompt_texts=texts)

    def _finish(self, key: str, response: Any, text: str) -> None:
        usage: Any = None
        if response is not None:
            raw = getattr(response, "raw", None)
            extra = getattr(response, "additional_kwargs", None) or {}
            usage = _usage_of(raw) or (extra if "prompt_tokens" in extra or "input_tokens" in extra else None)
        record = self._tracker.finish(key, usage=usage, output_texts=[text])
        if record is not None:
            self._records.append(record)


def _usage_of(raw: Any) -> Any:
    if raw is None:
        return None
    if isinstance(raw, dict):
        return raw.get("usage") or raw.get("usage_metadata")
    return getattr(raw, "usage", None)
