"""Which text files are the perplexity evaluation text (WikiText-2), so calibration and healing
refuse them. Dependency-free: the GPU healing script imports it without the project installed."""

from __future__ import annotations

from pathlib import Path

__all__ = ["EVALUATION_TEXT_NAMES", "is_evaluation_text"]

EVALUATION_TEXT_NAMES = ("wikitext", "wiki.test", "wiki.valid")
"""Name fragments of the WikiText-2 files (raw joined test, tokenized test and validation)."""


def is_evaluation_text(path: str | Path) -> bool:
    """True when the file's name marks it as WikiText-2."""
    name = Path(path).name.lower()
    return any(fragment in name for fragment in EVALUATION_TEXT_NAMES)
