"""Model pruning (layer 3): depth and uniform-width pruning into checkpoints stock vLLM loads.

    prune_checkpoint(model_dir, out, plan=PruningPlan(drop_layers=4, mlp_size=1152))
    measure_perplexity("pruned-dir", max_windows=16)

Names are resolved lazily (PEP 562): importing this package imports neither torch nor pydantic,
so the pure-torch modules (``depth``, ``width``, ``surgery``, ``heal``) also load on a GPU image
that has torch and transformers only (``benchmarks/gpu/heal_pruned.py`` relies on it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calibration import CalibrationText, load_calibration
    from .checkpoint import PruneResult, count_parameters, prune_checkpoint
    from .heal import HealReport, HealSettings, merge_adapter_into_checkpoint
    from .perplexity import PerplexityResult, measure_perplexity
    from .scoring import ImportanceScores, score_model
    from .spec import (
        SUPPORTED_ARCHITECTURES,
        ModelShape,
        PruningPlan,
        UnsupportedArchitectureError,
        read_model_shape,
    )
    from .surgery import PrunedIndices, apply_indices

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "CalibrationText",
    "HealReport",
    "HealSettings",
    "ImportanceScores",
    "ModelShape",
    "PerplexityResult",
    "PruneResult",
    "PrunedIndices",
    "PruningPlan",
    "UnsupportedArchitectureError",
    "apply_indices",
    "count_parameters",
    "load_calibration",
    "measure_perplexity",
    "merge_adapter_into_checkpoint",
    "prune_checkpoint",
    "read_model_shape",
    "score_model",
]

_HOME = {
    "CalibrationText": "calibration", "load_calibration": "calibration",
    "PruneResult": "checkpoint", "count_parameters": "checkpoint", "prune_checkpoint": "checkpoint",
    "HealReport": "heal", "HealSettings": "heal", "merge_adapter_into_checkpoint": "heal",
    "PerplexityResult": "perplexity", "measure_perplexity": "perplexity",
    "ImportanceScores": "scoring", "score_model": "scoring",
    "SUPPORTED_ARCHITECTURES": "spec", "ModelShape": "spec", "PruningPlan": "spec",
    "UnsupportedArchitectureError": "spec", "read_model_shape": "spec",
    "PrunedIndices": "surgery", "apply_indices": "surgery",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted(__all__)
