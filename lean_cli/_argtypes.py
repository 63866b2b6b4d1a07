"""argparse value types shared by every ``lean-inference`` sub-command."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["non_negative_int", "positive_float", "positive_int"]


def positive_int(text: str) -> int:
    """A whole number >= 1, with a message that says what was received."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, received {value}")
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, received {value}")
    return value


def positive_float(text: str) -> float:
    """A number > 0 (finite)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, received {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, received {value}")
    return value


def bounded_float(what: str, *, high: float = 1.0) -> Callable[[str], float]:
    """An argparse type for a number in (0, ``high``] whose error names ``what`` was expected."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} in (0, {high:g}], received {text!r}") from None
        if not 0.0 < value <= high:
            raise argparse.ArgumentTypeError(f"expected {what} in (0, {high:g}], received {value}")
        return value

    return parse
