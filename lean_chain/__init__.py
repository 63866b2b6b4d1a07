"""lean-inference for LangChain: Runnables, callbacks, caches and chat models over lean_core."""

from lean_core._extras import require as _require

_require("langchain_core", extra="langchain", feature="lean_chain")

from lean_chain.budget import LeanBudget  # noqa: E402
from lean_chain.cache import LeanCache  # noqa: E402
from lean_chain.chat_vllm import ChatLeanVLLM  # noqa: E402
from lean_chain.compress import LeanCompress  # noqa: E402
from lean_chain.cost_callback import LeanCostCallback  # noqa: E402
from lean_chain.document_compressor import LeanDocumentCompressor  # noqa: E402
from lean_chain.pipeline import ChatModelPort, lean_pipeline  # noqa: E402
from lean_chain.template import LeanTemplate  # noqa: E402

__all__ = [
    "ChatLeanVLLM",
    "ChatModelPort",
    "LeanBudget",
    "LeanCache",
    "LeanCompress",
    "LeanCostCallback",
    "LeanDocumentCompressor",
    "LeanTemplate",
    "lean_pipeline",
]
