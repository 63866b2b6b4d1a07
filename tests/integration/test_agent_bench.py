"""`lean-inference bench agent --tasks 1` end to end: real vllm serve, real ChatOpenAI, create_agent.

One task, run by each of the three configurations in turn: every run after the first asks the
same first prompt again, so "the first step finds nothing cached" proves the per-run prefix-cache
reset, and the runs share the summarizer log that each run clears. A second task (it was
``--tasks 2``) repeated those paths for ~40 s more of decoding on this 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
NQ = DATA / "qa" / "nq_open_oracle.jsonl"
GSM8K = DATA / "math" / "gsm8k_test.jsonl"


@pytest.mark.skipif(not (NQ.is_file() and GSM8K.is_file()), reason="../shared/data not present")
def test_bench_agent_cli_one_task(tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    done = subprocess.run(
        [sys.executable, "-m", "lean_cli", "bench", "agent", "--data", str(NQ), "--data", str(GSM8K),
         "--tasks", "1", "--tool-steps", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    # progress lines per step reach a pipe, then the table with pass/fail lines
    assert "step 3 (none)" in done.stdout and "vllm serve ready" in done.stdout
    assert "targets (each configuration vs plain):" in done.stdout
    assert ("PASS" in done.stdout) or ("FAIL" in done.stdout)

    assert (result["tasks"], result["search_tasks"], result["tool_steps"]) == (1, 1, 2)
    assert result["prefix_cache_reset_per_run"] is True
    names = [c["name"] for c in result["configurations"]]
    assert names == ["plain", "summarization", "lean"]
    assert len(result["runs"]) == len(names)
    for run in result["runs"]:
        agent_steps = [c for c in run["calls"] if c["step"] is not None]
        # the script: two forced search calls, then the answer; the server reports usage for each.
        # LeanBudgetMiddleware may ask once more for the rest of a cut answer: a fourth call.
        steps = [c["step"] for c in agent_steps]
        assert steps[:3] == [0, 1, 2] and len(steps) <= (4 if run["configuration"] == "lean" else 3)
        assert run["tool_steps_done"] == 2
        assert all(c["input_tokens"] > 0 and 0 <= c["cached_input_tokens"] <= c["input_tokens"] for c in run["calls"])
        # the prefix cache is emptied before each run: the first step finds nothing cached
        assert agent_steps[0]["cached_input_tokens"] == 0
    plain = {r["task_id"]: r for r in result["runs"] if r["configuration"] == "plain"}
    for run in plain.values():
        steps = [c for c in run["calls"] if c["step"] is not None]
        # an append-only history: each step re-reads the previous prompt from the server's cache
        assert steps[2]["cached_input_tokens"] >= steps[1]["input_tokens"] - 32 > 0
        assert steps[2]["input_tokens"] > steps[1]["input_tokens"] > steps[0]["input_tokens"]
        # plain keeps every passage, so the gold answer is in its last-step context
        assert run["answer_in_last_step_context"] is True
    by_name = {s["configuration"]: s for s in result["summaries"]}
    assert by_name["plain"]["answer_retention"] == 1.0
    for summary in by_name.values():
        assert set(summary["cost_per_task_usd"]) == {"openai:gpt-4o", "anthropic:claude-sonnet-4-5"}
        assert all(v > 0 for v in summary["cost_per_task_usd"].values())
    summarization_calls = [c for r in result["runs"] if r["configuration"] == "summarization" for c in r["calls"]]
    assert any(c["step"] is None for c in summarization_calls), "the summarizer never fired"
    assert {t["configuration"] for t in result["targets"]} == {"summarization", "lean"}
