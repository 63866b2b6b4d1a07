"""Importance scores from one pass over calibration text, and the choice of what survives.

* **Layers**: the mean angular distance ``arccos(cos(x_in, x_out)) / pi`` between a decoder layer's
  input and output hidden states, per token (Gromov et al. 2024, "The Unreasonable Ineffectiveness
  of the Deeper Layers"; ShortGPT's block influence is ``1 - cos``). A layer that barely turns the
  residual stream changes the model least when removed.
* **MLP channels**: the mean magnitude of channel ``j``'s contribution to the residual stream,
  ``E|act(gate_j x) * up_j x| * ||W_down[:, j]||`` (activation times weight, as in Wanda/FLAP).
* **Attention heads**: the mean norm of head ``h``'s output after the output projection,
  ``E||W_o[:, h] o_h||``, measured on the input of ``o_proj``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .surgery import PrunedIndices

__all__ = ["ImportanceScores", "choose_indices", "score_model"]


@dataclass(frozen=True, slots=True)
class ImportanceScores:
    """Scores of the original model (higher = more important), per layer."""

    layer_angular_distance: tuple[float, ...]
    mlp_channels: tuple[tuple[float, ...], ...] | None
    heads: tuple[tuple[float, ...], ...] | None
    tokens: int
    """Calibration tokens the scores were measured on."""

    def layers_by_importance(self) -> list[int]:
        """Layer indices, least important (smallest angular distance) first."""
        return sorted(range(len(self.layer_angular_distance)), key=lambda i: self.layer_angular_distance[i])


def _hidden(value: Any) -> Any:
    return value[0] if isinstance(value, tuple | list) else value


def score_model(model: Any, token_ids: Sequence[int], *, seq_len: int = 256, max_tokens: int = 8192,
                mlp: bool = True, heads: bool = True, batch_size: int = 4,
                show_progress: bool = False) -> ImportanceScores:
    """Run ``model`` (a transformers causal LM) over calibration windows and score its parts."""
    import torch
    from tqdm.auto import tqdm

    layers = model.model.layers
    config = model.config
    n_heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // n_heads)
    device = next(model.parameters()).device
    windows = min(len(token_ids) // seq_len, max(1, max_tokens // seq_len))
    ids = torch.tensor(list(token_ids[: windows * seq_len]), dtype=torch.long).view(windows, seq_len)

    angular = torch.zeros(len(layers), dtype=torch.float64)
    channel = [torch.zeros(layer.mlp.down_proj.in_features, dtype=torch.float64) for layer in layers] if mlp else None
    head = [torch.zeros(n_heads, dtype=torch.float64) for _ in layers] if heads else None
    seen = 0
    handles = []

    def layer_hook(index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
            x_in = (args[0] if args else kwargs["hidden_states"]).float()
            x_out = _hidden(output).float()
            cos = torch.nn.functional.cosine_similarity(x_in, x_out, dim=-1).clamp(-1.0, 1.0)
            angular[index] += (torch.arccos(cos) / math.pi).sum().double().cpu()
        return hook

    def down_hook(index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            act = args[0].float().abs().reshape(-1, args[0].shape[-1]).sum(0)
            assert channel is not None  # registered only when scoring channels
            channel[index] += (act * module.weight.float().norm(dim=0)).double().cpu()
        return hook

    def o_hook(index: int) -> Any:
        def hook(module: Any, args: tuple[Any, ...]) -> None:
            x = args[0].float().reshape(-1, n_heads, head_dim)              # tokens, heads, head_dim
            w = module.weight.float().view(module.out_features, n_heads, head_dim)
            out = torch.einsum("thd,ohd->tho", x, w)                         # each head's output
            assert head is not None
            head[index] += out.norm(dim=-1).sum(0).double().cpu()
        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(layer_hook(i), with_kwargs=True))
        if mlp:
            handles.append(layer.mlp.down_proj.register_forward_pre_hook(down_hook(i)))
        if heads:
            handles.append(layer.self_attn.o_proj.register_forward_pre_hook(o_hook(i)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in tqdm(range(0, windows, batch_size), desc="scoring", disable=not show_progress):
                batch = ids[start:start + batch_size].to(device)
                model(input_ids=batch, use_cache=False)
                seen += batch.numel()
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return ImportanceScores(
        layer_angular_distance=tuple(float(v) / seen for v in angular),
        mlp_channels=None if channel is None else tuple(tuple((c / seen).tolist()) for c in channel),
        heads=None if head is None else tuple(tuple((h / seen).tolist()) for h in head),
        tokens=seen,
    )


def choose_indices(scores: ImportanceScores, *, num_layers: int, drop_layers: int = 0,
                   layers: Sequence[int] | None = None, mlp_size: int | None = None,
                   heads_per_group: int | None = None, num_kv_heads: int = 1) -> PrunedIndices:
    """What survives: layers not dropped, then per kept layer its top channels and heads.

    Heads are ranked inside each KV group, so every group keeps ``heads_per_group`` heads.
    """
    dropped = set(layers) if layers is not None else set(scores.layers_by_importance()[:drop_layers])
    kept = tuple(i for i in range(num_layers) if i not in dropped)
    channels = None
    if mlp_size is not None:
        if scores.mlp_channels is None:
            raise ValueError("MLP scores were not measured")
        channels = tuple(tuple(sorted(_top(scores.mlp_channels[i], mlp_size))) for i in kept)
    kept_heads = None
    if heads_per_group is not None:
        if scores.heads is None:
            raise ValueError("head scores were not measured")
        rows = []
        for i in kept:
            per_layer = scores.heads[i]
            group = len(per_layer) // num_kv_heads
            row: list[int] = []
            for g in range(num_kv_heads):
                members = range(g * group, (g + 1) * group)
                row.extend(g * group + j for j in sorted(_top([per_layer[m] for m in members], heads_per_group)))
            rows.append(tuple(row))
        kept_heads = tuple(rows)
    return PrunedIndices(kept_layers=kept, mlp_channels=channels, heads=kept_heads)


def _top(values: Sequence[float], k: int) -> list[int]:
    return sorted(range(len(values)), key=lambda i: values[i], reverse=True)[:k]
