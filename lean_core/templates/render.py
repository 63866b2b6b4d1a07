"""Render a :class:`PromptSpec` into chat messages, stable part first, with token counts.

``order="stable_first"`` (the default): a system message with role, task, constraints, output
format and fixed examples, and nothing that varies, so it is byte-identical across requests and a
provider prompt cache or vLLM's prefix cache can reuse it; then one user message with the
relevance-chosen examples, the context and the question, the question last.

``order="naive"``: what many hand-written templates do, and the benchmark's baseline: one user
message with the variable parts first and the instructions after them, so no two requests share
more than the chat template's own preamble.

Token counts are in the *target model's* tokenizer (:class:`~lean_core.tokens.TokenCounter`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from lean_core.errors import InvalidParameterError
from lean_core.generation import ChatMessageDict
from lean_core.templates.errors import MissingVariableError, UnknownVariableError
from lean_core.templates.few_shot import (
    ExampleSelection,
    Relevance,
    format_examples,
    select_examples,
)
from lean_core.templates.spec import PromptSpec, template_variables
from lean_core.tokens import TokenCounter

__all__ = [
    "Order",
    "PromptMessage",
    "RenderedPrompt",
    "format_text_template",
    "render_prompt",
    "render_stable",
]

Order = Literal["stable_first", "naive"]
_ORDERS = ("stable_first", "naive")
_SHARED_COUNTER = TokenCounter()  # no I/O until used; tokenizers load once per process


class PromptMessage(BaseModel):
    """One chat message of a rendered prompt."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "user"]
    content: str


class RenderedPrompt(BaseModel):
    """A rendered prompt: its messages and what they cost in the target model's tokens."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[PromptMessage, ...]
    order: Order
    model: str
    """The model whose tokenizer counted the tokens."""
    stable_prefix: str
    """Leading text identical for every request of this spec: the system message with
    ``stable_first``, empty with ``naive`` (its first characters are a variable's)."""
    stable_tokens: int
    """Tokens of ``stable_prefix``."""
    total_tokens: int
    """Tokens of every message, chat framing included (framing per :meth:`TokenCounter.count_messages`)."""
    estimated: bool
    """True when ``model``'s own tokenizer was not available and another one counted."""
    examples: ExampleSelection | None
    """The pool examples chosen for this request; None when the spec has no pool."""

    @property
    def text(self) -> str:
        """The messages' contents joined by a blank line (for completion-style models)."""
        return "\n\n".join(m.content for m in self.messages)

    def to_dicts(self) -> list[ChatMessageDict]:
        """``[{"role": ..., "content": ...}, ...]`` as chat APIs and the local engine take them."""
        return [{"role": m.role, "content": m.content} for m in self.messages]


def render_stable(spec: PromptSpec) -> str:
    """The stable part of ``spec``: role, task, rules, output format and fixed examples."""
    parts = [p for p in (spec.role, spec.task) if p]
    if spec.constraints:
        parts.append("Rules:\n" + "\n".join(f"- {c}" for c in spec.constraints))
    if spec.output_format:
        sep = "\n" if "\n" in spec.output_format else " "
        parts.append(f"Output format:{sep}{spec.output_format}")
    if spec.examples:
        parts.append("Examples:\n" + format_examples(spec.examples))
    return "\n".join(parts)


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray) and all(
            isinstance(v, str) for v in value):
        return "\n\n".join(value)  # a list of passages reads as paragraphs
    return str(value)


def _check_variables(required: Sequence[str], variables: Mapping[str, Any], *, allow_extra: bool) -> None:
    given = {k for k, v in variables.items() if v is not None}
    missing = set(required) - given
    if missing:
        raise MissingVariableError(missing, required=required, received=given)
    unknown = set(variables) - set(required)
    if unknown and not allow_extra:
        raise UnknownVariableError(unknown, required=required)


def format_text_template(template: str, variables: Mapping[str, Any], *, section: str = "template",
                         allow_extra: bool = True) -> str:
    """A plain ``str.format`` template (e.g. the verbose prompt a spec replaces) with the same
    variable checks as :func:`render_prompt`; extra variables are ignored unless ``allow_extra=False``."""
    required = template_variables(template, section=section)
    _check_variables(required, variables, allow_extra=allow_extra)
    return template.format(**{k: _value_text(variables[k]) for k in required})


def render_prompt(spec: PromptSpec, variables: Mapping[str, Any], *, model: str = "gpt-4o",
                  order: Order = "stable_first", relevance: Relevance = "lexical",
                  allow_extra: bool = False, counter: TokenCounter | None = None) -> RenderedPrompt:
    """Render ``spec`` for one request.

    ``variables`` must give every name in ``spec.variables`` (a None value counts as missing);
    str values go in as is, a list of str as paragraphs. Names the spec does not use raise
    :class:`UnknownVariableError` unless ``allow_extra`` (LCEL dicts often carry extra keys).
    ``model``'s tokenizer counts tokens and the example budget.
    """
    if order not in _ORDERS:
        raise InvalidParameterError("order", allowed=" | ".join(_ORDERS), received=order)
    if not isinstance(variables, Mapping):
        raise InvalidParameterError("variables", allowed="a mapping of variable names to values",
                                    received=type(variables).__name__)
    _check_variables(spec.variables, variables, allow_extra=allow_extra)
    counter = counter or _SHARED_COUNTER
    values = {k: _value_text(variables[k]) for k in spec.variables}
    context = spec.context.format(**values) if spec.context else None
    question = spec.question.format(**values) if spec.question else None
    selection: ExampleSelection | None = None
    if spec.example_pool:
        selection = select_examples(spec.example_pool, question or context or "", model=model,
                                    budget_tokens=spec.example_budget_tokens, max_examples=spec.max_examples,
                                    relevance=relevance, counter=counter)
    variable_parts = [p for p in (
        "Examples:\n" + format_examples(selection.selected) if selection and selection.selected else None,
        context, question) if p]
    stable = render_stable(spec)
    messages: tuple[PromptMessage, ...]
    if order == "stable_first":
        messages = (PromptMessage(role="system", content=stable),
                    PromptMessage(role="user", content="\n\n".join(variable_parts)))
        prefix = stable
    else:
        messages = (PromptMessage(role="user", content="\n\n".join([*variable_parts, stable])),)
        prefix = ""
    stable_count = counter.count(stable, model)
    total = counter.count_messages([(m.role, m.content) for m in messages], model)
    return RenderedPrompt(messages=messages, order=order, model=model, stable_prefix=prefix,
                          stable_tokens=stable_count.tokens if prefix else 0, total_tokens=total.tokens,
                          estimated=stable_count.estimated, examples=selection)
