"""lean-inference backends (import name ``lean_backends``): the vLLM engine and model pruning.

What users import: the engine settings and clients (``LocalVLLMEngine`` in process,
``RemoteVLLMClient`` against ``vllm serve``), ``VLLMOptions`` (what the LangChain and LlamaIndex
vLLM classes take), ``EngineModel`` (the pipeline's model over either) and ``resolve_model_dir``.
Pruning lives in :mod:`lean_backends.pruning`. Heavy dependencies (torch, transformers, vllm) are
imported inside the code that uses them: importing this package imports none of them.
"""

from __future__ import annotations

import warnings
from typing import Any

from lean_backends.pipeline_model import EngineModel
from lean_backends.remote_vllm import RemoteEngineError, RemoteVLLMClient
from lean_backends.text_backend import TextBackend
from lean_backends.tool_calling import (
    ToolCall,
    ToolCallDelta,
    ToolCallingChoice,
    ToolCallingChunk,
    ToolCallOutputError,
    ToolRequest,
    ToolSpec,
)
from lean_backends.vllm_engine import (
    EngineStats,
    LocalVLLMEngine,
    PromptTooLongError,
    VLLMEngineSettings,
    get_engine,
    resolve_model_dir,
    shutdown_engines,
)
from lean_backends.vllm_options import VLLMOptions

__all__ = [
    "EngineModel",
    "EngineStats",
    "LocalVLLMEngine",
    "PromptTooLongError",
    "RemoteEngineError",
    "RemoteVLLMClient",
    "TextBackend",
    "ToolCall",
    "ToolCallDelta",
    "ToolCallOutputError",
    "ToolCallingChoice",
    "ToolCallingChunk",
    "ToolRequest",
    "ToolSpec",
    "VLLMEngineSettings",
    "VLLMOptions",
    "get_engine",
    "resolve_model_dir",
    "shutdown_engines",
]

# Exported here in 0.1.0; they are a transformers reference for tests, not a serving path.
_MOVED = {"GreedyAnswer": "lean_backends.local_generation", "generate_greedy": "lean_backends.local_generation"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(f"lean_backends.{name} is deprecated and will be removed in the next release; "
                      f"import it from {module}", DeprecationWarning, stacklevel=2)
        from lean_backends import local_generation

        return getattr(local_generation, name)
    raise AttributeError(f"module 'lean_backends' has no attribute {name!r}")
