"""``lean-inference budget ...``: fit the output-length predictor, or refresh it from a ledger.

    lean-inference budget fit --data FILE [--data FILE ...] [--rows ROWS.jsonl] [--out FILE.json]
    lean-inference budget refresh --ledger PATH --model NAME [--predictor FILE.json] --out FILE.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["add_budget_commands"]

# The predictor shipped inside lean_core (its default); `budget fit` rewrites it unless --out says otherwise.
_BUNDLED = Path(str(resources.files("lean_core") / "data" / "length_predictor_smollm2.json"))


def _cmd_fit(args: argparse.Namespace) -> int:
    from lean_benchmarks.budget_bench import collect_lengths, fit_from_rows

    rows = collect_lengths(args.data, limit=args.limit, max_tokens=args.max_tokens, rows_path=args.rows)
    predictor = fit_from_rows(rows, quantile=args.quantile)
    predictor.save(args.out)
    print(f"fitted on {len(rows)} answers; wrote {args.out}")
    return 0


def _cmd_refresh(args: argparse.Namespace) -> int:
    from lean_core.budget import LengthPredictor, default_predictor
    from lean_core.ledger import CostLedger

    predictor = LengthPredictor.load(args.predictor) if args.predictor else default_predictor()
    with CostLedger(args.ledger, read_only=True) as ledger:
        history = ledger.output_lengths(model=args.model)
    refreshed = predictor.refreshed(history, min_records=args.min_records)
    if refreshed is predictor:
        print(f"only {len(history)} length records for {args.model!r} (need {args.min_records}); nothing written")
        return 1
    refreshed.save(args.out)
    print(f"refitted with {len(history)} ledger records for {args.model!r} (margin {refreshed.margin:.2f}); "
          f"wrote {args.out}")
    return 0


def add_budget_commands(sub: Any, positive_int: Callable[[str], int]) -> None:
    """Register ``budget fit`` and ``budget refresh`` on the CLI's top-level sub-parsers."""
    budget = sub.add_parser("budget", help="fit or refresh the output-length predictor")
    budget_sub = budget.add_subparsers(dest="budget_command", required=True, metavar="COMMAND")
    fit = budget_sub.add_parser("fit", help="fit the length predictor on the local model's answers (slow on CPU)")
    fit.add_argument("--data", action="append", required=True,
                     help="query file (repeatable): NQ-open, GSM8K, ShareGPT prompts, MS MARCO queries")
    fit.add_argument("--limit", type=positive_int, default=200, help="queries per file, from its fit half")
    fit.add_argument("--max-tokens", type=positive_int, default=1024, help="generous budget while collecting")
    fit.add_argument("--quantile", type=float, default=0.95, help="budget quantile in [0.5, 1)")
    fit.add_argument("--rows", default=None,
                     help="keep the collected lengths (JSONL) here; a rerun resumes from this file")
    fit.add_argument("--out", default=str(_BUNDLED), help="predictor JSON output path")
    fit.set_defaults(func=_cmd_fit)
    refresh = budget_sub.add_parser("refresh", help="refit a predictor with a ledger's real output lengths")
    refresh.add_argument("--ledger", required=True, help="ledger file written by LeanBudget / LeanBudgetLLM")
    refresh.add_argument("--model", required=True, help="model name as recorded in the ledger")
    refresh.add_argument("--predictor", default=None, help="predictor to start from (default: the bundled one)")
    refresh.add_argument("--min-records", type=positive_int, default=20, help="least history needed")
    refresh.add_argument("--out", required=True, help="refreshed predictor JSON output path")
    refresh.set_defaults(func=_cmd_refresh)
