"""Framework-neutral tracking of LLM calls from start to end, feeding the cost ledger.

The LangChain callback and the LlamaIndex event handler are thin translations onto this class:
they report when a call starts (model, provider, prompt text) and how it ended (provider usage
when the framework carries it, else the text), and this class measures latency, fills in
tokenizer counts when the provider reported none (marked as such), and records the call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lean_core._usage_parsing import usage_from_payload
from lean_core._validation import check_tags, check_text
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.ledger_records import CallRecord
from lean_core.pricing import provider_id_for
from lean_core.tokens import TokenCounter
from lean_core.usage import TokenUsage

__all__ = ["CallTracker", "usage_from_payload"]


@dataclass
class _Pending:
    model: str
    provider: str | None
    tenant: str | None
    tags: tuple[str, ...]
    prompt_texts: list[str]
    started: float = field(default_factory=time.perf_counter)


class CallTracker:
    """Matches call starts to ends by run id and records each finished call in ``ledger``.

    Thread-safe: frameworks report starts and ends from worker threads and event loops.
    """

    def __init__(self, ledger: CostLedger, *, token_counter: TokenCounter | None = None,
                 default_tenant: str | None = None) -> None:
        if not isinstance(ledger, CostLedger):
            raise InvalidParameterError("ledger", allowed="a lean_core.CostLedger", received=type(ledger).__name__)
        if token_counter is not None and not isinstance(token_counter, TokenCounter):
            raise InvalidParameterError("token_counter", allowed="a lean_core.TokenCounter or None",
                                        received=type(token_counter).__name__)
        check_text("default_tenant", default_tenant, optional=True)
        self.ledger = ledger
        self.default_tenant = default_tenant
        self._counter = token_counter or TokenCounter()
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str, *, model: str | None, provider: str | None,
              prompt_texts: Sequence[str] = (), tenant: str | None = None,
              tags: Iterable[str] = ()) -> None:
        """A call began. ``prompt_texts`` are only used if the provider reports no usage.

        Bad arguments raise InvalidParameterError here, at the start, not when the call ends."""
        check_text("run_id", run_id, optional=False)
        check_text("tenant", tenant, optional=True)
        for name, value in (("model", model), ("provider", provider)):
            if value is not None and not isinstance(value, str):
                raise InvalidParameterError(name, allowed="a str or None", received=value)
        if isinstance(prompt_texts, str) or not all(isinstance(t, str) for t in prompt_texts):
            raise InvalidParameterError("prompt_texts", allowed="a sequence of str (not a single str)",
                                        received=prompt_texts)
        pending = _Pending(model=model or "unknown", provider=provider_id_for(provider),
                           tenant=tenant if tenant is not None else self.default_tenant,
                           tags=check_tags("tags", tags), prompt_texts=list(prompt_texts))
        with self._lock:
            self._pending[run_id] = pending

    def discard(self, run_id: str) -> None:
        """The call failed before any usage was known: forget it."""
        with self._lock:
            self._pending.pop(run_id, None)

    def finish(self, run_id: str, *, usage: TokenUsage | Any | None, output_texts: Sequence[str] = (),
               model: str | None = None) -> CallRecord | None:
        """The call ended. ``usage`` is a TokenUsage or any provider payload; when it is None
        the prompt and output texts are counted with the model's tokenizer (or estimated)."""
        with self._lock:
            pending = self._pending.pop(run_id, None)
        if pending is None:
            return None
        latency = time.perf_counter() - pending.started
        model_name = model or pending.model
        parsed = usage if isinstance(usage, TokenUsage) else usage_from_payload(usage)
        if parsed is None:
            parsed = self._count(model_name, pending.prompt_texts, output_texts)
        return self.ledger.record_call(
            model=model_name, provider=pending.provider, usage=parsed, latency_s=latency,
            tenant=pending.tenant, tags=pending.tags, run_id=run_id,
        )

    def _count(self, model: str, prompts: Sequence[str], outputs: Sequence[str]) -> TokenUsage:
        inputs = [self._counter.count(text, model) for text in prompts]
        generated = [self._counter.count(text, model) for text in outputs]
        exact = all(not c.estimated for c in [*inputs, *generated])
        return TokenUsage(
            input_tokens=sum(c.tokens for c in inputs),
            output_tokens=sum(c.tokens for c in generated),
            source="tokenizer" if exact else "estimate",
        )

    @property
    def pending_calls(self) -> int:
        with self._lock:
            return len(self._pending)
