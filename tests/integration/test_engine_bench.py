"""`lean-inference bench engine` runs end to end on a tiny workload and writes its JSON and PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_bench_engine_command(tmp_path: Path, smollm2_path: Path) -> None:
    out = tmp_path / "engine.json"
    proc = subprocess.run(
        [sys.executable, "-m", "lean_cli", "bench", "engine", "--prompts", "6", "--max-tokens", "8",
         "--rounds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    for key in ("wrapper_tokens_per_s", "raw_vllm_tokens_per_s", "overhead_ratio", "greedy_identical_share"):
        assert isinstance(data[key], float), key
    assert data["raw_vllm_tokens_per_s"] > 0 and data["wrapper_tokens_per_s"] > 0
    assert data["prompt_tokens_raw"] == data["prompt_tokens_wrapper"]  # same prompts reached both engines
    assert data["greedy_identical_share"] == 1.0
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
