"""Ledger summaries: totals per model and per layer, a terminal table and a PNG chart.

Dollar totals compare like with like: an unpriced (local) call is priced at the reference model
its savings were priced at, or left out of both sides with them; ``LedgerSummary.comparison_basis``
and the counts next to it say which (the rules are in ``lean_core._comparison``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lean_core._comparison import ComparedCall, ComparisonBasis, Pricer, compare
from lean_core.ledger_records import LAYERS, CallRecord, Layer, SavingsEvent
from lean_core.pricing import price_usage

__all__ = [
    "ComparisonBasis", "CostChartData", "LayerSavings", "LedgerSummary", "ModelTotals", "cost_chart_data",
    "render_table", "summarize", "write_chart",
]


class ModelTotals(BaseModel):
    """Usage and cost of one (model, provider) pair."""

    model_config = ConfigDict(frozen=True)

    model: str
    provider: str | None
    calls: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    """At the model's own prices; None when no call of this model could be priced."""
    unpriced_calls: int
    estimated_calls: int
    """Calls whose counts are not the provider's own usage."""
    reference_priced_calls: int = 0
    """Unpriced calls priced at the reference model their savings were priced at."""
    reference_cost_usd: Decimal | None = None
    """Those calls' cost at the reference model (their own token counts); None when there are none."""
    reference_models: tuple[str, ...] = ()
    """The reference models those calls were priced at."""


class LayerSavings(BaseModel):
    """What one layer saved over all its events."""

    model_config = ConfigDict(frozen=True)

    layer: Layer
    events: int
    cache_hits: int
    cache_misses: int
    input_tokens_saved: int
    output_tokens_saved: int
    cost_saved_usd: Decimal
    """Over the events the summary compares (``left_out_events`` are not in it)."""
    unpriced_events: int
    left_out_events: int = 0
    """Priced events left out of the dollar totals because their call could not be priced."""
    left_out_cost_usd: Decimal = Decimal(0)
    """What those events would have saved at their own prices."""
    cache_explorations: int = 0
    """Cache misses that explored (``miss_reason == "exploration"``, also in ``cache_misses``):
    calls an error-budget cache sent to the model to learn where it may serve."""


class LedgerSummary(BaseModel):
    """A ledger's totals: actual cost, what each layer saved, and the baseline they imply.

    Actual and saved are compared like with like (``comparison_basis``): a call without a price
    of its own is priced at the reference model of its savings, or it and its savings are left
    out of both.
    """

    model_config = ConfigDict(frozen=True)

    calls: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    actual_cost_usd: Decimal
    """Sum over compared calls: own prices (``recorded_cost_usd``) plus reference prices
    (``reference_cost_usd``)."""
    saved_cost_usd: Decimal
    """Sum over compared savings events (``left_out_saved_usd`` is not in it)."""
    baseline_cost_usd: Decimal
    """What the same work would have cost without the layers: actual + saved."""
    unpriced_calls: int
    """Calls without a price of their own (some may be priced at a reference model)."""
    estimated_calls: int
    by_model: tuple[ModelTotals, ...]
    by_layer: tuple[LayerSavings, ...]
    comparison_basis: ComparisonBasis = "own_prices"
    """How actual and saved were made comparable (see :data:`ComparisonBasis`)."""
    recorded_cost_usd: Decimal = Decimal(0)
    """Sum over calls priced at their own model's prices."""
    reference_priced_calls: int = 0
    """Unpriced calls priced at the reference model their savings events were priced at."""
    reference_cost_usd: Decimal = Decimal(0)
    """Those calls' cost at the reference model, from their own token counts (an approximation
    when the served model's tokenizer differs from the reference model's)."""
    reference_models: tuple[str, ...] = ()
    """The reference models used, sorted."""
    left_out_calls: int = 0
    """Unpriced calls in neither total: no own price, and no one reference model from their savings."""
    left_out_events: int = 0
    """Priced savings events left out of the saved total with those calls."""
    left_out_saved_usd: Decimal = Decimal(0)
    """What the left-out events would have saved at their own prices."""
    skipped_rows: int = 0
    """Damaged ledger rows (calls and savings events) left out of every total: unreadable values
    such as non-UTF-8 text or a bad decimal, timestamp or JSON. 0 for a sound ledger."""

    @property
    def cost_reduction(self) -> float | None:
        """Share of the baseline cost saved (0..1), None when the baseline is 0."""
        if self.baseline_cost_usd == 0:
            return None
        return float(self.saved_cost_usd / self.baseline_cost_usd)


