"""The foundation demo (what `make demo` runs) on a reduced workload."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_command_runs_end_to_end(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lean_core.cli", "demo", "--out", str(tmp_path), "--limit", "3",
         "--max-new-tokens", "16"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "smollm2-135m-instruct" in out.stdout and "gpt-4o" in out.stdout
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 3 and all(a["answer"] for a in answers)
    ledger = json.loads((tmp_path / "ledger.json").read_text())
    assert len(ledger["calls"]) == 3
    assert all(c["usage"]["input_tokens"] > 0 and c["latency_s"] > 0 for c in ledger["calls"])
    assert (tmp_path / "ledger.png").read_bytes()[:4] == b"\x89PNG"
