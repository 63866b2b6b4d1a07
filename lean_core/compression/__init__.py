"""Layer 1, input compression: budgets in the target model's tokens, typed results."""

from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.lean import LeanCompressor, MissingQuestionError
from lean_core.compression.llmlingua_backend import LLMLinguaCompressor
from lean_core.compression.protect import ProtectedSpan, find_protected_spans
from lean_core.compression.types import CompressionBudget, CompressionResult, DroppedSegment

__all__ = [
    "CompressionBudget",
    "CompressionResult",
    "Compressor",
    "ContextInput",
    "DroppedSegment",
    "LLMLinguaCompressor",
    "LeanCompressor",
    "MissingQuestionError",
    "ProtectedSpan",
    "find_protected_spans",
]
