"""Depth and width surgery on tiny random models: pruning equals zeroing what was removed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from lean_backends.pruning.depth import drop_layers
from lean_backends.pruning.scoring import ImportanceScores, choose_indices, score_model
from lean_backends.pruning.surgery import PrunedIndices, apply_indices
from lean_backends.pruning.width import prune_attention_heads, prune_mlp_channels

ARCHITECTURES = ["llama", "mistral", "qwen2", "qwen3"]


def tiny_model(model_type: str, *, layers: int = 4) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    extra: dict[str, Any] = {"head_dim": 16} if model_type != "qwen2" else {}
    config = AutoConfig.for_model(model_type, vocab_size=128, hidden_size=96, intermediate_size=64,
                                  num_hidden_layers=layers, num_attention_heads=6, num_key_value_heads=2,
                                  max_position_embeddings=64, tie_word_embeddings=True, **extra)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init leaves norms at 1 and biases at 0; perturb them so mistakes in slicing show.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith(".bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def rebuild(model: Any, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Any:
    from transformers import AutoModelForCausalLM

    cfg = type(model.config).from_dict({k: v for k, v in config.items() if k != "transformers_version"})
    pruned = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = pruned.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    pruned.tie_weights()
    return pruned.eval()


def logits(model: Any) -> torch.Tensor:
    ids = torch.arange(1, 25).view(2, 12) % 128
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits  # type: ignore[no-any-return]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_mlp_pruning_equals_zeroing_the_removed_channels(model_type: str) -> None:
    model = tiny_model(model_type)
    keep = [sorted(torch.randperm(64)[:40].tolist()) for _ in range(4)]
    state, config = prune_mlp_channels(model.state_dict(), model.config.to_dict(), channels=keep)
    pruned = rebuild(model, state, config)
    assert pruned.config.intermediate_size == 40
    with torch.no_grad():
        for layer, kept in zip(model.model.layers, keep, strict=True):
            mask = torch.ones(64, dtype=torch.bool)
            mask[kept] = False
            layer.mlp.down_proj.weight[:, mask] = 0.0
    torch.testing.assert_close(logits(pruned), logits(model), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_head_pruning_equals_zeroing_the_removed_heads(model_type: str) -> None:
    model = tiny_model(model_type)
    head_dim = int(getattr(model.config, "head_dim", None) or 96 // 6)
    keep = [[0, 2, 4, 5], [1, 2, 3, 5], [0, 1, 3, 4], [0, 2, 3, 4]]  # 2 of each 3-head group
    state, config = prune_attention_heads(model.state_dict(), model.config.to_dict(), heads=keep)
    pruned = rebuild(model, state, config)
    assert (pruned.config.num_attention_heads, pruned.config.num_key_value_heads) == (4, 2)
    assert pruned.config.head_dim == head_dim
    with torch.no_grad():
        for layer, kept in zip(model.model.layers, keep, strict=True):
            for h in set(range(6)) - set(kept):
                layer.self_attn.o_proj.weight[:, h * head_dim:(h + 1) * head_dim] = 0.0
    torch.testing.assert_close(logits(pruned), logits(model), atol=1e-5, rtol=1e-4)


def test_heads_must_be_kept_evenly_per_kv_group() -> None:
    model = tiny_model("llama")
    with pytest.raises(ValueError, match="each KV group"):
        prune_attention_heads(model.state_dict(), model.config.to_dict(), heads=[[0, 1, 2, 3]] * 4)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_depth_pruning_equals_skipping_the_layers(model_type: str) -> None:
    model = tiny_model(model_type)
    state, config = drop_layers(model.state_dict(), model.config.to_dict(), kept_layers=[0, 3])
    pruned = rebuild(model, state, config)
    assert pruned.config.num_hidden_layers == 2
    if model_type == "qwen2":
        assert len(pruned.config.layer_types) == 2
    model.model.layers = torch.nn.ModuleList([model.model.layers[0], model.model.layers[3]])
    model.config.num_hidden_layers = 2
    torch.testing.assert_close(logits(pruned), logits(model), atol=1e-5, rtol=1e-4)


def test_indices_round_trip_through_json_and_apply_in_order() -> None:
    model = tiny_model("llama")
    indices = PrunedIndices(kept_layers=(1, 2), mlp_channels=(tuple(range(32)), tuple(range(32, 64))),
                            heads=((0, 1, 3, 4), (1, 2, 4, 5)))
    assert PrunedIndices.from_json(indices.to_json()) == indices
    state, config = apply_indices(model.state_dict(), model.config.to_dict(), indices)
    assert (config["num_hidden_layers"], config["intermediate_size"], config["num_attention_heads"]) == (2, 32, 4)
    assert state["model.layers.1.mlp.down_proj.weight"].shape == (96, 32)
    assert torch.equal(state["model.layers.0.mlp.up_proj.weight"], model.model.layers[1].mlp.up_proj.weight[:32])


def test_scores_rank_layers_and_choose_heads_inside_groups() -> None:
    model = tiny_model("llama")
    scores = score_model(model, list(range(1, 120)), seq_len=16, max_tokens=64)
    assert len(scores.layer_angular_distance) == 4 and scores.tokens == 64
    assert all(0.0 <= d <= 1.0 for d in scores.layer_angular_distance)
    assert scores.mlp_channels is not None and len(scores.mlp_channels[0]) == 64
    fixed = ImportanceScores(layer_angular_distance=(0.3, 0.1, 0.2, 0.4), tokens=1,
                             mlp_channels=tuple((0.0,) * 60 + (1.0, 2.0, 3.0, 4.0) for _ in range(4)),
                             heads=tuple((1.0, 3.0, 2.0, 9.0, 8.0, 7.0) for _ in range(4)))
    chosen = choose_indices(fixed, num_layers=4, drop_layers=2, mlp_size=2, heads_per_group=1, num_kv_heads=2)
    assert chosen.kept_layers == (0, 3)
    assert chosen.mlp_channels == ((62, 63), (62, 63))
    assert chosen.heads == ((1, 3), (1, 3))
    assert choose_indices(fixed, num_layers=4, layers=[0]).kept_layers == (1, 2, 3)
