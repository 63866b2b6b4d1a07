"""The agent benchmark's readable outputs: a text table for the terminal and a PNG chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["format_agent_table", "write_agent_chart"]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def format_agent_table(result: dict[str, Any]) -> str:
    """Per-configuration rows (means per task) and the targets with pass/fail, as plain text."""
    keys = [f"{r['provider']}:{r['model']}" for r in result["price_references"]]
    header = (f"{'configuration':<14} {'input tok':>9} {'cached':>7} {'cached>=2':>9} {'output':>7} {'calls':>5} "
              + " ".join(f"{'$/task ' + k.split(':')[1]:>24}" for k in keys)
              + f" {'retention':>9} {'vs plain':>8} {'wall s':>7}")
    lines = [f"agent bench: {result['tasks']} tasks ({result['search_tasks']} search, {result['calculator_tasks']} "
             f"calculator), {result['tool_steps']} tool steps + 1 answer each, {result['served_model']} on vllm serve "
             f"(CPU); {result['tool_choice']}", header, "-" * len(header)]
    for s in result["summaries"]:
        costs = " ".join(
            f"{s['cost_per_task_usd'][k] * 100:>12.4f}c ({-s['cost_reduction_vs_plain'].get(k, 0.0):+.0%})".rjust(24)
            for k in keys)
        lines.append(f"{s['configuration']:<14} {s['input_tokens_per_task']:>9,.0f} {s['cached_share']:>7.0%} "
                     f"{s['cached_share_from_second_step']:>9.0%} {s['output_tokens_per_task']:>7.0f} "
                     f"{s['model_calls_per_task']:>5.1f} {costs} {s['answer_retention']:>9.0%} "
                     f"{_pct(s['answer_retention_vs_plain']):>8} {s['seconds_per_task']:>7.1f}")
    lines.append("")
    lines.append("targets (each configuration vs plain):")
    for t in result["targets"]:
        measured = "n/a" if t["measured"] is None else f"{t['measured']:.2f}"
        lines.append(f"  {'PASS' if t['passed'] else 'FAIL'}  {t['configuration']:<14} {t['target']}: {measured} "
                     f"(needs {t['threshold']:.2f})")
    present, missing = result["lean_middleware_present"], result["lean_middleware_missing"]
    lines.append(f"lean middleware present: {', '.join(present) or 'none'}"
                 + (f"; missing: {', '.join(missing)}" if missing else ""))
    return "\n".join(lines)


def write_agent_chart(result: dict[str, Any], path: Path) -> None:
    """Three panels: prompt tokens per task (cached / not), cost per task at both prices, and
    cache share from step 2 with answer retention, each against its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = result["summaries"]
    names = [s["configuration"] for s in summaries]
    keys = [f"{r['provider']}:{r['model']}" for r in result["price_references"]]
    x = range(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))

    ax = axes[0]
    cached = [s["cached_input_tokens_per_task"] for s in summaries]
    fresh = [s["input_tokens_per_task"] - c for s, c in zip(summaries, cached, strict=True)]
    ax.bar(x, fresh, color="#d62728", label="not cached")
    ax.bar(x, cached, bottom=fresh, color="#2ca02c", label="served from the prefix cache")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("prompt tokens per task")
    ax.set_title("Prompt tokens per task (all model calls)")
    ax.legend(fontsize=8)

    ax = axes[1]
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        base = summaries[0]["cost_per_task_usd"][key] or 1.0
        values = [s["cost_per_task_usd"][key] / base for s in summaries]
        bars = ax.bar([i + (k - (len(keys) - 1) / 2) * width for i in x], values, width, label=key.split(":")[1])
        for bar, s in zip(bars, summaries, strict=True):
            ax.annotate(f"{s['cost_per_task_usd'][key] * 100:.3f}c", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=7)
    ax.axhline(0.3, color="black", linestyle="--", linewidth=1, label="target: 70% below plain")
    ax.set_xticks(list(x), names)
    ax.set_ylim(0, max(1.0, *(s["cost_per_task_usd"][k] / (summaries[0]["cost_per_task_usd"][k] or 1.0)
                              for s in summaries for k in keys)) * 1.35)
    ax.set_ylabel(f"cost per task relative to {names[0]}")
    ax.set_title("Cost per task at list prices (labels: US cents)")
    ax.legend(fontsize=8, loc="upper left", ncol=2)

    ax = axes[2]
    share = [s["cached_share_from_second_step"] for s in summaries]
    retention = [s["answer_retention_vs_plain"] or 0.0 for s in summaries]
    ax.bar([i - 0.2 for i in x], share, 0.4, color="#1f77b4", label="prefix-cache share, step 2 on")
    ax.bar([i + 0.2 for i in x], retention, 0.4, color="#ff7f0e", label="answer retention vs plain")
    ax.axhline(0.7, color="#1f77b4", linestyle="--", linewidth=1, label="cache target 0.7")
    ax.axhline(0.95, color="#ff7f0e", linestyle=":", linewidth=1, label="retention target 0.95")
    ax.set_xticks(list(x), names)
    ax.set_ylim(0, 1.45)
    ax.set_title("Prefix-cache share and answer retention")
    ax.legend(fontsize=7, loc="upper left", ncol=2)

    fig.suptitle(f"bench agent: {result['tasks']} tasks ({result['search_tasks']} NQ search, "
                 f"{result['calculator_tasks']} GSM8K calculator), {result['tool_steps']} tool steps + answer, "
                 f"scripted tool choice; {result['served_model']} on vllm serve (CPU), "
                 f"{result['date']}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
