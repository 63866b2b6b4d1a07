"""A process that writes ledger records as fast as it can until it is killed (for kill tests)."""

from __future__ import annotations

import sys

from lean_core import CostLedger, TokenUsage


def main(path: str) -> None:
    ledger = CostLedger(path)
    i = 0
    while True:
        ledger.record_call(model="gpt-4o-mini", provider="openai",
                           usage=TokenUsage(input_tokens=100 + i % 50, output_tokens=10), tenant="w")
        if i % 3 == 0:
            ledger.record_savings(layer="compression", model="gpt-4o-mini", provider="openai",
                                  input_tokens_before=400, input_tokens_after=100)
        i += 1
        if i == 50:
            print("ready", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
