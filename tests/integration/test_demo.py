"""The five-layer demo (what `make demo` runs) on a reduced workload, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_command_runs_end_to_end(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lean_cli", "demo", "--out", str(tmp_path), "--limit", "24"],
        capture_output=True, text=True, timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for row in ("baseline", "+ template", "+ compression", "+ output budget", "+ cache (all layers)"):
        assert row in out.stdout
    rows = json.loads((tmp_path / "rows.json").read_text())["rows"]
    base, best = rows[0], rows[-1]
    assert [r["requests"] for r in rows] == [24] * 5
    assert base["cache_hits"] == 0 and best["cache_hits"] > 0  # the stream's repeats are served
    assert rows[2]["input_tokens"] < rows[1]["input_tokens"] < base["input_tokens"]  # template, then compression
    assert rows[3]["output_tokens"] < rows[2]["output_tokens"]  # output budget
    assert best["cost_per_mtok"] < base["cost_per_mtok"] and 0 < best["cost_reduction"] < 1
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 24 and all(a["baseline"] for a in answers)
    # Tenant isolation on a real stream: a question first asked by another tenant is a miss.
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert {e["layer"] for e in ledger["savings"]} >= {"cache", "compression", "template", "output"}
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    # The output is the table, not vLLM's start-up log, and the engine shuts down without the
    # "Exception ignored in AsyncLLM.__del__" traceback it printed at interpreter exit.
    from lean_core._hardware import cpu_has_native_bf16

    assert f"smollm2-135m-instruct in {'bfloat16' if cpu_has_native_bf16() else 'float32'}" in out.stdout
    assert "Exception ignored" not in out.stderr and " INFO " not in out.stderr, out.stderr[-3000:]
    # Nor the MiniLM load bar, torch's NUMA-binding note or the worker's deprecation warnings.
    for noise in ("Loading weights", "NUMA binding", "FutureWarning"):
        assert noise not in out.stderr, out.stderr[-3000:]
