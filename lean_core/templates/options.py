"""TemplateOptions: the options of every lean-template adapter, declared once.

LangChain's and LlamaIndex's ``LeanTemplate`` inherit this model and add only their framework's
plumbing (input variables, partial formatting, message types). Rendering with savings and the
ledger write live here, so both adapters measure and record a request the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lean_core.ledger import CostLedger
from lean_core.templates.few_shot import Relevance
from lean_core.templates.render import Order, RenderedPrompt
from lean_core.templates.savings import TemplateSavings, check_baseline, render_with_savings
from lean_core.templates.spec import SECTIONS, PromptSpec, spec_from

__all__ = ["TemplateOptions", "spec_from_fields"]


def spec_from_fields(data: Mapping[str, Any]) -> tuple[dict[str, Any], PromptSpec]:
    """The constructor fields less the spec's sections and ``spec``, and the one spec they give:
    adapters take either ``spec=`` or the sections (``role=``, ``task=``, ...) directly."""
    rest = dict(data)
    sections: dict[str, Any] = {k: rest.pop(k) for k in SECTIONS if k in rest}
    return rest, spec_from(rest.pop("spec", None), sections)


class TemplateOptions(BaseModel):
    """Spec, tokenizer, ordering and ledger options of every lean-template adapter."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    spec: PromptSpec
    """The prompt's sections."""
    model: str = "gpt-4o"
    """Model whose tokenizer counts tokens and the example budget (see ``lean_core.tokens``)."""
    order: Order = "stable_first"
    """``"stable_first"`` (cache-friendly) or ``"naive"`` (variables first, one user message)."""
    relevance: Relevance = "lexical"
    """How pool examples are ranked: ``"lexical"`` (BM25) or ``"embedding"`` (MiniLM, needs torch)."""
    baseline: str | None = None
    """The verbose template this one replaces (a ``str.format`` template over the spec's
    variables); with ``ledger``, the savings are measured against it."""
    ledger: CostLedger | None = Field(None, exclude=True)
    """When given with ``baseline``, each format records one "template" savings event."""
    allow_extra_variables: bool = True
    """Ignore variables the spec does not use (chains and engines pass more than a prompt
    needs); False raises."""

    @model_validator(mode="before")
    @classmethod
    def _sections_to_spec(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        rest, spec = spec_from_fields(data)
        return cls._with_spec(rest, spec)

    @classmethod
    def _with_spec(cls, data: dict[str, Any], spec: PromptSpec) -> dict[str, Any]:
        """The constructor fields with the one ``spec``; an adapter extends this hook with the
        fields its framework derives from the spec (input variables, ...)."""
        data["spec"] = spec
        return data

    @model_validator(mode="after")
    def _check_baseline(self) -> Self:
        check_baseline(self.baseline, self.spec)
        return self

    @classmethod
    def from_spec(cls, spec: PromptSpec, **options: Any) -> Self:
        """A template over ``spec``; ``options`` are the other fields (model, ledger, ...)."""
        return cls(spec=spec, **options)

    def render_values(self, values: Mapping[str, Any]) -> tuple[RenderedPrompt, TemplateSavings | None]:
        """The rendered prompt and, with a ledger and a baseline, what it saved against the baseline."""
        return render_with_savings(self.spec, values, model=self.model, order=self.order,
                                   relevance=self.relevance, allow_extra=self.allow_extra_variables,
                                   baseline=self.baseline if self.ledger is not None else None)

    def record_template(self, savings: TemplateSavings | None, *, tenant: str | None = None) -> None:
        """Record one "template" savings event (nothing without savings or a ledger)."""
        if savings is not None and self.ledger is not None:
            self.ledger.record(savings.ledger_event(tenant=tenant))

    async def arecord_template(self, savings: TemplateSavings | None, *, tenant: str | None = None) -> None:
        """Async :meth:`record_template`."""
        if savings is not None and self.ledger is not None:
            await self.ledger.arecord(savings.ledger_event(tenant=tenant))
