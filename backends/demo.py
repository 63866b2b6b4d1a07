"""The foundation demo: a real workload through the local model, every call in the ledger.

Until the five-layer pipeline lands, ``lean-inference demo`` runs this: the bundled SmolLM2
answers the shipped prompt workload on CPU, each call is recorded in a fresh demo ledger with the
engine's exact token counts and latency, the same workload is priced at reference API models
(genai-prices), and the ledger report is printed and drawn as a PNG.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lean_core.ledger import CostLedger
from lean_core.report import LedgerSummary, render_table, write_chart
from lean_core.usage import TokenUsage
from lean_core.workload import (
    PromptItem,
    WorkloadQuote,
    builtin_prompts_path,
    load_prompts,
    price_workload,
)

__all__ = ["DemoResult", "run_demo"]

LOCAL_MODEL_NAME = "smollm2-135m-instruct"


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced, for tests and callers."""

    answers: list[PromptItem]
    quotes: list[WorkloadQuote]
    summary: LedgerSummary
    ledger_path: Path
    chart_path: Path
    answers_path: Path


def run_demo(
    *,
    out_dir: str | os.PathLike[str] = "lean-demo",
    prompts_path: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    max_new_tokens: int = 48,
    show_progress: bool = True,
) -> DemoResult:
    """Run the demo workload and write ledger, answers and chart under ``out_dir``."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from lean_backends.local_generation import LocalGreedyModel
    from lean_core.assets import smollm2_dir

    console = Console(quiet=not show_progress, width=max(Console().width, 110))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = load_prompts(prompts_path or builtin_prompts_path())
    if limit is not None:
        items = items[:limit]

    model_dir = smollm2_dir(show_progress=show_progress)
    ledger_path = out / "ledger.sqlite3"
    for suffix in ("", "-wal", "-shm"):  # the demo's own ledger starts fresh on every run
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)

    model = LocalGreedyModel(model_dir)
    answered: list[PromptItem] = []
    with CostLedger(ledger_path) as ledger, Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, disable=not show_progress,
    ) as progress:
        task = progress.add_task("SmolLM2 answering the workload", total=len(items))
        for item in items:
            messages = ([{"role": "system", "content": item.system}] if item.system else []) + [
                {"role": "user", "content": item.prompt}
            ]
            answer = model.answer(messages, max_new_tokens=max_new_tokens)
            # The local engine's own counts are exact: it is the provider here.
            ledger.record_call(
                model=LOCAL_MODEL_NAME, provider="local",
                usage=TokenUsage(input_tokens=answer.prompt_tokens,
                                 output_tokens=answer.completion_tokens, source="provider"),
                latency_s=answer.seconds, tags=("demo", item.id or ""),
            )
            answered.append(item.model_copy(update={"answer": answer.text}))
            progress.advance(task)
        summary = ledger.summary()
        ledger.export_json(out / "ledger.json")

    answers_path = out / "answers.jsonl"
    answers_path.write_text("".join(json.dumps(a.model_dump(exclude_none=True)) + "\n" for a in answered))
    quotes = price_workload(answered)
    chart_path = write_chart(summary, out / "ledger.png")

    console.out(render_table(summary, title="demo ledger (local SmolLM2 calls: exact counts, no API price)"))
    table = Table(title="the same workload (prompts + SmolLM2's answers) at API prices")
    for name in ("model", "input tokens", "output tokens", "cost", "$ / 1M tokens", "counts"):
        table.add_column(name, justify="left" if name in ("model", "counts") else "right")
    for q in quotes:
        table.add_row(q.model, f"{q.input_tokens:,}", f"{q.output_tokens:,}",
                      "unpriced" if q.cost_usd is None else f"${q.cost_usd:.6f}",
                      "-" if q.cost_per_million_tokens_usd is None else f"${q.cost_per_million_tokens_usd:.3f}",
                      "estimated" if q.estimated else "exact")
    console.print(table)
    for item in answered[:3]:
        console.print(f"[dim]{item.id}[/dim] {item.prompt.splitlines()[-1][:70]} -> {item.answer}")
    console.print(f"ledger: {ledger_path}  chart: {chart_path}  answers: {answers_path}")
    return DemoResult(answers=answered, quotes=quotes, summary=summary, ledger_path=ledger_path,
                      chart_path=chart_path, answers_path=answers_path)
