"""Validation of the cache stores' constructor options: one helper per kind of option.

Private to :mod:`lean_core.cache.sqlite_store` and :mod:`lean_core.cache.postgres_store`, so both
stores name a bad option the same way (:class:`~lean_core.errors.InvalidParameterError` with the
parameter, what it accepts and what it got). Booleans are refused wherever a number is expected:
``True`` is an ``int`` to Python, never a count or a number of seconds to a user.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from lean_core.errors import InvalidParameterError

__all__ = ["check_count", "check_flag", "check_optional_count", "check_path", "check_per_tenant", "check_seconds"]


def check_count(parameter: str, value: object, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an int in [minimum, maximum], else a named error."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        raise InvalidParameterError(parameter, allowed=_count_allowed(minimum, maximum), received=value)
    return value


def check_optional_count(parameter: str, value: object, *, minimum: int = 1,
                         maximum: int | None = None) -> int | None:
    """``value`` if it is None or an int in [minimum, maximum], else a named error."""
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        raise InvalidParameterError(parameter, allowed=f"{_count_allowed(minimum, maximum)} or None", received=value)
    return value


def _count_allowed(minimum: int, maximum: int | None) -> str:
    return f"an int >= {minimum}" if maximum is None else f"an int in [{minimum}, {maximum}]"


def check_per_tenant(value: object, max_entries: int | None) -> int | None:
    """``max_entries_per_tenant``: None, or an int >= 1 that does not exceed ``max_entries``."""
    return check_optional_count("max_entries_per_tenant", value, maximum=max_entries)


def check_seconds(parameter: str, value: object, *, minimum: float = 0.0) -> float:
    """``value`` as float seconds if it is a finite real number >= ``minimum``, else a named error."""
    if (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
            or value < minimum):
        raise InvalidParameterError(parameter, allowed=f"finite seconds >= {minimum:g} (an int or float)",
                                    received=value)
    return float(value)


def check_flag(parameter: str, value: object) -> bool:
    """``value`` if it is a bool (not merely truthy), else a named error."""
    if not isinstance(value, bool):
        raise InvalidParameterError(parameter, allowed="True or False", received=value)
    return value


def check_path(parameter: str, value: object) -> Path | None:
    """``value`` as a Path if it is a non-empty str or os.PathLike[str] (None passes), else a named error."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        text = os.fspath(value)
        if isinstance(text, str) and text and "\x00" not in text:
            return Path(text)
    raise InvalidParameterError(parameter, allowed="a non-empty file path (str or os.PathLike[str]) or None",
                                received=value)
