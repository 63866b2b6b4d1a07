"""What a pruning keeps, index by index, and how to apply it to a state dict and config.

``PrunedIndices`` is what ``pruning.json`` records under ``"kept"``: with it and the original
weights anyone can rebuild the pruned model exactly (the GPU healing script does, so that no
pruned checkpoint has to travel). Pure torch and the standard library, like ``depth``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .depth import drop_layers
from .width import prune_attention_heads, prune_mlp_channels

__all__ = ["PrunedIndices", "apply_indices"]


@dataclass(frozen=True, slots=True)
class PrunedIndices:
    """Original indices of what survives: layers, then per kept layer its MLP channels and heads."""

    kept_layers: tuple[int, ...]
    """Original layer indices, ascending."""
    mlp_channels: tuple[tuple[int, ...], ...] | None = None
    """Per kept layer, the kept intermediate channels (None: MLPs untouched)."""
    heads: tuple[tuple[int, ...], ...] | None = None
    """Per kept layer, the kept query heads (None: attention untouched)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PrunedIndices:
        def nested(value: Any) -> tuple[tuple[int, ...], ...] | None:
            return None if value is None else tuple(tuple(int(i) for i in row) for row in value)

        return cls(kept_layers=tuple(int(i) for i in data["kept_layers"]),
                   mlp_channels=nested(data.get("mlp_channels")), heads=nested(data.get("heads")))


def apply_indices(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                  indices: PrunedIndices) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Depth first (so the per-layer lists line up with the kept layers), then MLP, then heads."""
    sd, cfg = drop_layers(state_dict, config, kept_layers=indices.kept_layers)
    if indices.mlp_channels is not None:
        sd, cfg = prune_mlp_channels(sd, cfg, channels=indices.mlp_channels)
    if indices.heads is not None:
        sd, cfg = prune_attention_heads(sd, cfg, heads=indices.heads)
    return sd, cfg
