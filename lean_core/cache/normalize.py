"""Prompt normalisation for exact cache keys: changes that cannot change an answer, and no others."""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["normalize_prompt", "prompt_key"]

_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def normalize_prompt(prompt: str) -> str:
    """NFC, unified line ends, runs of spaces collapsed, blank-line runs collapsed, ends stripped.

    Case and punctuation are kept: "US" and "us" or a trailing "?" can change what is asked.
    """
    text = unicodedata.normalize("NFC", prompt).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def prompt_key(prompt: str) -> str:
    """sha256 hex digest of the normalised prompt."""
    return hashlib.sha256(normalize_prompt(prompt).encode("utf-8", "surrogatepass")).hexdigest()
