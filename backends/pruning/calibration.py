"""Calibration text: the user's text (or Jane Austen's novels here) tokenized once, length-checked.

Calibration decides which layers, channels and heads survive and is what healing trains on, so it
must never be the evaluation text (WikiText-2): that would score the model on its own training set.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lean_core.errors import InvalidParameterError

from .evaluation_text import is_evaluation_text

__all__ = ["DEFAULT_CALIBRATION_GLOB", "CalibrationText", "default_calibration_paths", "load_calibration"]

DEFAULT_CALIBRATION_GLOB = "austen-*.txt"
"""Files matched in ``LEAN_INFERENCE_CALIBRATION_DIR`` or, in a development checkout, ``../shared/data/text``."""

@dataclass(frozen=True, slots=True)
class CalibrationText:
    """Token ids of the calibration files, concatenated in order."""

    paths: tuple[str, ...]
    token_ids: tuple[int, ...]

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


def default_calibration_paths() -> list[Path]:
    """The default calibration files, or an empty list when none are found."""
    roots = [os.environ.get("LEAN_INFERENCE_CALIBRATION_DIR"),
             str(Path(__file__).resolve().parents[3] / "shared" / "data" / "text")]
    for root in roots:
        if root and (found := sorted(Path(root).glob(DEFAULT_CALIBRATION_GLOB))):
            return found
    return []


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    found: list[Path] = []
    for item in paths:
        text = str(Path(item).expanduser())
        matches = sorted(glob.glob(text)) if any(c in text for c in "*?[") else [text]
        if not matches or not all(Path(m).is_file() for m in matches):
            raise InvalidParameterError("calibration", allowed="existing text files (globs allowed)", received=text)
        found.extend(Path(m) for m in matches)
    return found


def load_calibration(paths: Sequence[str | os.PathLike[str]] | None, *, tokenizer_dir: str | Path,
                     min_tokens: int) -> CalibrationText:
    """Tokenize ``paths`` (default: :func:`default_calibration_paths`) with the model's tokenizer.

    Raises ``InvalidParameterError`` when no file is given or found, when a file looks like the
    WikiText evaluation text, or when the text has fewer than ``min_tokens`` tokens.
    """
    from tokenizers import Tokenizer

    files = _expand(paths) if paths else default_calibration_paths()
    if not files:
        raise InvalidParameterError("calibration", allowed=f"one or more text files (no default {DEFAULT_CALIBRATION_GLOB} "
                                    "found; set LEAN_INFERENCE_CALIBRATION_DIR)", received=None)
    for file in files:
        if is_evaluation_text(file):
            raise InvalidParameterError("calibration", allowed="text other than the WikiText evaluation set",
                                        received=str(file))
    tokenizer = Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))
    ids: list[int] = []
    for file in files:
        text = file.read_text(encoding="utf-8", errors="replace")
        ids.extend(tokenizer.encode(text, add_special_tokens=False).ids)
    if len(ids) < min_tokens:
        raise InvalidParameterError("calibration", allowed=f"at least {min_tokens} tokens of text",
                                    received=f"{len(ids)} tokens in {', '.join(map(str, files))}")
    return CalibrationText(paths=tuple(str(f) for f in files), token_ids=tuple(ids))