def summarize(calls: Sequence[CallRecord], savings: Sequence[SavingsEvent], *,
              pricer: Pricer = price_usage, skipped_rows: int = 0) -> LedgerSummary:
    """Aggregate call records and savings events into a :class:`LedgerSummary`.

    ``pricer`` prices unpriced calls at their savings' reference model (default: genai-prices,
    as :class:`~lean_core.ledger.CostLedger` does); ``skipped_rows`` is how many damaged ledger
    rows the caller left out (carried to :attr:`LedgerSummary.skipped_rows`).
    """
    comparison = compare(calls, savings, pricer=pricer)
    groups: dict[tuple[str, str | None], list[ComparedCall]] = {}
    for compared in comparison.calls:
        groups.setdefault((compared.record.model, compared.record.provider), []).append(compared)
    by_model = [_model_totals(model, provider, items)
                for (model, provider), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))]
    by_layer = []
    for layer in LAYERS:
        events = [e for e in savings if e.layer == layer]
        if not events:
            continue
        kept = [e for e in comparison.kept if e.layer == layer]
        left_out = [e for e in comparison.left_out if e.layer == layer]
        by_layer.append(LayerSavings(
            layer=layer, events=len(events),
            cache_hits=sum(1 for e in events if e.cache_hit is True),
            cache_misses=sum(1 for e in events if e.cache_hit is False),
            cache_explorations=sum(1 for e in events if e.miss_reason == "exploration"),
            input_tokens_saved=sum(e.input_tokens_saved for e in events),
            output_tokens_saved=sum(e.output_tokens_saved for e in events),
            cost_saved_usd=sum((e.cost_saved_usd for e in kept if e.cost_saved_usd is not None), Decimal(0)),
            unpriced_events=sum(1 for e in events if e.cost_saved_usd is None),
            left_out_events=len(left_out),
            left_out_cost_usd=sum((e.cost_saved_usd for e in left_out if e.cost_saved_usd is not None), Decimal(0)),
        ))
    recorded = sum((c.cost_usd for c in comparison.calls if c.cost_usd is not None and c.reference_model is None),
                   Decimal(0))
    referenced = [c for c in comparison.calls if c.reference_model is not None]
    reference = sum((c.cost_usd for c in referenced if c.cost_usd is not None), Decimal(0))
    actual = recorded + reference
    saved = sum((layer.cost_saved_usd for layer in by_layer), Decimal(0))
    return LedgerSummary(
        calls=len(calls),
        input_tokens=sum(c.usage.input_tokens for c in calls),
        cached_input_tokens=sum(c.usage.cached_input_tokens for c in calls),
        output_tokens=sum(c.usage.output_tokens for c in calls),
        reasoning_tokens=sum(c.usage.reasoning_tokens for c in calls),
        actual_cost_usd=actual, saved_cost_usd=saved, baseline_cost_usd=actual + saved,
        unpriced_calls=sum(1 for c in calls if not c.priced),
        estimated_calls=sum(1 for c in calls if c.usage.estimated),
        by_model=tuple(by_model), by_layer=tuple(by_layer),
        comparison_basis=comparison.basis, recorded_cost_usd=recorded,
        reference_priced_calls=len(referenced), reference_cost_usd=reference,
        reference_models=tuple(sorted({c.reference_model for c in referenced if c.reference_model})),
        left_out_calls=sum(1 for c in comparison.calls if c.cost_usd is None),
        left_out_events=sum(layer.left_out_events for layer in by_layer),
        left_out_saved_usd=sum((layer.left_out_cost_usd for layer in by_layer), Decimal(0)),
        skipped_rows=skipped_rows,
    )


def _model_totals(model: str, provider: str | None, items: Sequence[ComparedCall]) -> ModelTotals:
    records = [c.record for c in items]
    own = [c.cost_usd for c in items if c.cost_usd is not None and c.reference_model is None]
    referenced = [c for c in items if c.reference_model is not None]
    return ModelTotals(
        model=model, provider=provider, calls=len(records),
        input_tokens=sum(c.usage.input_tokens for c in records),
        cached_input_tokens=sum(c.usage.cached_input_tokens for c in records),
        output_tokens=sum(c.usage.output_tokens for c in records),
        reasoning_tokens=sum(c.usage.reasoning_tokens for c in records),
        cost_usd=sum(own, Decimal(0)) if own else None,
        unpriced_calls=sum(1 for c in records if not c.priced),
        estimated_calls=sum(1 for c in records if c.usage.estimated),
        reference_priced_calls=len(referenced),
        reference_cost_usd=sum((c.cost_usd for c in referenced if c.cost_usd is not None), Decimal(0))
        if referenced else None,
        reference_models=tuple(sorted({c.reference_model for c in referenced if c.reference_model})),
    )


