"""LeanTemplate: a LlamaIndex prompt template rendered from a PromptSpec, stable part first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts.base import BasePromptTemplate
from pydantic import Field, model_validator

from lean_core.ledger import CostLedger
from lean_core.templates import (
    SECTIONS,
    Order,
    PromptSpec,
    Relevance,
    RenderedPrompt,
    TemplateSavings,
    check_baseline,
    render_with_savings,
)
from lean_core.templates.spec import spec_from

__all__ = ["LeanTemplate"]


class LeanTemplate(BasePromptTemplate):  # type: ignore[no-redef]  # pydantic plugin: field "kwargs" vs **kwargs
    """A LlamaIndex prompt template over :class:`~lean_core.templates.PromptSpec`.

    ``format_messages`` gives a system message with the stable instructions (byte-identical
    across requests) and a user message with the chosen examples, context and question;
    ``format`` gives the same text without roles, stable part first, for completion models.
    Name the spec's variables as the engine passes them (``{context_str}``, ``{query_str}`` for
    query engines). With a ``ledger`` and a ``baseline`` (the verbose template this one replaces),
    every format records one "template" savings event, except the prompt helper's sizing calls
    (every open variable empty), which are not requests.

    Example::

        qa = LeanTemplate(task="Answer from the context only.", context="Context:\\n{context_str}",
                          question="Q: {query_str}")
        engine = index.as_query_engine(text_qa_template=qa)
    """

    spec: PromptSpec
    """The prompt's sections."""
    model: str = "gpt-4o"
    """Model whose tokenizer counts tokens and the example budget (see ``lean_core.tokens``)."""
    order: Order = "stable_first"
    """``"stable_first"`` (cache-friendly) or ``"naive"`` (variables first, one user message)."""
    relevance: Relevance = "lexical"
    """How pool examples are ranked: ``"lexical"`` (BM25) or ``"embedding"`` (MiniLM, needs torch)."""
    baseline: str | None = None
    """The verbose template this one replaces; with ``ledger``, the savings are measured against it."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """When given with ``baseline``, each format records one "template" savings event."""
    tenant: str | None = None
    """Tenant recorded with the savings events."""
    allow_extra_variables: bool = True
    """Ignore keyword arguments the spec does not use (engines pass more than a prompt needs)."""

    @model_validator(mode="before")
    @classmethod
    def _sections_to_spec(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        sections: dict[str, Any] = {k: data.pop(k) for k in SECTIONS if k in data}
        spec = spec_from(data.pop("spec", None), sections)
        data.update(spec=spec, template_vars=list(spec.variables))
        data.setdefault("metadata", {"prompt_type": "custom"})
        data.setdefault("kwargs", {})
        data.setdefault("output_parser", None)
        return data

    @model_validator(mode="after")
    def _check_baseline(self) -> LeanTemplate:
        check_baseline(self.baseline, self.spec)
        return self

    @classmethod
    def from_spec(cls, spec: PromptSpec, **options: Any) -> LeanTemplate:
        """A template over ``spec``; ``options`` are the other fields (model, ledger, ...)."""
        return cls(spec=spec, **options)

    def partial_format(self, **kwargs: Any) -> LeanTemplate:
        # A shallow copy: the ledger (a database handle) is shared, not deep-copied.
        return self.model_copy(update={"kwargs": {**self.kwargs, **kwargs}})

    def format(self, llm: Any = None, **kwargs: Any) -> str:
        return self._render_and_record(kwargs).text

    def format_messages(self, llm: Any = None, **kwargs: Any) -> list[ChatMessage]:
        rendered = self._render_and_record(kwargs)
        return [ChatMessage(role=MessageRole.SYSTEM if m.role == "system" else MessageRole.USER,
                            content=m.content) for m in rendered.messages]

    def get_template(self, llm: Any = None) -> str:
        return self.render(**{v: f"{{{v}}}" for v in self.spec.variables}).text

    def render(self, **kwargs: Any) -> RenderedPrompt:
        """The typed rendering (messages, stable prefix, token counts) without touching the ledger."""
        return self._render(kwargs)[0]

    def _render_and_record(self, kwargs: Mapping[str, Any]) -> RenderedPrompt:
        rendered, savings = self._render(kwargs)
        # LlamaIndex's prompt helper formats with every open variable "" to size the template
        # (get_empty_prompt_txt / _messages): that is no request, so it records nothing.
        open_vars = [v for v in self.spec.variables if v not in self.kwargs]
        sizing = bool(open_vars) and all(kwargs.get(v) == "" for v in open_vars)
        if savings is not None and self.ledger is not None and not sizing:
            self.ledger.record_savings(**savings.ledger_event(tenant=self.tenant))
        return rendered

    def _render(self, kwargs: Mapping[str, Any]) -> tuple[RenderedPrompt, TemplateSavings | None]:
        values = self._map_all_vars({**self.kwargs, **kwargs})
        return render_with_savings(self.spec, values, model=self.model, order=self.order,
                                   relevance=self.relevance, allow_extra=self.allow_extra_variables,
                                   baseline=self.baseline if self.ledger is not None else None)
