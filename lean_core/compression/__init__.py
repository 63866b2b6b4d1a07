"""Layer 1, input compression: budgets in the target model's tokens, typed results."""

from lean_core.compression.base import Compressor, ContextInput
from lean_core.compression.chain import CoarseToFineCompressor, CompressionMethod, compressor_for
from lean_core.compression.lean import LeanCompressor, MissingQuestionError
from lean_core.compression.llmlingua2_backend import LLMLingua2Compressor
from lean_core.compression.llmlingua_backend import LLMLinguaCompressor
from lean_core.compression.messages import CompressedMessages, acompress_messages, compress_messages
from lean_core.compression.options import CompressionJob, CompressionOptions
from lean_core.compression.protect import ProtectedSpan, find_protected_spans
from lean_core.compression.types import CompressionBudget, CompressionResult, DroppedSegment

__all__ = [
    "CoarseToFineCompressor",
    "CompressedMessages",
    "CompressionBudget",
    "CompressionJob",
    "CompressionMethod",
    "CompressionOptions",
    "CompressionResult",
    "Compressor",
    "ContextInput",
    "DroppedSegment",
    "LLMLingua2Compressor",
    "LLMLinguaCompressor",
    "LeanCompressor",
    "MissingQuestionError",
    "ProtectedSpan",
    "acompress_messages",
    "compress_messages",
    "compressor_for",
    "find_protected_spans",
]
