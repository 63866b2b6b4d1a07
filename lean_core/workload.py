"""Prompt workloads: load a prompt file, count it in several models' tokenizers and price it."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lean_core.errors import InvalidParameterError
from lean_core.pricing import price_usage
from lean_core.tokens import TokenCounter
from lean_core.usage import TokenUsage

__all__ = [
    "REFERENCE_MODELS",
    "PromptItem",
    "WorkloadQuote",
    "builtin_prompts_path",
    "load_prompts",
    "price_workload",
]

REFERENCE_MODELS: tuple[tuple[str, str], ...] = (
    ("gpt-4o", "openai"),
    ("gpt-4o-mini", "openai"),
    ("claude-3-5-haiku-latest", "anthropic"),
    ("gemini-2.0-flash", "google"),
)
"""(model, provider) pairs a workload is priced at by default."""


class PromptItem(BaseModel):
    """One prompt of a workload file (JSON Lines, one object per line)."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    system: str | None = None
    prompt: str = Field(min_length=1)
    answer: str | None = None
    """A known answer; its tokens count as output when the workload is priced."""


class WorkloadQuote(BaseModel):
    """A whole workload's tokens and price for one (model, provider)."""

    model_config = ConfigDict(frozen=True)

    model: str
    provider: str | None
    prompts: int
    input_tokens: int
    output_tokens: int
    estimated: bool
    """True when the counts come from a stand-in tokenizer, not the model's own."""
    cost_usd: Decimal | None
    cost_per_million_tokens_usd: Decimal | None


def builtin_prompts_path() -> Path:
    """The small prompt workload shipped with the package (support, QA, extraction, ...)."""
    return Path(str(resources.files("lean_core") / "data" / "demo_prompts.jsonl"))


def load_prompts(path: str | os.PathLike[str]) -> list[PromptItem]:
    """Read a JSON Lines prompt file; each line needs at least ``{"prompt": "..."}``."""
    file = Path(path)
    if not file.is_file():
        raise InvalidParameterError("prompts file", allowed="an existing JSON Lines file", received=str(file))
    items = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(PromptItem.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise InvalidParameterError(
                f"prompts file line {number}", allowed='a JSON object with a non-empty "prompt"',
                received=line[:120],
            ) from exc
    if not items:
        raise InvalidParameterError("prompts file", allowed="at least one prompt", received=str(file))
    return items


def price_workload(
    items: Sequence[PromptItem],
    models: Sequence[tuple[str, str | None]] = REFERENCE_MODELS,
    *,
    counter: TokenCounter | None = None,
) -> list[WorkloadQuote]:
    """Count every prompt (system + user) and known answer in each model's tokenizer and price it."""
    counter = counter or TokenCounter()
    quotes = []
    for model, provider in models:
        input_counts = [counter.count_messages(_messages(item), model) for item in items]
        output_counts = [counter.count(item.answer, model) for item in items if item.answer]
        usage = TokenUsage(
            input_tokens=sum(c.tokens for c in input_counts),
            output_tokens=sum(c.tokens for c in output_counts),
            source="estimate",
        )
        quote = price_usage(usage, model, provider=provider)
        per_million = None
        if quote.total_cost_usd is not None and usage.total_tokens:
            per_million = quote.total_cost_usd * Decimal(1_000_000) / Decimal(usage.total_tokens)
        quotes.append(WorkloadQuote(
            model=model, provider=provider, prompts=len(items), input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            estimated=any(c.estimated for c in [*input_counts, *output_counts]),
            cost_usd=quote.total_cost_usd, cost_per_million_tokens_usd=per_million,
        ))
    return quotes


def _messages(item: PromptItem) -> list[tuple[str, str]]:
    return ([("system", item.system)] if item.system else []) + [("user", item.prompt)]

