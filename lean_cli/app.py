"""The lean-inference command line: the main parser and the commands on ledgers, prompts and assets.

    lean-inference demo      run the main job offline (see README)
    lean-inference report    print a ledger's summary table and write its PNG chart
    lean-inference count     count and price a prompt file at reference API models
    lean-inference assets    prepare and show the bundled offline models
    lean-inference bench     run a benchmark (engine, compression, cache, budget, template, prune, pipeline)
    lean-inference cache     calibrate the semantic-hit verifier, rebuild or inspect a cache file
    lean-inference budget    fit the output-length predictor, or refresh it from a ledger
    lean-inference prune     prune a checkpoint that stock vLLM loads
    lean-inference ledger    maintain a cost ledger (prune old records into daily roll-ups)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from lean_cli._argtypes import positive_int as _positive_int
from lean_cli.bench_commands import add_bench_commands
from lean_cli.budget_commands import add_budget_commands
from lean_cli.cache_commands import add_cache_commands
from lean_cli.ledger_commands import add_ledger_commands, point_in_time
from lean_cli.prune_commands import add_prune_commands
from lean_core.errors import LeanInferenceError
from lean_core.ledger_records import LAYERS

__all__ = ["build_parser", "main"]

_DESCRIPTION = ("Cut what LLM inference costs (tokens, dollars, GPU time) without cutting answer quality: "
                "run the offline demo, read a cost ledger, count and price prompts, run the benchmarks, "
                "calibrate caches, fit output budgets and prune checkpoints.")


def _cmd_report(args: argparse.Namespace) -> int:
    """A read-only report: damaged rows are skipped and counted (in the table and the JSON export);
    a file that cannot be read at all is a LedgerCorruptError, printed as one line by ``main``."""
    from lean_core.ledger import CostLedger
    from lean_core.report import render_table, write_chart

    # An empty --ledger is refused by CostLedger, not silently replaced by the default ledger; None
    # is the default (LEAN_INFERENCE_LEDGER, which may be a postgresql:// URL, or the user data dir).
    source = args.ledger
    filters = {"tenant": args.tenant, "since": args.since, "until": args.until, "layer": args.layer}
    with CostLedger(source, read_only=True) as ledger:
        summary = ledger.summary(skip_bad_rows=True, **filters)
        where = ledger.path if ledger.path is not None else ledger.store.location
        print(render_table(summary, title=f"cost ledger {where}"))
        png = Path(args.png) if args.png else ledger.path.with_suffix(".png") if ledger.path is not None \
            else Path("ledger-report.png")
        try:
            write_chart(summary, png)
            print(f"chart written to {png}")
            if args.json:
                print(f"JSON written to {ledger.export_json(args.json, skip_bad_rows=True, **filters)}")
            if args.csv:
                print(f"CSV written to {ledger.export_csv(args.csv, **filters)}")
        except OSError as exc:
            print(f"lean-inference report: could not write an output file: {exc}", file=sys.stderr)
            return 1
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
    from lean_benchmarks.demo.runner import run_demo
    from lean_core.pipeline import PipelineSettings

    settings = PipelineSettings.from_file(args.settings) if args.settings else None
    run_demo(out_dir=args.out, kb_path=args.kb, questions_path=args.questions, limit=args.limit,
             passages=args.passages, settings=settings, model=args.model, dtype=args.dtype)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from lean_benchmarks.demo.workload import DEFAULT_PASSAGES, DEFAULT_QUESTIONS

    parser = argparse.ArgumentParser(prog="lean-inference", description=_DESCRIPTION)
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
    report.add_argument("--ledger", default=None, help="ledger file or postgresql:// URL "
                        "(default: LEAN_INFERENCE_LEDGER or the user data dir)")
    report.add_argument("--png", default=None, help="chart path (default: next to the ledger, .png)")
    report.add_argument("--json", default=None, help="also export every record as JSON")
    report.add_argument("--csv", default=None, help="also export every record as CSV")
    report.add_argument("--tenant", default=None, help="only this tenant's records")
    report.add_argument("--since", type=point_in_time, default=None,
                        help="only records at or after this time: ISO date/time (UTC unless it has an offset) "
                             "or a duration ago (7d)")
    report.add_argument("--until", type=point_in_time, default=None, help="only records before this time")
    report.add_argument("--layer", choices=LAYERS, default=None, help="only this layer's savings events")
    report.set_defaults(func=_cmd_report)

    count = sub.add_parser("count", help="count and price a prompt file")
    count.add_argument("prompts", help='JSON Lines file of {"prompt": ..., "system": ..., "answer": ...}')
    count.add_argument("--model", action="append", default=None,
                       help="model name (repeatable; default: gpt-4o, gpt-4o-mini, claude-3-5-haiku, gemini-2.0-flash)")
    count.set_defaults(func=_cmd_count)

    add_bench_commands(sub)

    assets = sub.add_parser("assets", help="prepare (once) and show the bundled offline models")
    assets.set_defaults(func=_cmd_assets)
    add_cache_commands(sub)
    add_budget_commands(sub, _positive_int)
    add_prune_commands(sub)
    add_ledger_commands(sub)
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
