"""What to prune: a typed plan, checked against the model's shape before any work is done.

Supported architectures are the dense decoder families whose modelling code in stock vLLM and
transformers reads every pruned dimension from the config (``num_hidden_layers``,
``intermediate_size``, ``num_attention_heads`` with an explicit ``head_dim``): llama, mistral,
qwen2 and qwen3. Others (MoE, multimodal, parallel-block or fused-QKV layouts) are refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lean_core.errors import InvalidParameterError

__all__ = ["SUPPORTED_ARCHITECTURES", "ModelShape", "PruningPlan", "UnsupportedArchitectureError",
           "parse_layer_list", "read_model_shape"]

SUPPORTED_ARCHITECTURES: Mapping[str, str] = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
}
"""model_type -> the causal-LM class the pruned checkpoint keeps."""


class UnsupportedArchitectureError(InvalidParameterError):
    """The checkpoint's architecture cannot be pruned into a shape stock vLLM loads."""

    def __init__(self, received: str) -> None:
        super().__init__("model architecture", allowed="model_type one of " + ", ".join(SUPPORTED_ARCHITECTURES),
                         received=received)


@dataclass(frozen=True, slots=True)
class ModelShape:
    """The dimensions pruning touches, read from a checkpoint's config.json."""

    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tied_embeddings: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelShape:
        model_type = str(config.get("model_type"))
        if model_type not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedArchitectureError(model_type)
        architectures = config.get("architectures") or [SUPPORTED_ARCHITECTURES[model_type]]
        if list(architectures) != [SUPPORTED_ARCHITECTURES[model_type]]:
            raise UnsupportedArchitectureError(f"{model_type} with architectures {architectures}")
        heads = int(config["num_attention_heads"])
        return cls(
            model_type=model_type, num_layers=int(config["num_hidden_layers"]),
            hidden_size=int(config["hidden_size"]), intermediate_size=int(config["intermediate_size"]),
            num_heads=heads, num_kv_heads=int(config.get("num_key_value_heads") or heads),
            head_dim=int(config.get("head_dim") or int(config["hidden_size"]) // heads),
            tied_embeddings=bool(config.get("tie_word_embeddings", False)),
        )

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_kv_heads


def read_model_shape(model_dir: str | Path) -> ModelShape:
    """Read and check ``config.json`` of a local checkpoint directory."""
    path = Path(model_dir).expanduser()
    config_file = path / "config.json"
    if not config_file.is_file() or not any(path.glob("*.safetensors")):
        raise InvalidParameterError("model", allowed="a local Hugging Face checkpoint directory with "
                                    "config.json and *.safetensors weights", received=str(model_dir))
    return ModelShape.from_config(json.loads(config_file.read_text()))


@dataclass(frozen=True, slots=True, kw_only=True)
class PruningPlan:
    """What to remove. Every field is optional; at least one must prune something.

    Layers are chosen by importance (``drop_layers``) or named (``layers``), not both.
    """

    drop_layers: int = 0
    """How many decoder layers to remove, least important first (>= 0)."""
    layers: tuple[int, ...] | None = None
    """Exactly these layer indices (0-based, of the original model) are removed."""
    mlp_size: int | None = None
    """New MLP intermediate size, the same in every layer (1 .. current size)."""
    heads_per_group: int | None = None
    """Query heads kept per KV group (1 .. current heads per group); every layer keeps
    ``heads_per_group * num_kv_heads`` heads."""
    notes: dict[str, Any] = field(default_factory=dict)
    """Free-form information copied into pruning.json."""

    def __post_init__(self) -> None:
        if self.drop_layers < 0:
            raise InvalidParameterError("drop_layers", allowed="a whole number >= 0", received=self.drop_layers)
        if self.layers is not None:
            if self.drop_layers:
                raise InvalidParameterError("layers", allowed="either layers or drop_layers, not both",
                                            received=list(self.layers))
            if not self.layers or len(set(self.layers)) != len(self.layers) or min(self.layers) < 0:
                raise InvalidParameterError("layers", allowed="distinct layer indices >= 0",
                                            received=list(self.layers))
        for name in ("mlp_size", "heads_per_group"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidParameterError(name, allowed="a whole number >= 1", received=value)
        if not (self.drop_layers or self.layers or self.mlp_size or self.heads_per_group):
            raise InvalidParameterError("plan", allowed="at least one of drop_layers, layers, mlp_size, "
                                        "heads_per_group", received="nothing to prune")

    @property
    def layer_count_to_drop(self) -> int:
        return len(self.layers) if self.layers is not None else self.drop_layers

    def check(self, shape: ModelShape) -> None:
        """Raise ``InvalidParameterError`` if this plan does not fit ``shape`` (nothing is loaded)."""
        if self.layers is not None and max(self.layers) >= shape.num_layers:
            raise InvalidParameterError("layers", allowed=f"indices in 0..{shape.num_layers - 1}",
                                        received=list(self.layers))
        if self.layer_count_to_drop >= shape.num_layers:
            raise InvalidParameterError(
                "drop_layers", allowed=f"fewer than the model's {shape.num_layers} layers (at least one must remain)",
                received=self.layer_count_to_drop)
        if self.mlp_size is not None and self.mlp_size > shape.intermediate_size:
            raise InvalidParameterError("mlp_size", allowed=f"1..{shape.intermediate_size} (the current size)",
                                        received=self.mlp_size)
        if self.heads_per_group is not None and self.heads_per_group > shape.heads_per_group:
            raise InvalidParameterError(
                "heads_per_group",
                allowed=f"1..{shape.heads_per_group} ({shape.num_heads} query heads share {shape.num_kv_heads} "
                        f"KV heads, so a layer keeps heads_per_group x {shape.num_kv_heads} heads)",
                received=self.heads_per_group)
        if self.heads_per_group is not None and shape.hidden_size % (self.heads_per_group * shape.num_kv_heads):
            # transformers 5 refuses such a config (even with an explicit head_dim) at load time.
            options = [m for m in range(1, shape.heads_per_group + 1) if shape.hidden_size % (m * shape.num_kv_heads) == 0]
            raise InvalidParameterError(
                "heads_per_group", allowed=f"one of {options} (hidden_size {shape.hidden_size} must be a multiple of "
                                           "the remaining heads: transformers rejects the config otherwise)",
                received=self.heads_per_group)

    def to_json(self) -> dict[str, Any]:
        return {"drop_layers": self.drop_layers, "layers": None if self.layers is None else list(self.layers),
                "mlp_size": self.mlp_size, "heads_per_group": self.heads_per_group, "notes": dict(self.notes)}


def parse_layer_list(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3,7,12"`` -> (3, 7, 12); errors name the parameter."""
    if not isinstance(text, str):
        return tuple(int(i) for i in text)
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise InvalidParameterError("layers", allowed="comma-separated layer indices such as 3,7,12",
                                    received=text) from None
