"""lean-inference for LlamaIndex: node postprocessors, LLM classes and handlers over lean_core."""

from lean_core._extras import require as _require

_require("llama_index.core", extra="llamaindex", feature="lean_index")

from lean_index.budget_llm import LeanBudgetLLM  # noqa: E402
from lean_index.cached_llm import LeanCachedLLM  # noqa: E402
from lean_index.compress_postprocessor import LeanCompressPostprocessor  # noqa: E402
from lean_index.cost_handler import LeanCostHandler  # noqa: E402
from lean_index.pipeline_query_engine import LeanPipelineQueryEngine, LLMPort  # noqa: E402
from lean_index.template import LeanTemplate  # noqa: E402
from lean_index.vllm_llm import LeanVLLM  # noqa: E402

__all__ = [
    "LLMPort",
    "LeanBudgetLLM",
    "LeanCachedLLM",
    "LeanCompressPostprocessor",
    "LeanCostHandler",
    "LeanPipelineQueryEngine",
    "LeanTemplate",
    "LeanVLLM",
]
