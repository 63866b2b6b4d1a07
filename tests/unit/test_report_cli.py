"""``lean-inference report`` prints the table and writes the PNG chart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lean_cli import main
from lean_core import CostLedger, TokenUsage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _recorded_ledger(path: Path) -> Path:
    with CostLedger(path) as ledger:
        ledger.record_call(model="gpt-4o", provider="openai",
                           usage=TokenUsage(input_tokens=5_000, cached_input_tokens=2_048, output_tokens=400),
                           tenant="acme")
        ledger.record_call(model="claude-3-5-haiku-latest", provider="anthropic",
                           usage=TokenUsage(input_tokens=3_000, output_tokens=250), tenant="beta")
        ledger.record_call(model="in-house-model", usage=TokenUsage(input_tokens=10, source="estimate"))
        ledger.record_savings(layer="compression", model="gpt-4o", provider="openai",
                              input_tokens_before=15_000, input_tokens_after=5_000)
        ledger.record_savings(layer="cache", model="gpt-4o", provider="openai",
                              input_tokens_before=5_000, output_tokens_before=400, cache_hit=True)
    return path


def test_report_command_prints_table_and_writes_png(tmp_path: Path) -> None:
    ledger = _recorded_ledger(tmp_path / "ledger.sqlite3")
    png = tmp_path / "chart.png"
    out = subprocess.run(
        [sys.executable, "-m", "lean_cli", "report", "--ledger", str(ledger), "--png", str(png),
         "--json", str(tmp_path / "l.json"), "--csv", str(tmp_path / "l.csv")],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    for expected in ("gpt-4o", "claude-3-5-haiku-latest", "in-house-model", "unpriced", "compression",
                     "cache", "1/1", "baseline", "estimated"):
        assert expected in out.stdout, expected
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    assert len(json.loads((tmp_path / "l.json").read_text())["calls"]) == 3
    assert (tmp_path / "l.csv").read_text().count("\n") == 6


def test_report_filters_by_tenant(tmp_path: Path, capsys: object) -> None:
    ledger = _recorded_ledger(tmp_path / "ledger.sqlite3")
    assert main(["report", "--ledger", str(ledger), "--tenant", "beta", "--png", str(tmp_path / "b.png")]) == 0
    text = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "claude-3-5-haiku-latest" in text and "gpt-4o " not in text


def test_report_on_missing_or_corrupt_ledger_fails_clearly(tmp_path: Path, capsys: object) -> None:
    assert main(["report", "--ledger", str(tmp_path / "nope.sqlite3")]) == 2
    assert "no ledger at" in capsys.readouterr().err  # type: ignore[attr-defined]
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"not a database" * 100)
    assert main(["report", "--ledger", str(bad)]) == 2
    assert "left untouched" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_count_command_prices_a_prompt_file(tmp_path: Path, capsys: object) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "What is the capital of France?", "answer": "Paris."}\n'
                       '{"system": "Be brief.", "prompt": "Name a color."}\n')
    assert main(["count", str(prompts), "--model", "gpt-4", "--model", "gpt-4o-mini"]) == 0
    text = capsys.readouterr().out  # type: ignore[attr-defined]
    assert "gpt-4" in text and "gpt-4o-mini" in text and "$" in text


def test_count_command_rejects_a_bad_file(tmp_path: Path, capsys: object) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"no_prompt": 1}\n')
    assert main(["count", str(prompts)]) == 2
    assert "line 1" in capsys.readouterr().err  # type: ignore[attr-defined]
