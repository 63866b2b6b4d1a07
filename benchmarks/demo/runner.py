"""``lean-inference demo``: the five layers on the built-in workload, measured, offline.

The bundled SmolLM2 answers a question stream about a small knowledge base (both shipped with the
project, written for it) through retrieval-augmented prompts: first the un-optimised baseline,
then with the layers added one by one (template, compression, output budget, cache). For each row
the demo prints tokens in/out, cache hits, the cost per million tokens at a reference API price
(genai-prices), the row's wall-clock seconds on the local engine (16 requests in flight, in
stream order) and answer accuracy against the gold answers, and writes a
PNG report, the rows as JSON, every answer, and a ledger with per-layer attribution.

The engine serves in bfloat16 where the CPU computes it natively (AMX / AVX512-BF16), about 2.5x
faster than float32 there. Every row runs at the same dtype, so the rows stay comparable; the
library's own default stays float32 on CPU, whose greedy text matches transformers exactly
(bfloat16 flips SmolLM2's near-tied first tokens on some prompts).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lean_benchmarks.demo.study import (
    LayerStudy,
    StudyItem,
    StudyRow,
    cumulative_settings,
    run_layer_study,
)
from lean_benchmarks.demo.workload import (
    DEFAULT_PASSAGES,
    DEFAULT_QUESTIONS,
    KnowledgeDoc,
    StreamQuestion,
    answer_is_correct,
    load_demo_kb,
    load_demo_questions,
)
from lean_core.errors import InvalidParameterError
from lean_core.ledger import CostLedger
from lean_core.pipeline import PipelineSettings

__all__ = ["AGREEMENT_NOTE", "DemoResult", "cost_change_label", "run_demo", "study_table", "write_study_chart"]

# Requests in flight at once on the local engine; with output piped, a progress line per batch.
_CONCURRENCY = 16
_PIPED_BATCH = _CONCURRENCY


@dataclass(frozen=True)
class DemoResult:
    """What the demo produced, for tests and callers."""

    study: LayerStudy
    questions: list[StreamQuestion]
    ledger_path: Path
    report_path: Path
    rows_path: Path
    answers_path: Path


def _retrieve(kb: list[KnowledgeDoc], questions: list[StreamQuestion], k: int) -> list[tuple[str, ...]]:
    """Top-``k`` documents per question by MiniLM cosine similarity (the retriever is not a layer
    under test: every row gets the same passages)."""
    import numpy as np

    from lean_core.embeddings import default_embedder

    embedder = default_embedder()
    docs = np.asarray(embedder.encode([f"{d.title}\n{d.text}" for d in kb]))
    queries = np.asarray(embedder.encode([q.question for q in questions]))
    order = np.argsort(-(queries @ docs.T), axis=1)[:, :k]
    return [tuple(f"{kb[j].title}\n{kb[j].text}" for j in row) for row in order]


def _fastest_dtype() -> Literal["auto", "bfloat16"]:
    from lean_core._hardware import cpu_has_native_bf16

    return "bfloat16" if cpu_has_native_bf16() else "auto"


def cost_change_label(row: StudyRow, *, baseline: bool = False) -> str:
    """A row's cost against the baseline row, signed the same way in the table and the chart:
    "-71%" is 71 % cheaper, "+4%" is 4 % dearer; whole percent, so a tiny change reads "0%"."""
    if baseline:
        return "baseline"
    change = round(-row.cost_reduction * 100)
    return f"{change:+d}%" if change else "0%"


AGREEMENT_NOTE = ("agree: share of questions this row gets right, or wrong, exactly as the baseline does "
                  "(same verdict on the same question)")


def write_study_chart(study: LayerStudy, path: Path, *, title: str) -> Path:
    """Cost per million tokens and accuracy per row, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = study.rows
    names = [r.name for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.5 * len(rows) + 2.6), sharey=True)
    costs = [r.cost_per_mtok for r in rows]
    bars = left.barh(names, costs, color=["#999999"] + ["#4C72B0"] * (len(rows) - 1))
    for i, (bar, row) in enumerate(zip(bars, rows, strict=True)):
        label = f" ${row.cost_per_mtok:.2f}  ({cost_change_label(row, baseline=i == 0)})"
        left.annotate(label, (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8)
    # Room to the right of the longest bar for its label, so no label runs off the axes.
    left.set_xlim(0, max(costs, default=1.0) * 1.45 or 1.0)
    left.set_title(f"cost per 1M baseline tokens at {study.price_model} prices (change vs baseline)", fontsize=9)
    left.invert_yaxis()
    right.barh(names, [r.accuracy * 100 for r in rows], color="#55A868")
    for y, row in enumerate(rows):
        right.annotate(f" {row.accuracy:.0%} (agree {row.agreement:.0%})", (row.accuracy * 100, y), va="center",
                       fontsize=8)
    right.set_xlim(0, 140)
    right.set_xticks([0, 20, 40, 60, 80, 100])
    right.set_title("answers containing a gold answer (%)", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.text(0.5, 0.01, AGREEMENT_NOTE, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(*, out_dir: str | os.PathLike[str] = "lean-demo", kb_path: str | os.PathLike[str] | None = None,
             questions_path: str | os.PathLike[str] | None = None,
             limit: int | Literal["all"] | None = None, passages: int = DEFAULT_PASSAGES,
             settings: PipelineSettings | None = None, model: str | None = None,
             dtype: Literal["auto", "float32", "bfloat16"] | None = None,
             show_progress: bool = True) -> DemoResult:
    """Run the layer study on the built-in workload and write its report under ``out_dir``.

    ``limit``: ask the stream's first N questions, or ``"all"``; None asks the first
    ``DEFAULT_QUESTIONS`` of the built-in stream and all of a ``questions_path`` file.
    ``passages``: documents retrieved per question (>= 1).

    ``dtype``: the engine's weights dtype; None picks bfloat16 where the CPU computes it natively
    and the engine's own ``auto`` elsewhere (float32 on CPU, the checkpoint's on GPU).
    """
    if isinstance(passages, bool) or not isinstance(passages, int) or passages < 1:
        raise InvalidParameterError("passages", allowed="a whole number >= 1", received=passages)
    whole = isinstance(limit, int) and not isinstance(limit, bool)
    if not (limit is None or limit == "all" or (whole and limit >= 1)):
        raise InvalidParameterError("limit", allowed="a whole number >= 1, 'all' or None", received=limit)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from lean_backends.pipeline_model import EngineModel
    from lean_core.assets import smollm2_dir

    # The demo's output is its progress and table; vLLM's start-up log (100+ lines, among them a
    # warning per weight cast to bfloat16) would bury them. VLLM_LOGGING_LEVEL=INFO brings it back.
    # The others silence the MiniLM load bar, torch's NUMA-binding note and a deprecation warning
    # in vLLM's worker process; each is only a default, so a user's own setting wins.
    for name, value in (("VLLM_LOGGING_LEVEL", "ERROR"), ("HF_HUB_DISABLE_PROGRESS_BARS", "1"),
                        ("TORCH_CPP_LOG_LEVEL", "ERROR"), ("PYTHONWARNINGS", "ignore::FutureWarning")):
        os.environ.setdefault(name, value)
    console = Console(quiet=not show_progress, width=max(Console().width, 150))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kb = load_demo_kb(kb_path)
    if limit is None:
        limit = DEFAULT_QUESTIONS if questions_path is None else "all"
    questions = load_demo_questions(questions_path, limit=None if limit == "all" else limit)
    model_dir = model or str(smollm2_dir(show_progress=show_progress))
    ledger_path = out / "ledger.sqlite3"
    for suffix in ("", "-wal", "-shm"):  # the demo's ledger starts fresh on every run
        Path(f"{ledger_path}{suffix}").unlink(missing_ok=True)
    if not console.is_terminal:  # the spinner below draws nothing without a terminal
        console.print(f"{len(questions)} questions: retrieving passages (MiniLM) and starting the local engine (vLLM)")
    with console.status("retrieving passages (MiniLM) and starting the local engine (vLLM)"):
        contexts = _retrieve(kb, questions, passages)
        engine_model = EngineModel.local(model_dir, dtype=dtype or _fastest_dtype())
        engine_model.engine.start()  # type: ignore[attr-defined]
    served_dtype = engine_model.engine.dtype  # type: ignore[attr-defined]
    items = [StudyItem(question=q.question, context=c, answers=q.answers, tenant=q.tenant)
             for q, c in zip(questions, contexts, strict=True)]
    rows = cumulative_settings(settings)
    with CostLedger(ledger_path) as ledger, Progress(
        TextColumn("[bold]{task.description:<22}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, disable=not show_progress,
    ) as progress:
        tasks = {name: progress.add_task(name, total=len(items)) for name, _ in rows}

        def advance(name: str, done: int, total: int) -> None:
            progress.update(tasks[name], completed=done)
            if not console.is_terminal and (done % _PIPED_BATCH == 0 or done == total):
                # Without a terminal rich draws no live bars: a line per finished batch instead.
                console.print(f"{name}: {done}/{total} requests done")

        study = run_layer_study(engine_model, items, rows=rows, is_correct=answer_is_correct, ledger=ledger,
                                cache_dir=out, progress=advance, concurrency=_CONCURRENCY)
        ledger.export_json(out / "ledger.json")
    rows_path = out / "rows.json"
    rows_path.write_text(json.dumps({**study.model_dump(exclude={"answers"}), "engine_dtype": served_dtype,
                                     "questions": len(items), "passages": passages}, indent=2))
    answers_path = out / "answers.jsonl"
    with answers_path.open("w") as f:
        for i, q in enumerate(questions):
            f.write(json.dumps({"id": q.id, "kind": q.kind, "tenant": q.tenant, "question": q.question,
                                "gold": q.answers, **{name: study.answers[name][i] for name, _ in rows}}) + "\n")
    report = write_study_chart(study, out / "report.png", title=(
        f"lean-inference demo: {len(items)} questions, {study.served_model} ({served_dtype}) on vLLM, "
        f"{passages} retrieved passages each"))
    console.print(study_table(study, title=f"the five layers, measured ({len(items)} questions, "
                                           f"{study.served_model} in {served_dtype} answering, "
                                           f"prices of {study.price_model})"))
    console.print(f"report: {report}  rows: {rows_path}  answers: {answers_path}  ledger: {ledger_path}")
    return DemoResult(study=study, questions=questions, ledger_path=ledger_path, report_path=report,
                      rows_path=rows_path, answers_path=answers_path)


def study_table(study: LayerStudy, *, title: str) -> Any:
    """The seeds' table as a rich Table."""
    from rich.table import Table

    table = Table(title=title, caption=AGREEMENT_NOTE)
    for name in ("configuration", "model calls", "cache hits", "tokens in", "tokens out", "$ / 1M tok",
                 "cost vs baseline", "wall s", "accuracy", "agree"):
        table.add_column(name, justify="left" if name == "configuration" else "right")
    for i, row in enumerate(study.rows):
        table.add_row(row.name, f"{row.model_calls}", f"{row.cache_hits} ({row.semantic_hits} sem.)",
                      f"{row.input_tokens:,}", f"{row.output_tokens:,}", f"${row.cost_per_mtok:.2f}",
                      cost_change_label(row, baseline=i == 0), f"{row.wall_seconds:.1f}", f"{row.accuracy:.0%}",
                      f"{row.agreement:.0%}")
    return table