class CostChartData(BaseModel):
    """The numbers the chart's cost panel draws; the table's totals line shows the same ones."""

    model_config = ConfigDict(frozen=True)

    baseline_usd: Decimal
    actual_usd: Decimal
    saved_by_layer: tuple[tuple[Layer, Decimal], ...]
    """Each layer's compared savings, in :data:`LAYERS` order (the chart stacks the positive ones)."""
    cost_reduction: float | None
    """Share of the baseline saved (0..1), as :attr:`LedgerSummary.cost_reduction`."""
    comparison_basis: ComparisonBasis


def cost_chart_data(summary: LedgerSummary) -> CostChartData:
    """The cost panel's numbers for ``summary``."""
    return CostChartData(
        baseline_usd=summary.baseline_cost_usd, actual_usd=summary.actual_cost_usd,
        saved_by_layer=tuple((layer.layer, layer.cost_saved_usd) for layer in summary.by_layer),
        cost_reduction=summary.cost_reduction, comparison_basis=summary.comparison_basis,
    )


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "unpriced"
    return f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def _basis_lines(summary: LedgerSummary) -> list[str]:
    """What the dollar totals compare, in words (the table's last lines and the chart's footer)."""
    if summary.comparison_basis == "none":
        return ["no dollar totals: no call could be priced (local or unknown models) and no saving "
                "could be set against one; token counts only"]
    lines = []
    if summary.reference_priced_calls:
        lines.append(
            f"compared at reference prices: {_plural(summary.reference_priced_calls, 'unpriced call')} priced at "
            f"{', '.join(summary.reference_models)} like their savings ({_usd(summary.reference_cost_usd)} of the "
            "actual, from the calls' own token counts)")
    if summary.left_out_calls or summary.left_out_events:
        text = f"left out of both sides: {_plural(summary.left_out_calls, 'unpriced call')} with no reference price"
        if summary.left_out_events:
            text += (f", and {_plural(summary.left_out_events, 'savings event')} ({_usd(summary.left_out_saved_usd)}) "
                     "that belong or may belong to them")
        lines.append(text)
    if not lines:
        lines.append("compared at each call's own model prices")
    return lines


