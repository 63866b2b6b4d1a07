"""Input checks shared by the ledger's API: every refusal is an InvalidParameterError naming the
parameter, what it accepts and what it received, never a pydantic error about an internal class."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ValidationError

from lean_core.errors import InvalidParameterError

MAX_COUNT = 2**63 - 1  # SQLite's INTEGER: a larger count could not be stored
COUNT = "an int from 0 to 2**63 - 1 (not a bool or float)"


def parameter_error(exc: ValidationError) -> InvalidParameterError:
    """The first problem of ``exc`` as an InvalidParameterError (our own, where a validator raised one)."""
    errors = exc.errors()
    for error in errors:
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, InvalidParameterError):
            return original
    first = errors[0]
    name = ".".join(str(part) for part in first["loc"]) or exc.title
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        allowed = f"no such field ({exc.title} has no {name!r})"
    elif first["type"] == "missing":
        allowed = "a value (it is required)"
    else:
        allowed = message.removeprefix("Input should be ").removeprefix("Value error, ")
    return InvalidParameterError(name, allowed=allowed, received=first.get("input"))


class ParameterCheckedModel(BaseModel):
    """A pydantic model whose construction errors are InvalidParameterErrors (still ValueErrors)."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise parameter_error(exc) from None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:  # type: ignore[override]
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as exc:
            raise parameter_error(exc) from None


def check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise InvalidParameterError(name, allowed=COUNT, received=value)
    return value


def check_text(name: str, value: object, *, optional: bool) -> str | None:
    """A non-empty str (or None where ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidParameterError(name, allowed="a non-empty str" + (" or None" if optional else ""),
                                    received=value)
    return value


def check_tags(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidParameterError(name, allowed="an iterable of str (not a single str)", received=value)
    tags = tuple(value)
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidParameterError(name, allowed="an iterable of str", received=tags)
    return tags


def check_seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidParameterError(name, allowed="a finite number of seconds >= 0, or None", received=value)
    return float(value)


def check_time(name: str, value: object) -> datetime | None:
    if value is not None and not isinstance(value, datetime):
        raise InvalidParameterError(name, allowed="a datetime or None", received=value)
    return value
