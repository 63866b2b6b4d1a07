"""The compressor interface: one context (text or passages) in, a CompressionResult out."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence

from lean_core.compression.types import CompressionBudget, CompressionResult

__all__ = ["Compressor", "ContextInput"]

ContextInput = str | Sequence[str]
"""A context as one text, or as passages (retrieved documents) whose boundaries matter."""


class Compressor(ABC):
    """Shrinks a context under a token budget, optionally guided by the question it must answer."""

    name: str = "compressor"

    @abstractmethod
    def compress(self, context: ContextInput, *, budget: CompressionBudget | float,
                 question: str | None = None,
                 titles: Sequence[str | None] | None = None) -> CompressionResult:
        """Compress ``context`` to at most ``budget`` tokens of ``budget.target_model``.

        ``titles``: one document title (or None) per passage, as retrievers keep them in metadata.
        A compressor that reads passage headings uses them instead of guessing the heading from the
        text; one that does not may ignore them. They are never added to the output.
        ``budget`` may be a bare float in (0, 1]: ``CompressionBudget(ratio=budget)``.
        Bad arguments raise :class:`~lean_core.errors.InvalidParameterError` naming the parameter.
        """

    async def acompress(self, context: ContextInput, *, budget: CompressionBudget | float,
                        question: str | None = None,
                        titles: Sequence[str | None] | None = None) -> CompressionResult:
        """Async :meth:`compress`; CPU-bound work runs in a worker thread."""
        return await asyncio.to_thread(self.compress, context, budget=budget, question=question, titles=titles)
