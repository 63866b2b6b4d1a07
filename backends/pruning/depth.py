"""Depth pruning: remove whole decoder layers from a state dict and its config, renumbering the rest.

Pure torch and the standard library (no lean_core, no pydantic): ``benchmarks/gpu/heal_pruned.py``
rebuilds a pruned model from the teacher's weights with this module on a GPU image that lacks
pydantic. Inputs are validated by ``spec.PruningPlan`` before they get here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = ["drop_layers"]

_LAYER_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?layers\.)(?P<index>\d+)(?P<rest>\..*)$")


def drop_layers(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                *, kept_layers: Sequence[int]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Keep only ``kept_layers`` (original indices, ascending), renumbered 0..n-1.

    Returns a new state dict (tensors shared, not copied) and a new config dict with
    ``num_hidden_layers`` and any per-layer list (``layer_types`` in qwen2/qwen3) cut to match.
    """
    kept = sorted(kept_layers)
    total = int(config["num_hidden_layers"])
    if not kept or len(set(kept)) != len(kept) or kept[0] < 0 or kept[-1] >= total:
        raise ValueError(f"kept_layers must be distinct indices in 0..{total - 1}, got {list(kept_layers)}")
    renumber = {old: new for new, old in enumerate(kept)}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            out[key] = tensor
            continue
        old = int(match["index"])
        if old in renumber:
            out[f"{match['prefix']}{renumber[old]}{match['rest']}"] = tensor
    new_config = dict(config)
    new_config["num_hidden_layers"] = len(kept)
    # Per-layer settings must stay aligned with the layers that remain (transformers checks the
    # length of layer_types against num_hidden_layers).
    if isinstance(config.get("layer_types"), list):
        new_config["layer_types"] = [config["layer_types"][i] for i in kept]
    if "max_window_layers" in config and config["max_window_layers"] is not None:
        new_config["max_window_layers"] = sum(1 for i in kept if i < int(config["max_window_layers"]))
    return out, new_config
