"""Parsing of the values tools print: unknown ("[N/A]", "[Not Supported]", ...) becomes
None, never an error, so one odd cell never costs a whole tick.
"""

from __future__ import annotations

import math


_MIB = 1024 * 1024


def _clean(text):
    """Strip a CSV cell and map nvidia-smi's bracketed placeholders to None."""
    value = text.strip()
    if not value or value == "N/A" or (value.startswith("[") and value.endswith("]")):
        return None
    return value


def _number(text):
    """Parse '97', '97 %', '312.50 W' or '61234 MiB' as a finite float, else None."""
    value = _clean(text)
    if value is None:
        return None
    head = value.split(" ", 1)[0]
    try:
        number = float(head)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _to_int(text):
    number = _number(text)
    return None if number is None else int(round(number))


def _to_float(text):
    number = _number(text)
    return None if number is None else round(number, 2)


def _first_words(text, limit=300):
    """The first non-empty lines of a tool's output, joined, for an error message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3])[:limit] or None
