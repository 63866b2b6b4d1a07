"""Section 5 of ``vllm_gpu_bench.py``: random-weight ~1B llama shapes, full and pruned (speed only)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _vllm_bench_measure import measure_raw_vllm, measure_throughput, shutdown_and_wait
from _vllm_bench_results import BenchSettings, GpuBenchResult

__all__ = ["make_random_checkpoint", "run_random_1b"]


def make_random_checkpoint(out: Path, *, tokenizer_from: str, num_layers: int, hidden_size: int,
                           intermediate_size: int, num_heads: int, num_kv_heads: int, seed: int = 0) -> Path:
    """A llama-style checkpoint with random bfloat16 weights and ``tokenizer_from``'s tokenizer.

    For speed measurements only: throughput depends on shapes, not on what the weights say.
    """
    import shutil

    import torch
    from safetensors.torch import save_file

    source = Path(tokenizer_from)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    head_dim = hidden_size // num_heads
    config.update(num_hidden_layers=num_layers, hidden_size=hidden_size, intermediate_size=intermediate_size,
                  num_attention_heads=num_heads, num_key_value_heads=num_kv_heads, head_dim=head_dim,
                  torch_dtype="bfloat16", dtype="bfloat16", tie_word_embeddings=True)
    config.pop("layer_types", None)
    config.pop("quantization_config", None)
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * 0.02).to(torch.bfloat16)

    vocab = int(config["vocab_size"])
    tensors = {"model.embed_tokens.weight": rand(vocab, hidden_size),
               "model.norm.weight": torch.ones(hidden_size, dtype=torch.bfloat16)}
    for i in range(num_layers):
        p = f"model.layers.{i}."
        tensors |= {p + "self_attn.q_proj.weight": rand(num_heads * head_dim, hidden_size),
                    p + "self_attn.k_proj.weight": rand(num_kv_heads * head_dim, hidden_size),
                    p + "self_attn.v_proj.weight": rand(num_kv_heads * head_dim, hidden_size),
                    p + "self_attn.o_proj.weight": rand(hidden_size, num_heads * head_dim),
                    p + "mlp.gate_proj.weight": rand(intermediate_size, hidden_size),
                    p + "mlp.up_proj.weight": rand(intermediate_size, hidden_size),
                    p + "mlp.down_proj.weight": rand(hidden_size, intermediate_size),
                    p + "input_layernorm.weight": torch.ones(hidden_size, dtype=torch.bfloat16),
                    p + "post_attention_layernorm.weight": torch.ones(hidden_size, dtype=torch.bfloat16)}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    return out


def _random_checkpoint_in_child(out: Path, **options: Any) -> Path:
    """``make_random_checkpoint`` in a spawned process, so torch's CPU thread pool never runs in
    this one: on the H100 a raw ``vllm.LLM`` started after the checkpoint was made here hung
    twice in its engine process's worker start (a forked child inheriting a busy OpenMP pool is
    the likely cause; not yet confirmed on the GPU with this change)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return Path(pool.submit(make_random_checkpoint, out, **options).result())


def run_random_1b(settings: BenchSettings, result: GpuBenchResult, work: Path, advance: Callable[[str], None]) -> None:
    """Section 5 into ``result.random_1b``, filled engine by engine (a partial result is saved)."""
    # A Llama-3.2-1B-like body (2048 hidden, 16 layers, 32/8 heads, MLP 8192) on SmolLM2's
    # tokenizer; the pruned shape keeps the same fractions of layers and MLP channels as --pruned.
    full = {"num_layers": 16, "hidden_size": 2048, "intermediate_size": 8192, "num_heads": 32, "num_kv_heads": 8}
    base, pruned = result.base_shape or {}, result.pruned_shape
    layer_keep = pruned["num_layers"] / base["num_layers"] if pruned else 26 / 30
    mlp_keep = pruned["intermediate_size"] / base["intermediate_size"] if pruned else 1216 / 1536
    small = {**full, "num_layers": max(1, round(full["num_layers"] * layer_keep)),
             "intermediate_size": max(64, round(full["intermediate_size"] * mlp_keep / 64) * 64)}
    rows: dict[str, Any] = {"label": "random weights, speed only", "full_shape": full, "pruned_shape": small}
    result.random_1b = rows
    for key, shape in (("full", full), ("pruned", small)):
        directory = _random_checkpoint_in_child(work / f"random-1b-{key}", tokenizer_from=settings.model, **shape)
        vocab = int(json.loads((directory / "config.json").read_text(encoding="utf-8"))["vocab_size"])
        rows[f"{key}_params"] = _params(shape, vocab=vocab)
        ours, _ = measure_throughput(settings, str(directory), label=f"ChatLeanVLLM random-1b {key}")
        rows[key] = asdict(ours)
        shutdown_and_wait(settings)
        advance(f"random-1b {key}: ChatLeanVLLM done")
        # The engine alone too (same scheduler limits): our classes' per-request cost caps the
        # class figures, the raw ones show what the smaller shape itself is worth.
        raw, _, _ = measure_raw_vllm(settings, str(directory), label=f"raw vllm.LLM.generate random-1b {key}",
                                     scheduler=ours.scheduler or None)
        rows[f"{key}_raw"] = asdict(raw)
        advance(f"random-1b {key}: raw vLLM done")
    rows["ratio_pruned_vs_full"] = rows["pruned"]["tokens_per_s"] / rows["full"]["tokens_per_s"]
    rows["ratio_pruned_vs_full_raw"] = rows["pruned_raw"]["tokens_per_s"] / rows["full_raw"]["tokens_per_s"]


def _params(shape: dict[str, int], *, vocab: int) -> int:
    h, m, heads, kv = shape["hidden_size"], shape["intermediate_size"], shape["num_heads"], shape["num_kv_heads"]
    d = h // heads
    layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * m + 2 * h
    return vocab * h + shape["num_layers"] * layer + h
