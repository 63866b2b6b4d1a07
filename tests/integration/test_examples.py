"""Every example in examples/ runs offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_ledger_with_langchain_example(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "ledger_with_langchain.py"), "--ledger", str(tmp_path / "l.sqlite3"),
         "--png", str(tmp_path / "l.png")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "30 days" in out.stdout  # the local model answers from the policy in its prompt
    assert "smollm2-135m-instruct" in out.stdout and "lean-vllm" in out.stdout
    assert (tmp_path / "l.png").read_bytes()[:4] == b"\x89PNG"


def test_template_and_budget_example(tmp_path: Path, smollm2_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "template_and_budget_chain.py"), "--ledger", str(tmp_path / "l.sqlite3")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("\nA: ") + out.stdout.startswith("Q:") >= 3
    # the lean template's stable part is served from the prefix cache after the first question
    cached = int(out.stdout.split("prefix cache: ")[1].split(" ")[0])
    assert cached > 0
    for layer in ("template", "output"):
        assert f"│ {layer}" in out.stdout or f"{layer} " in out.stdout
