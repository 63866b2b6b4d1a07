"""PromptSpec: a prompt as named sections, split into the stable part and the variable part.

Stable sections (role, task, constraints, output format, fixed examples) are sent verbatim and hold
no variables, so the text they render to is byte-identical across requests and provider prompt
caches and vLLM prefix caching can reuse it. Variable sections (context, question) are
``str.format`` templates (``{name}``; ``{{`` for a literal brace). Examples in ``example_pool`` are
chosen per request by relevance to the request, under a token budget, and travel with the variable
part.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lean_core.errors import InvalidParameterError
from lean_core.templates.errors import DuplicateSectionError, StableSectionVariableError

__all__ = ["SECTIONS", "FewShotExample", "PromptSpec", "SectionName", "spec_from", "template_variables"]

SectionName = Literal["role", "task", "constraints", "output_format", "examples", "example_pool",
                      "context", "question"]
SECTIONS: tuple[SectionName, ...] = ("role", "task", "constraints", "output_format", "examples",
                                     "example_pool", "context", "question")
# A {name} that str.format would substitute; JSON such as {"label": "x"} does not match, so output
# formats can show JSON literally.
_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
_SPACES = re.compile(r"\s+")


class FewShotExample(BaseModel):
    """One worked example: an input and the output the model should give for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: str = Field(min_length=1)
    output: str = Field(min_length=1)


def _normalised(text: str) -> str:
    return _SPACES.sub(" ", text).strip().casefold()


def _unwrapped(exc: ValidationError) -> Exception:
    """Our own error where a validator raised one: pydantic wraps every ValueError, and callers
    should be able to catch :class:`DuplicateSectionError` and friends by type."""
    for error in exc.errors():
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, InvalidParameterError):
            return original
    return exc


def template_variables(template: str, *, section: str) -> tuple[str, ...]:
    """The ``{names}`` of a ``str.format`` template, in order of first appearance."""
    names: list[str] = []
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:  # an unmatched brace
        raise InvalidParameterError(section, allowed="a str.format template ({name}; {{ for a brace)",
                                    received=f"{template!r} ({exc})") from None
    for _, name, spec, conversion in fields:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise InvalidParameterError(section, allowed="plain {name} placeholders (no index, attribute, "
                                                         "conversion or format spec)", received=f"{{{name}}}")
        if name not in names:
            names.append(name)
    return tuple(names)


class PromptSpec(BaseModel):
    """A prompt's instructions as sections, rendered compactly by :func:`render_prompt`.

    Example::

        spec = PromptSpec(role="You are a support agent for Acme.",
                          task="Answer the customer's question from the policy.",
                          constraints=["If the policy does not cover it, say so."],
                          output_format="At most 3 sentences.",
                          context="Policy:\\n{policy}", question="Question: {question}")
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _unwrapped(exc) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise _unwrapped(exc) from None

    role: str | None = None
    """Who the model is (stable)."""
    task: str = Field(min_length=1)
    """What to do (stable, required)."""
    constraints: tuple[str, ...] = ()
    """Rules, one instruction each (stable); a repeated rule is an error."""
    output_format: str | None = None
    """The answer's form (stable); JSON shown literally is fine, ``{name}`` placeholders are not."""
    examples: tuple[FewShotExample, ...] = ()
    """Examples sent with every request (stable)."""
    example_pool: tuple[FewShotExample, ...] = ()
    """Candidates chosen per request by relevance under ``example_budget_tokens`` (variable part)."""
    example_budget_tokens: int | None = Field(None, ge=1)
    """Most tokens (>= 1, target model's tokenizer) the chosen pool examples may take; None: no
    token cap. A pool larger than the budget is not an error: the most relevant examples that fit
    are kept and the rest are reported as dropped."""
    max_examples: int | None = Field(None, ge=1)
    """Most pool examples per request (>= 1); None: as many as fit the budget."""
    context: str | None = None
    """Template of the request's material, e.g. ``"Policy:\\n{policy}"`` (variable part)."""
    question: str | None = None
    """Template of the request itself, e.g. ``"Q: {question}"`` (variable part, rendered last)."""

    @field_validator("role", "output_format", "context", "question")
    @classmethod
    def _strip_optional(cls, value: str | None) -> str | None:
        # An empty section would render as a stray blank line.
        return value.strip() or None if value is not None else None

    @field_validator("task")
    @classmethod
    def _strip_task(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("task must hold text")
        return value.strip()

    @field_validator("constraints", mode="before")
    @classmethod
    def _one_constraint(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("constraints")
    @classmethod
    def _strip_constraints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(c.strip() for c in value if c.strip())

    @model_validator(mode="after")
    def _check(self) -> Self:
        constraints = self.constraints
        seen: set[str] = set()
        for constraint in constraints:
            key = _normalised(constraint)
            if key in seen:
                raise DuplicateSectionError("constraints", value=constraint)
            seen.add(key)
        inputs: set[tuple[str, str]] = set()
        for example in (*self.examples, *self.example_pool):
            key2 = (_normalised(example.input), _normalised(example.output))
            if key2 in inputs:
                raise DuplicateSectionError("examples", value=example.input)
            inputs.add(key2)
        for name in ("role", "task", "output_format"):
            self._no_placeholder(name, getattr(self, name))
        for constraint in constraints:
            self._no_placeholder("constraints", constraint)
        if self.context is None and self.question is None:
            raise InvalidParameterError("question", allowed="a template for the variable part (question "
                                                            "and/or context)", received=None)
        self.variables  # noqa: B018 - parses both templates once, at construction
        return self

    @staticmethod
    def _no_placeholder(section: str, text: str | None) -> None:
        match = _PLACEHOLDER.search(text or "")
        if match:
            raise StableSectionVariableError(section, variable=match.group(1))

    @property
    def variables(self) -> tuple[str, ...]:
        """Variables the template needs, in order of appearance (context first, then question)."""
        names: list[str] = []
        for section in ("context", "question"):
            template = getattr(self, section)
            for name in template_variables(template, section=section) if template else ():
                if name not in names:
                    names.append(name)
        return tuple(names)

    @classmethod
    def from_sections(cls, sections: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> PromptSpec:
        """A spec from (section, value) pairs, e.g. parsed from a sectioned prompt file.

        Raises :class:`DuplicateSectionError` when a section appears twice and
        :class:`InvalidParameterError` for a name outside :data:`SECTIONS`.
        """
        pairs = list(sections.items()) if isinstance(sections, Mapping) else list(sections)
        fields: dict[str, Any] = {}
        for name, value in pairs:
            if name not in SECTIONS:
                raise InvalidParameterError("section", allowed=f"one of {list(SECTIONS)}", received=name)
            if name in fields:
                raise DuplicateSectionError(name, value=value)
            fields[name] = value
        return cls(**fields)


def spec_from(spec: PromptSpec | Mapping[str, Any] | None, sections: Mapping[str, Any]) -> PromptSpec:
    """One spec from either a :class:`PromptSpec` (or its dict) or section keyword arguments, as the
    framework adapters take them; giving both is an error (which one would win is not obvious)."""
    if spec is not None and sections:
        raise InvalidParameterError("spec", allowed="a PromptSpec or section fields, not both",
                                    received=f"spec and {sorted(sections)}")
    if spec is None:
        return PromptSpec.from_sections(sections)
    if isinstance(spec, PromptSpec):
        return spec
    if isinstance(spec, Mapping):
        return PromptSpec.model_validate(dict(spec))
    raise InvalidParameterError("spec", allowed="a PromptSpec, a dict of its fields or None",
                                received=type(spec).__name__)
