"""Units of measure and relative dates that two prompts name: the same number of gigabytes or
terabytes, yesterday or last week, are different requests that sentence embeddings put together.

Both checks compare only what *both* prompts say: a prompt that names no unit (no date) is not
refused against one that does, since adding "today" or "in grams" is as often a paraphrase as a
change. Within one dimension (data size, length, mass, volume, duration, temperature, speed,
energy) the sets of units must agree; dates are read as canonical anchors ("tonight" = "this
evening", "on Friday" = "this Friday", "coming week" = "next week").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["dates", "dates_differ", "is_unit", "units", "units_differ"]

# Full unit names (plural folded by the table itself), matched as words anywhere.
_UNIT_WORDS: dict[str, tuple[str, str]] = {}
for _dimension, _groups in {
    "data": {"bit": "bit bits", "byte": "byte bytes", "kilobyte": "kilobyte kilobytes",
             "megabyte": "megabyte megabytes", "gigabyte": "gigabyte gigabytes gig gigs",
             "terabyte": "terabyte terabytes", "petabyte": "petabyte petabytes"},
    "length": {"millimetre": "millimetre millimetres millimeter millimeters",
               "centimetre": "centimetre centimetres centimeter centimeters", "metre": "metre metres meter meters",
               "kilometre": "kilometre kilometres kilometer kilometers", "inch": "inch inches",
               "foot": "foot feet", "yard": "yard yards", "mile": "mile miles"},
    "mass": {"milligram": "milligram milligrams", "gram": "gram grams", "kilogram": "kilogram kilograms kilo kilos",
             "ounce": "ounce ounces", "tonne": "ton tons tonne tonnes"},
    "volume": {"millilitre": "millilitre millilitres milliliter milliliters", "litre": "litre litres liter liters",
               "gallon": "gallon gallons", "pint": "pint pints", "quart": "quart quarts", "cup": "cup cups",
               "teaspoon": "teaspoon teaspoons", "tablespoon": "tablespoon tablespoons"},
    "duration": {"second": "seconds secs", "minute": "minute minutes mins", "hour": "hour hours hrs",
                 "day": "day days", "week": "week weeks", "month": "month months", "year": "year years yrs",
                 "decade": "decade decades", "century": "century centuries"},
    "temperature": {"celsius": "celsius centigrade", "fahrenheit": "fahrenheit", "kelvin": "kelvin"},
    "speed": {"mph": "mph", "kph": "kph kmh", "knot": "knot knots"},
    "energy": {"calorie": "calorie calories kcal", "joule": "joule joules", "kilowatt": "kilowatt kilowatts kw",
               "kilowatt-hour": "kwh"},
}.items():
    for _canonical, _forms in _groups.items():
        for _form in _forms.split():
            _UNIT_WORDS[_form] = (_dimension, _canonical)

# Abbreviations count only right after a number ("5 m", "64GB", "2 tsp"): alone they are words.
_ABBREVIATIONS: dict[str, tuple[str, str]] = {
    "kb": ("data", "kilobyte"), "mb": ("data", "megabyte"), "gb": ("data", "gigabyte"),
    "tb": ("data", "terabyte"), "pb": ("data", "petabyte"), "kib": ("data", "kilobyte"),
    "mib": ("data", "megabyte"), "gib": ("data", "gigabyte"), "tib": ("data", "terabyte"),
    "mm": ("length", "millimetre"), "cm": ("length", "centimetre"), "m": ("length", "metre"),
    "km": ("length", "kilometre"), "ft": ("length", "foot"), "yd": ("length", "yard"), "mi": ("length", "mile"),
    "mg": ("mass", "milligram"), "g": ("mass", "gram"), "kg": ("mass", "kilogram"), "oz": ("mass", "ounce"),
    "lb": ("mass", "pound"), "lbs": ("mass", "pound"),
    "ml": ("volume", "millilitre"), "l": ("volume", "litre"), "tsp": ("volume", "teaspoon"),
    "tbsp": ("volume", "tablespoon"), "sec": ("duration", "second"),
    "min": ("duration", "minute"), "h": ("duration", "hour"), "hr": ("duration", "hour"),
    "°c": ("temperature", "celsius"), "°f": ("temperature", "fahrenheit"),
}
"""Not "b", "k", "s", "t", "c", "f": after a number they are as often billions, thousands, decades
("the 90s") or names ("Windows 7 C drive") as bytes, kelvins, seconds, tonnes or degrees."""
_ABBREVIATED = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)?\s?(" + "|".join(
    re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")(?![\w°])")
_WORD = re.compile(r"[^\W\d_]+")

_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday"
_PERIODS = f"week weekend month year morning afternoon evening night summer winter spring autumn fall {_WEEKDAYS}"
_DAY_WORDS = {"day before yesterday": "day-2", "day after tomorrow": "day+2", "yesterday": "day-1",
              "today": "day+0", "tonight": "day+0 night", "tomorrow": "day+1"}
_DAY = re.compile(r"\b(day before yesterday|day after tomorrow|yesterday|today|tonight|tomorrow)"
                  r"(?:\s+(morning|afternoon|evening|night))?\b")
_MODIFIED = re.compile(r"\b(last|this|next|coming|past)\s+(" + "|".join(_PERIODS.split()) + r")\b")
_BARE_WEEKDAY = re.compile(r"\b(" + "|".join(_WEEKDAYS.split()) + r")s?\b")
_AGO = re.compile(r"\b(\d+|a|an|one|two|three|four|five|six|seven|eight|nine|ten)\s+"
                  r"(day|week|month|year)s?\s+ago\b")
_COUNT_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_PART_OF_DAY = {"evening": "night"}
_MODIFIER = {"coming": "next", "past": "last"}


_GLUED = re.compile(r"\d+(?:[.,]\d+)?([a-z]+)")


def is_unit(token: str, previous: str = "") -> bool:
    """Whether a word of a prompt is a unit of measure: a unit's name ("Celsius", "Terabytes"), an
    abbreviation right after a number ("64 GB", "64GB"). Such words are not named entities."""
    lowered = token.lower()
    if lowered in _UNIT_WORDS:
        return True
    glued = _GLUED.fullmatch(lowered)
    if glued is not None:
        return glued.group(1) in _ABBREVIATIONS or glued.group(1) in _UNIT_WORDS
    return lowered in _ABBREVIATIONS and previous.replace(".", "").replace(",", "").isdigit()


def units(text: str, tokens: Sequence[str]) -> dict[str, frozenset[str]]:
    """The units each dimension names in a folded text: ``{"data": {"gigabyte"}, ...}``."""
    found: dict[str, set[str]] = {}
    for token in tokens:
        if token in _UNIT_WORDS:
            dimension, canonical = _UNIT_WORDS[token]
            found.setdefault(dimension, set()).add(canonical)
    for match in _ABBREVIATED.finditer(text.lower()):
        dimension, canonical = _ABBREVIATIONS[match.group(1)]
        found.setdefault(dimension, set()).add(canonical)
    return {dimension: frozenset(names) for dimension, names in found.items()}


def dates(text: str) -> frozenset[str]:
    """Relative dates of a folded text as canonical anchors ("day-1", "next week", "friday", ...)."""
    lowered = text.lower()
    found: set[str] = set()

    def day(match: re.Match[str]) -> str:
        anchor = _DAY_WORDS[match.group(1)]
        part = _PART_OF_DAY.get(match.group(2) or "", match.group(2) or "")
        if part and not anchor.endswith(" night"):
            anchor = f"{anchor} {part}"
        found.add(anchor)
        return " "

    def modified(match: re.Match[str]) -> str:
        modifier, period = _MODIFIER.get(match.group(1), match.group(1)), match.group(2)
        period = _PART_OF_DAY.get(period, period)
        if modifier == "this" and period in ("morning", "afternoon", "night"):
            found.add(f"day+0 {period}")
        elif modifier == "this" and period in _WEEKDAYS.split():
            found.add(period)
        else:
            found.add(f"{modifier} {period}")
        return " "

    def ago(match: re.Match[str]) -> str:
        word = match.group(1)
        count = str(_COUNT_WORDS.index(word) + 1) if word in _COUNT_WORDS else "1" if word in ("a", "an") else word
        found.add(f"{count} {match.group(2)} ago")
        return " "

    rest = _DAY.sub(day, lowered)
    rest = _MODIFIED.sub(modified, rest)
    rest = _AGO.sub(ago, rest)
    found.update(match.group(1) for match in _BARE_WEEKDAY.finditer(rest))
    return frozenset(found)


def units_differ(text_a: str, text_b: str, tokens_a: Sequence[str], tokens_b: Sequence[str]) -> bool:
    """Some dimension that both prompts measure in, with other units on each side."""
    units_a, units_b = units(text_a, tokens_a), units(text_b, tokens_b)
    return any(units_a[d] != units_b[d] for d in units_a.keys() & units_b.keys())


def dates_differ(text_a: str, text_b: str) -> bool:
    """Both prompts name a relative date, and not the same ones."""
    dates_a, dates_b = dates(text_a), dates(text_b)
    return bool(dates_a and dates_b and dates_a != dates_b)