def render_table(summary: LedgerSummary, *, title: str = "lean-inference cost ledger") -> str:
    """The summary as text tables (models, then layers, then totals and what they compare)."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=150, force_terminal=False, color_system=None)
    models = Table(title=title)
    for name in ("model", "provider", "calls", "input", "cached in", "output", "reasoning", "cost", "notes"):
        # Model names are identifiers: never truncate them.
        models.add_column(name, justify="left" if name in ("model", "provider", "notes") else "right",
                          no_wrap=name in ("model", "provider"))
    for m in summary.by_model:
        notes = []
        if m.unpriced_calls:
            notes.append(f"{m.unpriced_calls} unpriced" + (
                f" ({m.reference_priced_calls} at {', '.join(m.reference_models)} prices)"
                if m.reference_priced_calls else ""))
        if m.estimated_calls:
            notes.append(f"{m.estimated_calls} estimated")
        cost = _usd(m.cost_usd) if m.cost_usd is not None or m.reference_cost_usd is None \
            else f"~{_usd(m.reference_cost_usd)}"
        models.add_row(m.model, m.provider or "-", str(m.calls), f"{m.input_tokens:,}",
                       f"{m.cached_input_tokens:,}", f"{m.output_tokens:,}", f"{m.reasoning_tokens:,}",
                       cost, ", ".join(notes))
    console.print(models)
    layers = Table(title="savings by layer")
    columns = ["layer", "events", "cache hits", "input saved", "output saved", "cost saved"]
    if summary.left_out_events:
        columns.append("left out")
    for name in columns:
        layers.add_column(name, justify="left" if name == "layer" else "right")
    for layer in summary.by_layer:
        hits = f"{layer.cache_hits}/{layer.cache_hits + layer.cache_misses}" if layer.layer == "cache" else "-"
        if layer.layer == "cache" and layer.cache_explorations:
            hits += f" ({layer.cache_explorations} explored)"
        left_out = [f"{_usd(layer.left_out_cost_usd)} ({layer.left_out_events})" if layer.left_out_events else "-"]
        layers.add_row(layer.layer, str(layer.events), hits, f"{layer.input_tokens_saved:,}",
                       f"{layer.output_tokens_saved:,}", _usd(layer.cost_saved_usd),
                       *(left_out if summary.left_out_events else []))
    if summary.by_layer:
        console.print(layers)
    if summary.comparison_basis == "none":
        console.print(f"calls {summary.calls:,} | " + _basis_lines(summary)[0])
        if summary.skipped_rows:
            console.print(_skipped_line(summary))
        return buffer.getvalue()
    reduction = cost_chart_data(summary).cost_reduction
    console.print(
        f"calls {summary.calls:,} | baseline {_usd(summary.baseline_cost_usd)} | actual "
        f"{_usd(summary.actual_cost_usd)} | saved {_usd(summary.saved_cost_usd)}"
        + (f" ({_percent(reduction)})" if reduction is not None else "")
        + (f" | {summary.estimated_calls} calls with estimated counts" if summary.estimated_calls else "")
    )
    for line in _basis_lines(summary):
        console.print(line)
    if summary.skipped_rows:
        console.print(_skipped_line(summary))
    return buffer.getvalue()


def _skipped_line(summary: LedgerSummary) -> str:
    return (f"skipped: {_plural(summary.skipped_rows, 'damaged ledger row')}, unreadable and left out of "
            "every total above")


def write_chart(summary: LedgerSummary, path: str | os.PathLike[str]) -> Path:
    """A PNG: baseline vs actual cost, the gap split by layer; tokens saved per layer; and a footer
    that says what the dollar figures compare."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")  # no display here, and never steal the user's backend in a notebook
    import matplotlib.pyplot as plt

    out = Path(path)
    data = cost_chart_data(summary)
    colors = {"compression": "#4C72B0", "template": "#55A868", "pruning": "#8172B2",
              "output": "#C44E52", "cache": "#DD8452"}
    footer = [wrapped for line in _basis_lines(summary) for wrapped in textwrap.wrap(line, 160)]
    height = 5.2 + 0.18 * len(footer)
    fig, (ax_cost, ax_tokens) = plt.subplots(1, 2, figsize=(11, height))
    actual = float(data.actual_usd)
    actual_label = "actual cost" if not summary.reference_priced_calls else \
        f"actual cost ({', '.join(summary.reference_models)} prices for local calls)"
    ax_cost.bar(["baseline", "actual"], [0, actual], color="#999999", label=actual_label)
    ax_cost.bar(["baseline"], [actual], color="#999999")
    bottom = actual
    for layer, saved in data.saved_by_layer:
        value = float(saved)
        if value <= 0:
            continue
        ax_cost.bar(["baseline"], [value], bottom=[bottom], color=colors[layer], label=f"saved by {layer}")
        bottom += value
    ax_cost.set_ylabel("USD")
    ax_cost.set_title("Cost: baseline vs actual" + (f" ({_percent(data.cost_reduction)} saved)"
                                                    if data.cost_reduction is not None else ""))
    if data.comparison_basis == "none":
        ax_cost.text(0.5, 0.5, "no dollar totals\n(no call could be priced)", ha="center", va="center",
                     transform=ax_cost.transAxes)
        ax_cost.set_ylim(0, 1)
        ax_cost.set_yticks([])
    else:
        # Below the axes: inside, the legend would cover the bars.
        ax_cost.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
        for x, value in ((0, float(data.baseline_usd)), (1, actual)):
            ax_cost.annotate(_usd(Decimal(str(value))), (x, value), ha="center", va="bottom", fontsize=9)
        ax_cost.margins(y=0.12)  # room for the value labels above the bars

    names = [layer.layer for layer in summary.by_layer]
    inputs = [layer.input_tokens_saved for layer in summary.by_layer]
    outputs = [layer.output_tokens_saved for layer in summary.by_layer]
    ax_tokens.barh(names, inputs, color="#4C72B0", label="input tokens saved")
    ax_tokens.barh(names, outputs, left=inputs, color="#C44E52", label="output tokens saved")
    ax_tokens.set_title("Tokens saved by layer")
    ax_tokens.set_xlabel("tokens")
    if names:
        ax_tokens.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    else:
        ax_tokens.text(0.5, 0.5, "no savings events recorded", ha="center", va="center",
                       transform=ax_tokens.transAxes)
    fig.suptitle(f"{_plural(summary.calls, 'call')} · {summary.input_tokens:,} input / "
                 f"{summary.output_tokens:,} output tokens")
    fig.text(0.01, 0.01, "\n".join(footer), ha="left", va="bottom", fontsize=8, color="#333333")
    fig.tight_layout(rect=(0, (0.2 + 0.18 * len(footer)) / height, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
