"""Prompt normalisation for exact cache keys: changes that cannot change an answer, and no others."""

from __future__ import annotations

import hashlib
import re
import unicodedata

__all__ = ["fold_for_matching", "normalize_prompt", "prompt_key"]

_SPACE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# Apostrophes (right single quote, modifier letter, left quote, grave, acute) and dashes (hyphen,
# non-breaking hyphen, figure/en/em dash, horizontal bar, minus sign, small/full-width hyphen-minus).
_FOLD = str.maketrans({**dict.fromkeys("\u2019\u02bc\u2018\u02bb\u0060\u00b4", "'"),
                       **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d", "-")})


def normalize_prompt(prompt: str) -> str:
    """NFC, unified line ends, runs of spaces collapsed, blank-line runs collapsed, ends stripped.

    Case and punctuation are kept: "US" and "us" or a trailing "?" can change what is asked.
    """
    text = unicodedata.normalize("NFC", prompt).replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


def fold_for_matching(text: str) -> str:
    """NFKC with one apostrophe and one dash: for *comparing* two prompts, never for cache keys.

    "isn’t" and "isn't", "−20" (U+2212) and "-20", full-width and ASCII digits then read alike,
    so the verifier's vetoes see the same words and signs whatever the keyboard produced.
    """
    return unicodedata.normalize("NFKC", text).translate(_FOLD)


def prompt_key(prompt: str) -> str:
    """sha256 hex digest of the normalised prompt."""
    return hashlib.sha256(normalize_prompt(prompt).encode("utf-8", "surrogatepass")).hexdigest()
