"""Map an extractive compressor's output back to the passages (documents, nodes, messages) it came
from, read passage titles from their metadata, and build budgets from adapter options: shared by
the LangChain and LlamaIndex adapters."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lean_core.compression.types import CompressionBudget
from lean_core.errors import InvalidParameterError

__all__ = ["budget_from_options", "kept_per_passage", "titles_from_metadata"]

_WORD = re.compile(r"\w+")


def titles_from_metadata(metadatas: Sequence[Mapping[str, Any]], key: str | None) -> list[str | None] | None:
    """Each passage's ``metadata[key]`` where it is a non-empty str (else None); None when ``key``
    is None or no passage has a title, so compressors keep reading headings from the text."""
    if key is None:
        return None
    titles = [(value.strip() or None) if isinstance(value := m.get(key), str) else None for m in metadatas]
    return titles if any(titles) else None


def kept_per_passage(text: str, passages: Sequence[str]) -> list[str]:
    """The kept text of each passage (``""`` where nothing was kept).

    The output is split at blank lines (passage boundaries); each piece goes to the first passage,
    from the last one used onwards, that holds all its words, else to the one sharing the most.
    Exact for extractive compressors (LeanCompressor); approximate for token-level ones.
    """
    vocab = [set(_WORD.findall(p.lower())) for p in passages]
    kept: list[list[str]] = [[] for _ in passages]
    cursor = 0
    for raw in text.split("\n\n"):
        piece = raw.strip()
        if not piece or not passages:
            continue
        words = set(_WORD.findall(piece.lower()))
        order = [*range(cursor, len(passages)), *range(cursor)]
        best = next((i for i in order if words <= vocab[i]), None)
        if best is None:
            best = max(order, key=lambda i: len(words & vocab[i]))
        kept[best].append(piece)
        cursor = best
    return ["\n\n".join(k) for k in kept]


def budget_from_options(*, ratio: float | None, target_tokens: int | None, target_model: str,
                        ratio_was_set: bool) -> CompressionBudget:
    """One budget from adapter options: ``target_tokens`` wins over a default ``ratio``; giving both
    explicitly, or neither, is an error naming ``ratio``."""
    if target_tokens is not None and ratio_was_set and ratio is not None:
        raise InvalidParameterError("ratio", allowed="None when target_tokens is given", received=ratio)
    if target_tokens is None and ratio is None:
        raise InvalidParameterError("ratio", allowed="a float in (0, 1] or target_tokens >= 1", received=None)
    if target_tokens is not None:
        return CompressionBudget(target_tokens=target_tokens, target_model=target_model)
    return CompressionBudget(ratio=ratio, target_model=target_model)
