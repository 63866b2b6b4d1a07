"""Errors of lean templates; each is an :class:`~lean_core.errors.InvalidParameterError` (a ValueError)
that names the parameter, what it accepts and what it received.

    InvalidParameterError
    ├── MissingVariableError     a render got no value for a variable the template needs
    ├── UnknownVariableError     a render got a value for a variable the template does not use
    ├── DuplicateSectionError    a section (or constraint, or example) is given twice
    └── StableSectionVariableError  a ``{variable}`` sits in a section that must stay byte-identical
"""

from __future__ import annotations

from collections.abc import Iterable

from lean_core.errors import InvalidParameterError

__all__ = [
    "DuplicateSectionError",
    "MissingVariableError",
    "StableSectionVariableError",
    "UnknownVariableError",
]


class MissingVariableError(InvalidParameterError):
    """The variables given to a render lack some the template needs."""

    def __init__(self, missing: Iterable[str], *, required: Iterable[str], received: Iterable[str]) -> None:
        self.missing = tuple(sorted(missing))
        super().__init__("variables", allowed=f"values for every template variable {sorted(required)} "
                                              f"(missing: {list(self.missing)})",
                         received=sorted(received))


class UnknownVariableError(InvalidParameterError):
    """The variables given to a render include names the template does not use (likely a typo)."""

    def __init__(self, unknown: Iterable[str], *, required: Iterable[str]) -> None:
        self.unknown = tuple(sorted(unknown))
        super().__init__("variables", allowed=f"only the template variables {sorted(required)}",
                         received=list(self.unknown))


class DuplicateSectionError(InvalidParameterError):
    """A section, constraint or example appears twice: it would be sent (and paid for) twice."""

    def __init__(self, section: str, *, value: object) -> None:
        self.section = section
        super().__init__(section, allowed="each section, constraint and example once", received=value)


class StableSectionVariableError(InvalidParameterError):
    """A stable section holds a ``{variable}``; stable sections are sent verbatim so that the system
    message is byte-identical across requests (what prefix caches need)."""

    def __init__(self, section: str, *, variable: str) -> None:
        self.section = section
        self.variable = variable
        super().__init__(section, allowed="fixed text without {variables} (put variables in context or question)",
                         received=f"{{{variable}}}")
