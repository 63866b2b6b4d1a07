"""Ledger summaries: totals per model and per layer, a terminal table and a PNG chart."""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from lean_core.ledger_records import LAYERS, CallRecord, Layer, SavingsEvent

__all__ = ["LayerSavings", "LedgerSummary", "ModelTotals", "render_table", "summarize", "write_chart"]


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
    """None when no call of this model could be priced."""
    unpriced_calls: int
    estimated_calls: int
    """Calls whose counts are not the provider's own usage."""


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
    unpriced_events: int


class LedgerSummary(BaseModel):
    """A ledger's totals: actual cost, what each layer saved, and the baseline they imply."""

    model_config = ConfigDict(frozen=True)

    calls: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    actual_cost_usd: Decimal
    """Sum over priced calls."""
    saved_cost_usd: Decimal
    baseline_cost_usd: Decimal
    """What the same work would have cost without the layers: actual + saved."""
    unpriced_calls: int
    estimated_calls: int
    by_model: tuple[ModelTotals, ...]
    by_layer: tuple[LayerSavings, ...]

    @property
    def cost_reduction(self) -> float | None:
        """Share of the baseline cost saved (0..1), None when the baseline is 0."""
        if self.baseline_cost_usd == 0:
            return None
        return float(self.saved_cost_usd / self.baseline_cost_usd)


def summarize(calls: Sequence[CallRecord], savings: Sequence[SavingsEvent]) -> LedgerSummary:
    """Aggregate call records and savings events into a :class:`LedgerSummary`."""
    groups: dict[tuple[str, str | None], list[CallRecord]] = {}
    for call in calls:
        groups.setdefault((call.model, call.provider), []).append(call)
    by_model = []
    for (model, provider), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        priced = [c.cost_usd for c in items if c.cost_usd is not None]
        by_model.append(ModelTotals(
            model=model, provider=provider, calls=len(items),
            input_tokens=sum(c.usage.input_tokens for c in items),
            cached_input_tokens=sum(c.usage.cached_input_tokens for c in items),
            output_tokens=sum(c.usage.output_tokens for c in items),
            reasoning_tokens=sum(c.usage.reasoning_tokens for c in items),
            cost_usd=sum(priced, Decimal(0)) if priced else None,
            unpriced_calls=sum(1 for c in items if not c.priced),
            estimated_calls=sum(1 for c in items if c.usage.estimated),
        ))
    by_layer = []
    for layer in LAYERS:
        events = [e for e in savings if e.layer == layer]
        if not events:
            continue
        by_layer.append(LayerSavings(
            layer=layer, events=len(events),
            cache_hits=sum(1 for e in events if e.cache_hit is True),
            cache_misses=sum(1 for e in events if e.cache_hit is False),
            input_tokens_saved=sum(e.input_tokens_saved for e in events),
            output_tokens_saved=sum(e.output_tokens_saved for e in events),
            cost_saved_usd=sum((e.cost_saved_usd for e in events if e.cost_saved_usd is not None), Decimal(0)),
            unpriced_events=sum(1 for e in events if e.cost_saved_usd is None),
        ))
    actual = sum((c.cost_usd for c in calls if c.cost_usd is not None), Decimal(0))
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
    )


def _usd(value: Decimal | None) -> str:
    if value is None:
        return "unpriced"
    return f"${value:,.6f}" if abs(value) < 1 else f"${value:,.2f}"


