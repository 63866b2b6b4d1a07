"""Width pruning with uniform shapes: the same MLP size and heads per KV group in every layer.

Per-layer shapes (LLM-Pruner, FLAP) need custom modelling code; uniform widths keep a standard
config that stock vLLM and transformers load. Which channels/heads survive is chosen per layer.

Pure torch and the standard library, like ``depth`` (see there why).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["prune_attention_heads", "prune_mlp_channels"]

_LAYER = re.compile(r"^(?:.*\.)?layers\.(?P<index>\d+)\.(?P<module>.+)$")


def _layer_of(key: str) -> tuple[int, str] | None:
    match = _LAYER.match(key)
    return None if match is None else (int(match["index"]), match["module"])


def prune_mlp_channels(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                       *, channels: Sequence[Sequence[int]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Keep ``channels[layer]`` (ascending indices, the same count in every layer) of each MLP.

    gate/up projections lose rows, the down projection loses columns; ``intermediate_size``
    becomes the common count.
    """
    layers = int(config["num_hidden_layers"])
    if len(channels) != layers or len({len(c) for c in channels}) != 1:
        raise ValueError("channels needs one index list per layer, all of the same length")
    index = [torch.as_tensor(sorted(c), dtype=torch.long) for c in channels]
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        where = _layer_of(key)
        if where is not None and where[1].startswith("mlp."):
            layer, module = where
            if module in ("mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias"):
                tensor = tensor.index_select(0, index[layer]).contiguous()
            elif module == "mlp.down_proj.weight":
                tensor = tensor.index_select(1, index[layer]).contiguous()
        out[key] = tensor
    new_config = dict(config)
    new_config["intermediate_size"] = len(channels[0])
    return out, new_config


def prune_attention_heads(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                          *, heads: Sequence[Sequence[int]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Keep query heads ``heads[layer]`` (original head indices), the same number per KV group.

    Query head ``h`` reads KV head ``h // (heads // kv_heads)``; after pruning to ``m`` heads per
    group, new head ``h'`` reads KV head ``h' // m``. So each layer's list must hold exactly ``m``
    heads of every group, listed group by group: then the order is right by construction. Key and
    value projections are untouched. ``head_dim`` is written explicitly, because
    ``hidden_size // num_attention_heads`` is no longer the head size (576 // 6 = 96, not 64).
    """
    n_heads = int(config["num_attention_heads"])
    kv_heads = int(config.get("num_key_value_heads") or n_heads)
    head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // n_heads)
    group = n_heads // kv_heads
    layers = int(config["num_hidden_layers"])
    if len(heads) != layers or len({len(h) for h in heads}) != 1 or len(heads[0]) % kv_heads:
        raise ValueError("heads needs one list per layer, all of the same length, a multiple of the KV heads")
    per_group = len(heads[0]) // kv_heads
    rows: list[torch.Tensor] = []
    for kept in heads:
        ordered = sorted(kept)
        if [h // group for h in ordered] != [g for g in range(kv_heads) for _ in range(per_group)]:
            raise ValueError(f"each KV group must keep exactly {per_group} heads, got {list(kept)}")
        rows.append(torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in ordered]))
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        where = _layer_of(key)
        if where is not None:
            layer, module = where
            if module in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                tensor = tensor.index_select(0, rows[layer]).contiguous()
            elif module == "self_attn.o_proj.weight":
                tensor = tensor.index_select(1, rows[layer]).contiguous()
        out[key] = tensor
    new_config = dict(config)
    new_config["num_attention_heads"] = per_group * kv_heads
    new_config["num_key_value_heads"] = kv_heads
    new_config["head_dim"] = head_dim
    return out, new_config
