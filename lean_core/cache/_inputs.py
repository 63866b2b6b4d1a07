"""Checks and clean-ups of what the response cache is given (shared by the cache and its adapters)."""

from __future__ import annotations

import math

from lean_core.errors import InvalidParameterError

__all__ = ["brief", "check_prompt", "check_ttl", "embeddable"]


def check_ttl(ttl_s: object) -> float | None:
    """``ttl_s`` as seconds (> 0) or None; anything else is a named error (booleans included)."""
    if ttl_s is None:
        return None
    # inf is refused: "never expires" is spelt None, and an infinite float would reach the store.
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 < ttl_s < math.inf:
        raise InvalidParameterError("ttl_s", allowed="finite seconds > 0, or None (never expires)", received=ttl_s)
    return float(ttl_s)


def embeddable(text: str) -> str:
    """``text`` as the embedder may see it: lone surrogates (which arrive through ordinary JSON
    escapes such as ``"\\ud800"`` and make tokenizers raise) become U+FFFD. For embedding only:
    the exact key and the stored prompt keep the text exactly as given."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def brief(exc: BaseException) -> str:
    """The exception's message, cut short: it may quote a prompt of a million characters."""
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def check_prompt(prompt: object) -> None:
    if not isinstance(prompt, str):
        raise InvalidParameterError("prompt", allowed="a str", received=type(prompt).__name__)
