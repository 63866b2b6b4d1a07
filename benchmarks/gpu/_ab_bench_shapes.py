"""Model shapes for ``vllm_ab_bench.py``: config-only checkpoints that vLLM fills with dummy weights.

A shape's directory holds a Llama ``config.json`` and the tokenizer files of a real checkpoint
(the bundled SmolLM2's, vocabulary 49,152) and no weights: every engine, raw vLLM and our classes
alike, starts it with ``load_format="dummy"`` (our classes through their validated
``engine_kwargs``), so nothing is written, carried or downloaded, and an 8B shape costs no disk.
vLLM's dummy loader fills each tensor from a generator seeded with a fixed value (1234), so two
engines of one shape and dtype hold the same weights whatever their engine seeds (checked on the
CPU: greedy texts equal between raw vLLM and our classes). *Random weights: speed only.*

Pure Python (json, shutil): no torch in the bench's main process before its engines start.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

__all__ = ["DUMMY_LOAD", "SHAPES", "dummy_model_dir", "shape_params"]

DUMMY_LOAD = {"load_format": "dummy"}
"""The engine argument every engine of a shape directory starts with (raw and ours alike)."""

# name -> (full shape, pruned shape). The pruned shapes keep the fractions of the project's best
# SmolLM2 plan (d4-mlp1216: 26/30 layers, MLP 1216/1536), MLP rounded to a multiple of 64.
SHAPES: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    # Llama-3-8B body (32 layers, hidden 4096, 32/8 heads, MLP 14336) on SmolLM2's tokenizer,
    # tied embeddings: 7.18B parameters, 13.4 GiB in bf16; pruned 28 layers, MLP 11328: 5.27B (-27 %).
    "8b": ({"num_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_heads": 32, "num_kv_heads": 8},
           {"num_layers": 28, "hidden_size": 4096, "intermediate_size": 11328, "num_heads": 32, "num_kv_heads": 8}),
    # Llama-3.2-1B-like body: 1.07B parameters; pruned 0.80B (-25 %).
    "1b": ({"num_layers": 16, "hidden_size": 2048, "intermediate_size": 8192, "num_heads": 32, "num_kv_heads": 8},
           {"num_layers": 14, "hidden_size": 2048, "intermediate_size": 6464, "num_heads": 32, "num_kv_heads": 8}),
    # CPU checks.
    "tiny": ({"num_layers": 4, "hidden_size": 128, "intermediate_size": 512, "num_heads": 4, "num_kv_heads": 2},
             {"num_layers": 3, "hidden_size": 128, "intermediate_size": 384, "num_heads": 4, "num_kv_heads": 2}),
}

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                    "generation_config.json", "vocab.json", "merges.txt")


def shape_params(shape: dict[str, int], *, vocab: int) -> int:
    """Parameters of a Llama shape with tied embeddings (norms included)."""
    h, m, heads, kv = shape["hidden_size"], shape["intermediate_size"], shape["num_heads"], shape["num_kv_heads"]
    d = h // heads
    layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * m + 2 * h
    return vocab * h + shape["num_layers"] * layer + h


def _placeholder_safetensors(path: Path) -> None:
    """A two-byte safetensors file: our classes accept a directory only with ``*.safetensors``
    weights in it; the dummy loader never reads it (vLLM reads its header only for a dtype the
    config lacks, or an ``lm_head`` tensor, and finds neither)."""
    header = json.dumps({"__metadata__": {"format": "pt", "note": "placeholder; load_format=dummy"},
                         "lean_bench_placeholder": {"dtype": "BF16", "shape": [1], "data_offsets": [0, 2]}})
    raw = header.encode() + b" " * (-len(header) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x00\x00")


def dummy_model_dir(out: Path, shape: dict[str, int], *, tokenizer_from: str | Path,
                    dtype: str = "bfloat16") -> Path:
    """Write ``out``: ``tokenizer_from``'s config with ``shape`` applied, its tokenizer files and a
    placeholder weights file. Start engines on it with :data:`DUMMY_LOAD`."""
    source = Path(tokenizer_from)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise ValueError(f"{source}: a llama config is needed for its tokenizer's shape, got {config.get('model_type')}")
    config.update(num_hidden_layers=shape["num_layers"], hidden_size=shape["hidden_size"],
                  intermediate_size=shape["intermediate_size"], num_attention_heads=shape["num_heads"],
                  num_key_value_heads=shape["num_kv_heads"], head_dim=shape["hidden_size"] // shape["num_heads"],
                  torch_dtype=dtype, dtype=dtype, tie_word_embeddings=True)
    for key in ("layer_types", "quantization_config", "_model_name_or_path"):
        config.pop(key, None)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    for name in _TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    _placeholder_safetensors(out / "placeholder.safetensors")
    return out
