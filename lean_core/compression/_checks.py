"""Argument checks of the public compression API: every refusal is an InvalidParameterError that
names the parameter, what it accepts and what it received, raised where the call is made (not a
TypeError from deep inside a compressor, nor a pydantic error about an internal model)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError

from lean_core.compression.protect import DEFAULT_PROTECTED_KINDS
from lean_core.errors import InvalidParameterError

__all__ = [
    "check_bool",
    "check_context",
    "check_instance",
    "check_protection",
    "check_question",
    "check_titles",
    "raise_parameter_error",
]

_CONTEXT = "a str or a sequence (list, tuple) of str passages"


def _shown(value: object) -> object:
    """What an error message shows of a value: short values as they are, others by type."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 80 else f"{value[:77]}..."
    return type(value).__name__


def raise_parameter_error(exc: ValidationError) -> NoReturn:
    """Re-raise a pydantic ValidationError as the InvalidParameterError behind it (one of our
    validators raised it), or as one built from its first problem."""
    errors = exc.errors()
    for error in errors:
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, InvalidParameterError):
            raise original from None
    first = errors[0]
    name = ".".join(str(part) for part in first["loc"]) or exc.title
    if first["type"] == "extra_forbidden":
        allowed = f"a field of {exc.title} (there is no {name!r})"
    elif first["type"] == "missing":
        allowed = "a value (it is required)"
    else:
        allowed = first["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
    raise InvalidParameterError(name, allowed=allowed, received=_shown(first.get("input"))) from None


def check_bool(parameter: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidParameterError(parameter, allowed="True or False", received=_shown(value))
    return value


def check_instance(parameter: str, value: Any, kind: type | tuple[type, ...], allowed: str) -> Any:
    """``value`` if it is None or an instance of ``kind``."""
    if value is not None and not isinstance(value, kind):
        raise InvalidParameterError(parameter, allowed=f"{allowed} or None", received=type(value).__name__)
    return value


def check_context(context: object) -> list[str]:
    """The passages of a context: one str, or a sequence of str (bytes must be decoded first)."""
    if isinstance(context, bytes | bytearray):
        raise InvalidParameterError("context", allowed=f"{_CONTEXT}; decode bytes first",
                                    received=f"{type(context).__name__} of {len(context)} bytes")
    if isinstance(context, str):
        items = [context]
    elif isinstance(context, Sequence):
        items = list(context)
    else:  # None, a number, a dict, a generator (which a retry would find empty)
        raise InvalidParameterError("context", allowed=_CONTEXT, received=_shown(context))
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidParameterError(f"context[{index}]" if not isinstance(context, str) else "context",
                                        allowed="str passages", received=type(item).__name__)
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidParameterError("context", allowed="valid Unicode text (no lone surrogates)",
                                        received=f"invalid character at {exc.start}") from exc
    return items


def check_question(question: object) -> str | None:
    """The question stripped, or None when none (or only whitespace) is given."""
    if question is None:
        return None
    if not isinstance(question, str):
        raise InvalidParameterError("question", allowed="a str or None", received=_shown(question))
    return question.strip() or None


def check_titles(titles: object, passages: int) -> list[str | None]:
    """One title (str or None, blank read as None) per passage; None: no titles."""
    if titles is None:
        return [None] * passages
    if isinstance(titles, str | bytes) or not isinstance(titles, Sequence) or len(titles) != passages:
        received = repr(titles) if isinstance(titles, str) else (
            f"{len(titles)} titles" if isinstance(titles, Sequence) else type(titles).__name__)
        raise InvalidParameterError("titles", allowed=f"one title (str or None) per passage: {passages}",
                                    received=received)
    bad = [t for t in titles if t is not None and not isinstance(t, str)]
    if bad:
        raise InvalidParameterError("titles", allowed="str or None per passage", received=type(bad[0]).__name__)
    return [(t.strip() or None) if isinstance(t, str) else None for t in titles]


def check_protection(kinds: object, patterns: object) -> tuple[tuple[str, ...], tuple[re.Pattern[str], ...]]:
    """``protect_kinds`` as a tuple of known kind names and ``protect_patterns`` compiled."""
    if isinstance(kinds, str | bytes) or not isinstance(kinds, Sequence):
        raise InvalidParameterError("protect_kinds", allowed=f"a sequence of {list(DEFAULT_PROTECTED_KINDS)}",
                                    received=_shown(kinds))
    unknown = sorted(repr(k) for k in kinds if k not in DEFAULT_PROTECTED_KINDS)
    if unknown:
        raise InvalidParameterError("protect_kinds", allowed=f"a subset of {list(DEFAULT_PROTECTED_KINDS)}",
                                    received=", ".join(unknown))
    if isinstance(patterns, str | bytes) or not isinstance(patterns, Sequence):
        raise InvalidParameterError("protect_patterns", allowed="a sequence of regular expressions (str)",
                                    received=_shown(patterns))
    compiled = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern) and isinstance(pattern.pattern, str):
            compiled.append(pattern)
            continue
        try:
            if not isinstance(pattern, str):
                raise TypeError(type(pattern).__name__)
            compiled.append(re.compile(pattern))
        except (re.error, TypeError) as exc:
            raise InvalidParameterError("protect_patterns", allowed="valid regular expressions (str)",
                                        received=_shown(pattern)) from exc
    return tuple(kinds), tuple(compiled)
