"""What a lean template saves against the verbose template it replaces, for the ledger ("template").

Both sides are counted the same way: chat messages in the target model's tokenizer, framing
included. The verbose ``baseline`` is what users send today: one user message, formatted with the
same variables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.ledger_records import SavingsEvent
from lean_core.templates.few_shot import Relevance
from lean_core.templates.render import Order, RenderedPrompt, format_text_template, render_prompt
from lean_core.templates.spec import PromptSpec, template_variables
from lean_core.tokens import TokenCounter

__all__ = ["TemplateSavings", "check_baseline", "render_with_savings", "template_savings"]

_SHARED_COUNTER = TokenCounter()


class TemplateSavings(BaseModel):
    """Tokens of one request under the baseline template and under the lean one."""

    model_config = ConfigDict(frozen=True)

    model: str
    input_tokens_before: int
    input_tokens_after: int

    def ledger_event(self, *, tenant: str | None = None) -> SavingsEvent:
        """The "template" savings event for :meth:`CostLedger.record` / ``arecord``."""
        return SavingsEvent(layer="template", model=self.model, tenant=tenant,
                            input_tokens_before=self.input_tokens_before, input_tokens_after=self.input_tokens_after)


def check_baseline(baseline: str | None, spec: PromptSpec) -> None:
    """Refuse a baseline that needs variables the spec never receives (it could not be formatted)."""
    if baseline is None:
        return
    if not isinstance(baseline, str) or not baseline.strip():
        raise InvalidParameterError("baseline", allowed="a non-empty str.format template or None",
                                    received=baseline)
    extra = [v for v in template_variables(baseline, section="baseline") if v not in spec.variables]
    if extra:
        raise InvalidParameterError("baseline", allowed=f"a template over the spec's variables {list(spec.variables)}",
                                    received=f"variables {extra}")


def template_savings(rendered: RenderedPrompt, *, baseline: str, variables: Mapping[str, Any],
                     counter: TokenCounter | None = None) -> TemplateSavings:
    """Baseline tokens (``baseline`` formatted with ``variables``) vs the rendered lean prompt."""
    counter = counter or _SHARED_COUNTER
    text = format_text_template(baseline, variables, section="baseline")
    before = counter.count_messages([("user", text)], rendered.model).tokens
    return TemplateSavings(model=rendered.model, input_tokens_before=before,
                           input_tokens_after=rendered.total_tokens)


def render_with_savings(spec: PromptSpec, variables: Mapping[str, Any], *, model: str,
                        order: Order = "stable_first", relevance: Relevance = "lexical",
                        allow_extra: bool = False, baseline: str | None = None,
                        counter: TokenCounter | None = None) -> tuple[RenderedPrompt, TemplateSavings | None]:
    """:func:`render_prompt` plus, when a ``baseline`` is given, what this request saved against it
    (the one code path both framework adapters use)."""
    rendered = render_prompt(spec, variables, model=model, order=order, relevance=relevance,
                             allow_extra=allow_extra, counter=counter)
    if baseline is None:
        return rendered, None
    return rendered, template_savings(rendered, baseline=baseline, variables=variables, counter=counter)
