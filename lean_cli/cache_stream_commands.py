"""``lean-inference bench cache-stream`` and ``bench answer-equivalence``.

    lean-inference bench cache-stream --pairs ../shared/data/pairs/qqp_pairs.jsonl \\
        --pairs ../shared/data/pairs/mrpc_train.jsonl --pairs benchmarks/data/cache_adversarial_pairs.jsonl \\
        [--pairs-per-file N] [--delta 0.01 --delta 0.02 ...] [--seed 0] --out results/cache_stream_x.json
    lean-inference bench answer-equivalence [--pairs FILE] --out results/answer_equivalence.json

``cache-live`` puts the same cache in front of the bundled model on the demo workload and a
ShareGPT slice, answer equivalence deciding (:mod:`lean_benchmarks.cache_live`).

``cache-stream`` builds a labelled stream from pair files and replays it through the error-bounded
cache (one per δ), today's static verifier, a cosine threshold and GPTCache, side by side (see
:mod:`lean_benchmarks.cache_stream`). It is its own command rather than a ``bench cache`` flag:
its input is pair files, not a prompt stream, and its result has its own shape; ``bench cache``
keeps every flag and JSON field it had.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lean_cli._argtypes import bounded_float, non_negative_int, positive_int

__all__ = ["add_cache_stream_commands"]


_delta = bounded_float("an error rate", high=0.5)
_cosine = bounded_float("a cosine")


def _occurrences(text: str) -> tuple[int, int]:
    try:
        low, _, high = text.partition("-")
        bounds = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LEAST-MOST, e.g. 2-5, received {text!r}") from None
    if not 1 <= bounds[0] <= bounds[1] <= 100:
        raise argparse.ArgumentTypeError(f"expected 1 <= LEAST <= MOST <= 100, received {text!r}")
    return bounds


def _cmd_cache_stream(args: argparse.Namespace) -> int:
    from lean_benchmarks.cache_stream import (
        DEFAULT_DELTAS,
        STREAM_METHODS,
        build_labelled_stream,
        run_cache_stream_bench,
    )

    out = Path(args.out)
    pairs = args.pairs or []
    stream = None
    if args.write_stream:
        if not pairs:
            args.parser.error("--write-stream needs --pairs")
        stream = build_labelled_stream(pairs, split=args.split, pairs_per_file=args.pairs_per_file,
                                       occurrences=args.occurrences, seed=args.seed)
        stream.to_jsonl(args.write_stream)
        print(f"stream written: {args.write_stream} ({len(stream.prompts)} prompts)")
    result = run_cache_stream_bench(pairs, stream=stream, deltas=args.delta or DEFAULT_DELTAS,
                                    methods=args.method or STREAM_METHODS, split=args.split,
                                    pairs_per_file=args.pairs_per_file, occurrences=args.occurrences,
                                    seed=args.seed, threshold=args.threshold, out=out)
    sources = ", ".join(f"{s.dataset} ({s.split}, {s.pairs} pairs)" for s in result.sources)
    print(f"stream: {result.prompts} prompts, {result.distinct_prompts} distinct, {result.clusters} clusters from "
          f"{sources}; {result.semantic_opportunities} paraphrase arrivals")
    for r in result.rows:
        error = "n/a" if r.observed_error_rate is None else f"{r.observed_error_rate:.4f}"
        print(f"  {r.method:<17} hit rate {r.hit_rate:.3f} | duplicates served {r.semantic_correct:>5} | wrong "
              f"{r.semantic_wrong:>4} (error {error}, 95% upper {r.error_upper_95:.4f}) | explorations "
              f"{r.explorations:>5} | near-misses served {r.near_misses_served} (hard-veto "
              f"{r.hard_veto_near_misses_served})")
    print(f"targets: {result.targets}")
    print(f"written: {out} and {out.with_suffix('.png')} ({result.seconds:.0f} s)")
    return 0


def _cmd_answer_equivalence(args: argparse.Namespace) -> int:
    from lean_benchmarks.answer_equivalence_bench import run_answer_equivalence_bench

    rows = run_answer_equivalence_bench(args.pairs, out=Path(args.out))
    for r in rows:
        print(f"  {r.check:<17} false equivalences {r.false_equivalences}/{r.negatives} "
              f"({r.false_equivalence_rate:.3f}) | false differences {r.false_differences}/{r.positives} "
              f"({r.false_difference_rate:.3f}) | {r.mean_ms:.2f} ms a pair")
    print(f"written: {args.out}")
    return 0


def add_cache_stream_commands(bench: Any) -> None:
    """Register ``cache-stream``, ``answer-equivalence`` and ``cache-live`` on the ``bench`` sub-commands."""
    stream = bench.add_parser("cache-stream", help="labelled prompt stream: error-bounded cache per delta vs "
                              "static verifier, cosine threshold and GPTCache")
    stream.add_argument("--pairs", action="append", default=None,
                        help="labelled pairs, JSONL {text_a, text_b, label[, kind]} or STS CSV (repeatable; "
                             "default: the bundled adversarial pairs)")
    stream.add_argument("--split", choices=("held_out", "all"), default=None,
                        help="pairs to draw from (default: held_out for the calibration corpora, all for others)")
    stream.add_argument("--pairs-per-file", type=positive_int, default=None,
                        help="a seeded sample of N pairs per file (default: all)")
    stream.add_argument("--occurrences", type=_occurrences, default=(2, 5),
                        help="LEAST-MOST occurrences per cluster (default: 2-5)")
    stream.add_argument("--seed", type=non_negative_int, default=0, help="stream and exploration seed (default: 0)")
    stream.add_argument("--delta", action="append", type=_delta, default=None,
                        help="error budget of our cache (repeatable; default: 0.01, 0.02, 0.05)")
    stream.add_argument("--method", action="append", choices=("lean_static", "threshold", "gptcache"),
                        default=None, help="comparison method (repeatable; default: all three)")
    stream.add_argument("--threshold", type=_cosine, default=0.9,
                        help="cosine cut-off of the threshold method (default: 0.9)")
    stream.add_argument("--write-stream", default=None,
                        help="also write the built stream as JSONL {prompt, cluster, source, kind} (keep it "
                             "outside the project: it holds the datasets' text)")
    stream.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    stream.set_defaults(func=_cmd_cache_stream, parser=stream)

    equivalence = bench.add_parser("answer-equivalence",
                                   help="false-equivalence rate of each answer-equivalence check on labelled pairs")
    equivalence.add_argument("--pairs", default=None,
                             help="JSONL {cached, fresh, label[, kind]} (default: the bundled answer pairs)")
    equivalence.add_argument("--out", required=True, help="JSON output path")
    equivalence.set_defaults(func=_cmd_answer_equivalence, parser=equivalence)

    live = bench.add_parser("cache-live", help="the cache in front of the bundled model on the demo workload and "
                            "a ShareGPT slice; answer equivalence (not labels) decides")
    live.add_argument("--workload", action="append", choices=("demo", "sharegpt"), default=None,
                      help="stream to replay (repeatable; default: both)")
    live.add_argument("--sharegpt", default="../shared/data/queries/sharegpt_first_prompts.jsonl",
                      help="ShareGPT first prompts JSONL (default: ../shared/data/queries/sharegpt_first_prompts.jsonl)")
    live.add_argument("--size", type=positive_int, default=240, help="requests in the ShareGPT slice (default: 240)")
    live.add_argument("--demo-limit", type=positive_int, default=None,
                      help="first N demo questions (default: all)")
    live.add_argument("--delta", action="append", type=_delta, default=None,
                      help="error budget (repeatable; default: 0.02, 0.05)")
    live.add_argument("--seed", type=non_negative_int, default=0, help="slice and exploration seed (default: 0)")
    live.add_argument("--max-tokens", type=positive_int, default=64, help="greedy answer length cap (default: 64)")
    live.add_argument("--model", default=None, help="model directory (default: the bundled SmolLM2)")
    live.add_argument("--answers", default=None,
                      help="JSONL of model answers to reuse and extend (resumable; keep it outside the project)")
    live.add_argument("--out-dir", default="benchmarks/results",
                      help="writes cache_live_<workload>.json and .png there (default: benchmarks/results)")
    live.set_defaults(func=_cmd_cache_live, parser=live)


def _cmd_cache_live(args: argparse.Namespace) -> int:
    from lean_benchmarks.cache_live import DEFAULT_LIVE_DELTAS, LIVE_WORKLOADS, run_cache_live_bench

    results = run_cache_live_bench(args.workload or LIVE_WORKLOADS, out_dir=args.out_dir, sharegpt=args.sharegpt,
                                   size=args.size, demo_limit=args.demo_limit, deltas=args.delta or DEFAULT_LIVE_DELTAS,
                                   seed=args.seed, max_tokens=args.max_tokens, model=args.model,
                                   answers_file=args.answers)
    for result in results:
        print(f"{result.workload}: {result.requests} requests ({result.distinct_prompts} distinct), {result.model} "
              f"({result.engine_dtype}), greedy, max {result.max_tokens} tokens; {result.measurement}")
        for r in result.rows:
            error = "n/a" if r.observed_error_rate is None else f"{r.observed_error_rate:.3f}"
            print(f"  {r.method:<12} model calls {r.model_calls:>4} | hits {r.exact_hits:>3} exact, {r.semantic_hits:>3} "
                  f"semantic | explorations {r.explorations:>3} (agreed {r.exploration_agreements}) | semantic not "
                  f"equivalent {r.semantic_not_equivalent} (error {error}) | wall {r.wall_seconds:.1f} s")
        print(f"written: {Path(args.out_dir) / f'cache_live_{result.workload}.json'} (and .png)")
    return 0
