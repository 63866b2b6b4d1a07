"""LeanTemplate: a LlamaIndex prompt template rendered from a PromptSpec, stable part first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole
from llama_index.core.prompts.base import BasePromptTemplate

from lean_core.templates import PromptSpec, RenderedPrompt, TemplateSavings
from lean_core.templates.options import TemplateOptions

__all__ = ["LeanTemplate"]


class LeanTemplate(TemplateOptions, BasePromptTemplate):  # type: ignore[no-redef]  # pydantic plugin: field "kwargs" vs **kwargs
    """A LlamaIndex prompt template over :class:`~lean_core.templates.PromptSpec`.

    ``format_messages`` gives a system message with the stable instructions (byte-identical
    across requests) and a user message with the chosen examples, context and question;
    ``format`` gives the same text without roles, stable part first, for completion models.
    Give the spec, or its sections directly; the other options are
    :class:`~lean_core.templates.options.TemplateOptions`.
    Name the spec's variables as the engine passes them (``{context_str}``, ``{query_str}`` for
    query engines). With a ``ledger`` and a ``baseline`` (the verbose template this one replaces),
    every format records one "template" savings event, except the prompt helper's sizing calls
    (every open variable empty), which are not requests.

    Example::

        qa = LeanTemplate(task="Answer from the context only.", context="Context:\\n{context_str}",
                          question="Q: {query_str}")
        engine = index.as_query_engine(text_qa_template=qa)
    """

    tenant: str | None = None
    """Tenant recorded with the savings events."""

    @classmethod
    def _with_spec(cls, data: dict[str, Any], spec: PromptSpec) -> dict[str, Any]:
        data.update(template_vars=list(spec.variables))
        data.setdefault("metadata", {"prompt_type": "custom"})
        data.setdefault("kwargs", {})
        data.setdefault("output_parser", None)
        return super()._with_spec(data, spec)

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
        if not sizing:
            self.record_template(savings, tenant=self.tenant)
        return rendered

    def _render(self, kwargs: Mapping[str, Any]) -> tuple[RenderedPrompt, TemplateSavings | None]:
        return self.render_values(self._map_all_vars({**self.kwargs, **kwargs}))
