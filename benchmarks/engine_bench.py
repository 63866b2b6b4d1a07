"""``lean-inference bench engine``: ChatLeanVLLM against raw ``vllm.LLM.generate``, side by side.

Both engines get identical settings (dtype, eager mode, block size, seed) with prefix caching off,
so each round sends the very same prompts to both and the greedy texts can be compared one to
one. Rounds alternate raw / wrapper so drift on a noisy machine hits both sides alike.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["EngineBenchResult", "run_engine_bench"]

TOPICS = ["a lighthouse", "a desert caravan", "a chess club", "a night train", "a bakery", "a glacier",
          "a school robot", "an old map", "a jazz band", "a rainy market", "a lost kite", "a moon base",
          "a river ferry", "a quiet library", "a mountain hut", "a street painter"]


@dataclass
class RoundResult:
    round: int
    raw_seconds: float
    raw_completion_tokens: int
    wrapper_seconds: float
    wrapper_completion_tokens: int
    identical_texts: int


@dataclass
class EngineBenchResult:
    benchmark: str
    model: str
    device: str
    vllm_version: str
    prompts: int
    max_tokens: int
    rounds: list[RoundResult] = field(default_factory=list)
    raw_vllm_tokens_per_s: float = 0.0
    wrapper_tokens_per_s: float = 0.0
    overhead_ratio: float = 0.0
    """1 - wrapper/raw throughput: 0.03 means the wrapper delivers 3 % fewer tokens per second."""
    greedy_identical_share: float = 0.0
    prompt_tokens_raw: int = 0
    prompt_tokens_wrapper: int = 0
    date: str = ""


def _prompts(n: int, round_index: int) -> list[str]:
    return [f"Write three sentences about {TOPICS[i % len(TOPICS)]} (story {round_index}-{i})."
            for i in range(n)]


def run_engine_bench(*, prompts: int = 256, max_tokens: int = 64, rounds: int = 2,
                     model: str | None = None, out: Path | None = None,
                     chart: Path | None = None, show_progress: bool = True) -> EngineBenchResult:
    from langchain_core.language_models import LanguageModelInput
    from vllm import LLM, SamplingParams
    from vllm import __version__ as vllm_version
    from vllm.platforms import current_platform

    from lean_backends.vllm_engine import resolve_model_dir
    from lean_benchmarks.progress import bench_progress
    from lean_benchmarks.vllm_cpu_shutdown import shorten_cpu_worker_shutdown
    from lean_chain import ChatLeanVLLM

    shorten_cpu_worker_shutdown()  # before any engine starts
    model_dir = str(resolve_model_dir(model))
    on_cpu = current_platform.is_cpu()
    wrapper = ChatLeanVLLM(model=model_dir, max_tokens=max_tokens, enable_prefix_caching=False)
    engine_args: dict[str, Any] = dict(model=model_dir, dtype="float32" if on_cpu else "auto",
                                       enforce_eager=on_cpu, enable_prefix_caching=False, seed=0)
    if on_cpu:
        engine_args["block_size"] = 32  # what the wrapper's engine uses on CPU
    result = EngineBenchResult(
        benchmark="engine", model=model_dir, vllm_version=vllm_version, prompts=prompts, max_tokens=max_tokens,
        device=f"{'cpu' if on_cpu else current_platform.get_device_name()} ({platform.processor() or platform.machine()})",
        date=time.strftime("%Y-%m-%d"),
    )
    with bench_progress(show=show_progress) as progress:
        task = progress.add_task("starting engines", total=2 * rounds + 2)
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)

        def start_raw() -> Any:
            llm = LLM(**engine_args)
            llm.generate(["warm up"], params, use_tqdm=False)
            return llm

        if on_cpu:
            # On CPU an engine's start is mostly two spawned processes importing vLLM and torch,
            # one core at a time: both engines start at once so the other core helps (on a busy
            # 2-core machine: both ready in 44 s instead of 52 s). Not on a GPU, where each engine
            # sizes its KV cache from the memory free when it starts. Nothing is timed until both
            # are up.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(2, thread_name_prefix="engine-bench-start") as pool:
                wrapper_started = pool.submit(wrapper.invoke, "warm up")  # starts the wrapper's engine
                raw_started = pool.submit(start_raw)
                wrapper_started.result()
                progress.advance(task)
                raw = raw_started.result()
        else:
            wrapper.invoke("warm up")  # starts the wrapper's engine
            progress.advance(task)
            raw = start_raw()
        tokenizer = raw.get_tokenizer()
        progress.advance(task)
        for r in range(rounds):
            batch = _prompts(prompts, r)
            rendered = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                                      add_generation_prompt=True) for p in batch]
            progress.update(task, description=f"round {r + 1}: raw vllm.LLM.generate")
            started = time.perf_counter()
            raw_out = raw.generate(rendered, params, use_tqdm=False)
            raw_s = time.perf_counter() - started
            progress.advance(task)
            progress.update(task, description=f"round {r + 1}: ChatLeanVLLM.batch")
            started = time.perf_counter()
            ours = wrapper.batch(list[LanguageModelInput](batch))
            ours_s = time.perf_counter() - started
            progress.advance(task)
            result.prompt_tokens_raw += sum(len(o.prompt_token_ids or []) for o in raw_out)
            result.prompt_tokens_wrapper += sum(int(m.usage_metadata["input_tokens"]) for m in ours  # type: ignore[index]
                                                if m.usage_metadata)
            result.rounds.append(RoundResult(
                round=r, raw_seconds=raw_s, raw_completion_tokens=sum(len(o.outputs[0].token_ids) for o in raw_out),
                wrapper_seconds=ours_s,
                wrapper_completion_tokens=sum(int(m.usage_metadata["output_tokens"]) for m in ours  # type: ignore[index]
                                              if m.usage_metadata),
                identical_texts=sum(o.outputs[0].text == m.content for o, m in zip(raw_out, ours, strict=True)),
            ))
    result.raw_vllm_tokens_per_s = statistics.fmean(x.raw_completion_tokens / x.raw_seconds for x in result.rounds)
    result.wrapper_tokens_per_s = statistics.fmean(
        x.wrapper_completion_tokens / x.wrapper_seconds for x in result.rounds)
    result.overhead_ratio = 1.0 - result.wrapper_tokens_per_s / result.raw_vllm_tokens_per_s
    result.greedy_identical_share = sum(x.identical_texts for x in result.rounds) / (prompts * rounds)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2))
    if chart is not None:
        _chart(result, chart)
    return result


def _chart(result: EngineBenchResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = [result.raw_vllm_tokens_per_s, result.wrapper_tokens_per_s]
    ax.bar(["raw vllm.LLM.generate", "ChatLeanVLLM.batch"], values, color=["#999999", "#4C72B0"])
    for x, v in enumerate(values):
        ax.annotate(f"{v:,.0f} tok/s", (x, v), ha="center", va="bottom")
    ax.set_ylabel("completion tokens / s")
    ax.set_ylim(0, max(values) * 1.18)
    ax.set_title(f"{result.prompts} prompts x {result.max_tokens} tokens on {result.device}\n"
                 f"overhead {result.overhead_ratio:+.1%}, identical greedy text {result.greedy_identical_share:.0%}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
