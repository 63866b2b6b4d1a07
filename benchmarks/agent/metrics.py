"""What one agent run costs and keeps, and the per-configuration summary the report shows.

Counts are the server's own usage figures (``usage.prompt_tokens`` with
``prompt_tokens_details.cached_tokens``, ``usage.completion_tokens``), call by call, including
calls a middleware makes itself (a summarizer's). Each call is priced on its own with genai-prices
(:func:`lean_core.pricing.price_usage`): cached prompt tokens at the model's cache-read price, the
rest at its input price. Provider cache-*write* surcharges (Anthropic charges 1.25x for tokens it
writes to its cache) are not added: a vLLM prefix cache has no write step to count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from lean_core.errors import InvalidParameterError

__all__ = [
    "ConfigSummary",
    "ModelCall",
    "PriceReference",
    "TargetCheck",
    "TaskRun",
    "check_targets",
    "price_calls",
    "summarize_runs",
]


@dataclass(frozen=True, slots=True)
class PriceReference:
    """A model whose list prices turn token counts into dollars."""

    model: str
    provider: str


@dataclass(frozen=True, slots=True)
class ModelCall:
    """One chat completion as the server reported it."""

    step: int | None
    """The agent step (0 = the task's first model call), or None for a middleware's own call."""
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One task run by one configuration."""

    task_id: str
    configuration: str
    calls: tuple[ModelCall, ...]
    answer_in_last_step_context: bool
    """A gold answer string occurs in what the model was sent at its last step."""
    answer_correct: bool
    """The final answer contains a gold answer string (informative: a 135M model answers poorly)."""
    tool_steps_done: int
    """Tool calls the agent made (the script asks for ``tool_steps``)."""
    seconds: float
    final_answer: str = ""


@dataclass(frozen=True, slots=True)
class ConfigSummary:
    """One configuration over all tasks; means are per task."""

    configuration: str
    tasks: int
    input_tokens_per_task: float
    cached_input_tokens_per_task: float
    output_tokens_per_task: float
    model_calls_per_task: float
    seconds_per_task: float
    cached_share: float
    """Cached prompt tokens / prompt tokens, every call."""
    cached_share_from_second_step: float
    """The same over every call after each task's first agent step (summarizer calls included)."""
    cost_per_task_usd: dict[str, float]
    """Mean cost per task at each reference price, keyed ``provider:model``."""
    answer_retention: float
    """Share of tasks whose gold answer is in the model's context at its last step."""
    answer_accuracy: float
    tool_steps_done_per_task: float
    cost_reduction_vs_plain: dict[str, float] = field(default_factory=dict)
    answer_retention_vs_plain: float | None = None


@dataclass(frozen=True, slots=True)
class TargetCheck:
    configuration: str
    target: str
    threshold: float
    measured: float | None
    passed: bool


def price_calls(calls: Sequence[ModelCall], reference: PriceReference) -> float:
    """The dollars ``calls`` cost at ``reference``'s prices (each call priced on its own)."""
    from lean_core.pricing import price_usage
    from lean_core.usage import TokenUsage

    total = Decimal(0)
    for call in calls:
        usage = TokenUsage(input_tokens=call.input_tokens, cached_input_tokens=call.cached_input_tokens,
                           output_tokens=call.output_tokens)
        quote = price_usage(usage, reference.model, provider=reference.provider)
        if not quote.priced or quote.total_cost_usd is None:
            raise InvalidParameterError("price reference", allowed="a model genai-prices knows",
                                        received=f"{reference.provider}:{reference.model} ({quote.unpriced_reason})")
        total += quote.total_cost_usd
    return float(total)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def summarize_runs(runs: Sequence[TaskRun], references: Sequence[PriceReference], *,
                   baseline: str = "plain") -> list[ConfigSummary]:
    """Per-configuration means, in first-seen order, with reductions relative to ``baseline``."""
    order: list[str] = []
    for run in runs:
        if run.configuration not in order:
            order.append(run.configuration)
    summaries: list[ConfigSummary] = []
    for name in order:
        mine = [r for r in runs if r.configuration == name]
        n = len(mine)
        calls = [c for r in mine for c in r.calls]
        later = [c for r in mine for c in r.calls if c.step != 0]
        summaries.append(ConfigSummary(
            configuration=name, tasks=n,
            input_tokens_per_task=sum(c.input_tokens for c in calls) / n,
            cached_input_tokens_per_task=sum(c.cached_input_tokens for c in calls) / n,
            output_tokens_per_task=sum(c.output_tokens for c in calls) / n,
            model_calls_per_task=len(calls) / n,
            seconds_per_task=sum(r.seconds for r in mine) / n,
            cached_share=_share(sum(c.cached_input_tokens for c in calls), sum(c.input_tokens for c in calls)),
            cached_share_from_second_step=_share(sum(c.cached_input_tokens for c in later),
                                                 sum(c.input_tokens for c in later)),
            cost_per_task_usd={f"{ref.provider}:{ref.model}": price_calls(calls, ref) / n for ref in references},
            answer_retention=sum(r.answer_in_last_step_context for r in mine) / n,
            answer_accuracy=sum(r.answer_correct for r in mine) / n,
            tool_steps_done_per_task=sum(r.tool_steps_done for r in mine) / n,
        ))
    base = next((s for s in summaries if s.configuration == baseline), None)
    if base is None:
        return summaries
    out = []
    for s in summaries:
        reduction = {key: (1 - s.cost_per_task_usd[key] / cost) if cost else 0.0
                     for key, cost in base.cost_per_task_usd.items()}
        retention = s.answer_retention / base.answer_retention if base.answer_retention else None
        out.append(ConfigSummary(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                    "cost_reduction_vs_plain": reduction, "answer_retention_vs_plain": retention}))
    return out


COST_REDUCTION_TARGET = 0.70
CACHED_SHARE_TARGET = 0.70
RETENTION_TARGET = 0.95


def check_targets(summaries: Sequence[ConfigSummary], *, baseline: str = "plain") -> list[TargetCheck]:
    """Each non-baseline configuration against the three targets (cost per reference price)."""
    checks: list[TargetCheck] = []
    for s in summaries:
        if s.configuration == baseline:
            continue
        for key, reduction in s.cost_reduction_vs_plain.items():
            checks.append(TargetCheck(s.configuration, f"cost per task >= 70% lower than plain ({key})",
                                      COST_REDUCTION_TARGET, reduction, reduction >= COST_REDUCTION_TARGET))
        checks.append(TargetCheck(s.configuration, "prefix-cache share from the second step on >= 0.7",
                                  CACHED_SHARE_TARGET, s.cached_share_from_second_step,
                                  s.cached_share_from_second_step >= CACHED_SHARE_TARGET))
        retention = s.answer_retention_vs_plain
        checks.append(TargetCheck(s.configuration, "answer retention >= 0.95 of plain's", RETENTION_TARGET,
                                  retention, retention is not None and retention >= RETENTION_TARGET))
    return checks
