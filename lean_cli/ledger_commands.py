"""``lean-inference ledger ...``: ledger maintenance, and the time/duration flags ``report`` shares.

    lean-inference ledger prune --ledger PATH_OR_URL --older-than 30d [--max-records N]
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from lean_cli._argtypes import non_negative_int

__all__ = ["add_ledger_commands", "duration", "point_in_time"]

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s`` or ``2w``: a positive duration."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text)
    if match is None or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(
            f"expected a positive duration such as 30d, 12h, 90m, 45s or 2w, received {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def point_in_time(text: str) -> datetime:
    """An ISO date or date-time (UTC when it has no offset), or a duration ago (``7d``)."""
    try:
        return datetime.now(UTC) - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date/time (2026-01-31, 2026-01-31T12:00:00+00:00) or a duration ago (7d), "
            f"received {text!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _cmd_prune(args: argparse.Namespace) -> int:
    from lean_core.ledger import CostLedger
    from lean_core.ledger_store import RetentionPolicy

    policy = RetentionPolicy(older_than=args.older_than, max_records=args.max_records)
    with CostLedger(args.ledger) as ledger:
        result = ledger.prune(policy=policy)
    print(f"pruned {result.calls_pruned:,} calls, {result.savings_pruned:,} savings events and "
          f"{result.output_lengths_pruned:,} output lengths; {result.days_rolled_up:,} days added to the daily "
          "roll-ups (reports still count them)"
          + (f"; {result.damaged_rows_kept:,} damaged rows left in place" if result.damaged_rows_kept else ""))
    return 0


def add_ledger_commands(sub: Any) -> argparse.ArgumentParser:
    """Register ``ledger`` and its commands on the main parser's sub-commands."""
    parser: argparse.ArgumentParser = sub.add_parser("ledger", help="maintain a cost ledger (retention)")
    ledger = parser.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")
    prune = ledger.add_parser("prune", help="delete old records, keeping their totals as daily roll-ups")
    prune.add_argument("--ledger", required=True, help="ledger file or postgresql:// URL")
    prune.add_argument("--older-than", type=duration, default=None,
                       help="prune records older than this (30d, 12h, 2w, ...)")
    prune.add_argument("--max-records", type=non_negative_int, default=None,
                       help="keep at most this many of each kind of record, the newest")
    prune.set_defaults(func=_cmd_prune)
    return parser
