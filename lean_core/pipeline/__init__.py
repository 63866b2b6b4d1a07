"""The five layers as one pipeline: cache → template → compression → output budget → model.

Framework-free; LangChain (``lean_chain.lean_pipeline``) and LlamaIndex
(``lean_index.LeanPipelineQueryEngine``) expose it, and ``lean_backends.EngineModel`` connects the
local or remote vLLM engine.
"""

from lean_core.pipeline.runner import LeanPipeline
from lean_core.pipeline.settings import (
    BudgetLayerSettings,
    CacheLayerSettings,
    CompressionLayerSettings,
    PipelineSettings,
    TemplateLayerSettings,
)
from lean_core.pipeline.types import (
    LayerStep,
    ModelCall,
    ModelReply,
    PipelineCache,
    PipelineModel,
    PipelineRequest,
    PipelineResult,
    SaltedPrefixCacheModel,
)

__all__ = [
    "BudgetLayerSettings",
    "CacheLayerSettings",
    "CompressionLayerSettings",
    "LayerStep",
    "LeanPipeline",
    "ModelCall",
    "ModelReply",
    "PipelineCache",
    "PipelineModel",
    "PipelineRequest",
    "PipelineResult",
    "PipelineSettings",
    "SaltedPrefixCacheModel",
    "TemplateLayerSettings",
]