def render_table(summary: LedgerSummary, *, title: str = "lean-inference cost ledger") -> str:
    """The summary as text tables (models, then layers, then totals)."""
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
            notes.append(f"{m.unpriced_calls} unpriced")
        if m.estimated_calls:
            notes.append(f"{m.estimated_calls} estimated")
        models.add_row(m.model, m.provider or "-", str(m.calls), f"{m.input_tokens:,}",
                       f"{m.cached_input_tokens:,}", f"{m.output_tokens:,}", f"{m.reasoning_tokens:,}",
                       _usd(m.cost_usd), ", ".join(notes))
    console.print(models)
    layers = Table(title="savings by layer")
    for name in ("layer", "events", "cache hits", "input saved", "output saved", "cost saved"):
        layers.add_column(name, justify="left" if name == "layer" else "right")
    for layer in summary.by_layer:
        hits = f"{layer.cache_hits}/{layer.cache_hits + layer.cache_misses}" if layer.layer == "cache" else "-"
        layers.add_row(layer.layer, str(layer.events), hits, f"{layer.input_tokens_saved:,}",
                       f"{layer.output_tokens_saved:,}", _usd(layer.cost_saved_usd))
    if summary.by_layer:
        console.print(layers)
    reduction = summary.cost_reduction
    if summary.calls and summary.unpriced_calls == summary.calls and not summary.saved_cost_usd:
        console.print(f"calls {summary.calls:,} | none could be priced (local or unknown models): "
                      "token counts above, no dollar totals")
        return buffer.getvalue()
    console.print(
        f"calls {summary.calls:,} | baseline {_usd(summary.baseline_cost_usd)} | actual "
        f"{_usd(summary.actual_cost_usd)} | saved {_usd(summary.saved_cost_usd)}"
        + (f" ({reduction:.1%})" if reduction is not None else "")
        + (f" | {summary.unpriced_calls} unpriced calls not in the totals" if summary.unpriced_calls else "")
        + (f" | {summary.estimated_calls} calls with estimated counts" if summary.estimated_calls else "")
    )
    return buffer.getvalue()


def write_chart(summary: LedgerSummary, path: str | os.PathLike[str]) -> Path:
    """A PNG: baseline vs actual cost, the gap split by layer; and tokens saved per layer."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and never steal the user's backend in a notebook
    import matplotlib.pyplot as plt

    out = Path(path)
    colors = {"compression": "#4C72B0", "template": "#55A868", "pruning": "#8172B2",
              "output": "#C44E52", "cache": "#DD8452"}
    fig, (ax_cost, ax_tokens) = plt.subplots(1, 2, figsize=(11, 4.5))
    actual = float(summary.actual_cost_usd)
    ax_cost.bar(["baseline", "actual"], [0, actual], color="#999999", label="actual cost")
    ax_cost.bar(["baseline"], [actual], color="#999999")
    bottom = actual
    for layer in summary.by_layer:
        value = float(layer.cost_saved_usd)
        if value <= 0:
            continue
        ax_cost.bar(["baseline"], [value], bottom=[bottom], color=colors[layer.layer],
                    label=f"saved by {layer.layer}")
        bottom += value
    ax_cost.set_ylabel("USD")
    ax_cost.set_title("Cost: baseline vs actual")
    ax_cost.legend(fontsize=8)
    for x, value in ((0, float(summary.baseline_cost_usd)), (1, actual)):
        ax_cost.annotate(f"${value:,.4f}", (x, value), ha="center", va="bottom", fontsize=9)

    names = [layer.layer for layer in summary.by_layer]
    inputs = [layer.input_tokens_saved for layer in summary.by_layer]
    outputs = [layer.output_tokens_saved for layer in summary.by_layer]
    ax_tokens.barh(names, inputs, color="#4C72B0", label="input tokens saved")
    ax_tokens.barh(names, outputs, left=inputs, color="#C44E52", label="output tokens saved")
    ax_tokens.set_title("Tokens saved by layer")
    ax_tokens.set_xlabel("tokens")
    if names:
        ax_tokens.legend(fontsize=8)
    else:
        ax_tokens.text(0.5, 0.5, "no savings events recorded", ha="center", va="center",
                       transform=ax_tokens.transAxes)
    fig.suptitle(f"{summary.calls:,} calls · {summary.input_tokens:,} input / "
                 f"{summary.output_tokens:,} output tokens")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
