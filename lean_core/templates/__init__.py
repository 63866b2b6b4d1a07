"""Layer 2, lean templates: prompts as sections rendered stable part first, few-shot examples chosen
by relevance under a token budget, and a linter that prices verbose instructions."""

from lean_core.templates.errors import (
    DuplicateSectionError,
    MissingVariableError,
    StableSectionVariableError,
    UnknownVariableError,
)
from lean_core.templates.few_shot import (
    ExampleSelection,
    Relevance,
    format_examples,
    select_examples,
)
from lean_core.templates.lint import FindingKind, LintFinding, LintReport, lint_prompt
from lean_core.templates.render import (
    Order,
    PromptMessage,
    RenderedPrompt,
    format_text_template,
    render_prompt,
    render_stable,
)
from lean_core.templates.savings import (
    TemplateSavings,
    check_baseline,
    render_with_savings,
    template_savings,
)
from lean_core.templates.spec import SECTIONS, FewShotExample, PromptSpec, SectionName

__all__ = [
    "SECTIONS",
    "DuplicateSectionError",
    "ExampleSelection",
    "FewShotExample",
    "FindingKind",
    "LintFinding",
    "LintReport",
    "MissingVariableError",
    "Order",
    "PromptMessage",
    "PromptSpec",
    "Relevance",
    "RenderedPrompt",
    "SectionName",
    "StableSectionVariableError",
    "TemplateSavings",
    "UnknownVariableError",
    "check_baseline",
    "format_examples",
    "format_text_template",
    "lint_prompt",
    "render_prompt",
    "render_stable",
    "render_with_savings",
    "select_examples",
    "template_savings",
]
